"""The whole pipeline in one call: analysis steps -> report.html, results.json, PNG / SVG figures."""

from interp.report.runner import (
    ReportOptions,
    ReportRun,
    Step,
    StepInputs,
    code_fingerprint,
    default_steps,
    model_fingerprint,
    paragraphs_fingerprint,
    run_report,
    select_steps,
)

__all__ = [
    "ReportOptions",
    "ReportRun",
    "Step",
    "StepInputs",
    "code_fingerprint",
    "default_steps",
    "model_fingerprint",
    "paragraphs_fingerprint",
    "run_report",
    "select_steps",
]
