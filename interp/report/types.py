"""The types a report step and its section share, under their older path: they live in `interp.report_types`
(a leaf that imports neither `interp.report` nor `interp.views`)."""

from interp.report_types import (
    Bundle,
    Section,
    Skipped,
    Step,
    StepInputs,
    Table,
    Transient,
    perturbation_parts,
    result_json,
)

__all__ = [
    "Bundle",
    "Section",
    "Skipped",
    "Step",
    "StepInputs",
    "Table",
    "Transient",
    "perturbation_parts",
    "result_json",
]
