"""The whole pipeline in one call: analysis steps -> report.html, results.json, PNG / SVG figures.

- `options`: `ReportOptions`, what the pipeline computes and on how much data.
- `runner`: `run_report` and its machinery: steps, the on-disk step cache and its keys (model,
  paragraph and code fingerprints), provenance, output staging and the move into place.
- `steps`: one module per step (its analysis and its `STEP` declaration) and `default_steps`.
- `types`: what the steps, their sections and the runner share (`Step`, `StepInputs`, `Bundle`, `Skipped`,
  `Section`, `Table`), defined in the leaf `interp.report_types` so that the views import them without this package.

The sections' text, tables and figure choices are views: `interp.views.sections`. Names are imported on first
use: `interp.report.options` alone does not load torch.
"""

from __future__ import annotations

from interp._lazy import lazy_names

_SOURCES = {
    "interp.report.options": ("ReportOptions",),
    "interp.report.runner": (
        "Bundle",
        "ReportRun",
        "Skipped",
        "Step",
        "StepCache",
        "StepInputs",
        "code_fingerprint",
        "model_fingerprint",
        "paragraphs_fingerprint",
        "run_report",
        "select_steps",
        "step_keys",
        "weights_fingerprint",
    ),
    "interp.report.steps": ("default_steps",),
}

__all__ = sorted(name for names in _SOURCES.values() for name in names)

__getattr__, __dir__ = lazy_names(globals(), _SOURCES)
