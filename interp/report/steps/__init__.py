"""The report's steps, one module each, in pipeline order.

Each module holds one step whole: its analysis (an adapter from `StepInputs` to library calls, returning
a result with `to_json()` or `Skipped` with the reason), and its `STEP`, which pairs that analysis with its
section (a view in `interp.views.sections`) and declares the options and earlier results it reads (the
runner refuses an undeclared read). To add a step: a module here with its `STEP`, its section in
`interp.views.sections`, and an entry below.
"""

from __future__ import annotations

from interp.report.steps import (
    audit,
    gradients,
    heads,
    locator_trust,
    memorization,
    perturbation,
    restoration,
    unlearning,
)
from interp.report.types import Step

PIPELINE = (memorization, gradients, heads, perturbation, unlearning, audit, restoration, locator_trust)


def default_steps() -> list[Step]:
    """The pipeline in order, each analysis with the section that shows it."""
    return [module.STEP for module in PIPELINE]
