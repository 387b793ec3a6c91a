"""Step 7: the locator checked where the answer is known: heads (and neurons) forced to hold injected
paragraphs, and the rank each default method gives them."""

from __future__ import annotations

from interp.errors import UserError
from interp.locator.ranking import DEFAULT_METHODS
from interp.locator.validation import LocatorValidation, validate_locator
from interp.report.types import Skipped, Step, StepInputs
from interp.testbed import shipped_unigram_counts
from interp.views.sections import locator_trust_section


def _locator_trust(inputs: StepInputs) -> LocatorValidation | Skipped:
    o, model = inputs.options, inputs.model
    if not o.validate_locator:
        return Skipped(
            "turned off (validate_locator=False; --quick turns it off); `interp validate-locator` runs it alone"
        )
    try:
        return validate_locator(  # the methods section 3 runs, on heads whose answer is known
            model,
            inputs.paragraphs,
            methods=DEFAULT_METHODS,
            neurons=o.validate_neurons,
            unigram_counts=shipped_unigram_counts(model),
            seed=o.seed,
            batch_size=o.batch_size,
        )
    except UserError as exc:  # e.g. too few paragraphs the model does not recite: the rest of the report stands
        return Skipped(str(exc))


STEP = Step(
    "locator_trust",
    _locator_trust,
    locator_trust_section,
    options=("validate_locator", "validate_neurons", "seed", "batch_size"),
)
