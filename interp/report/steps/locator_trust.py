"""Step 7: the locator checked where the answer is known: heads (and neurons) forced to hold injected
paragraphs, and the rank each default method gives them."""

from __future__ import annotations

import json
from pathlib import Path

from interp.errors import UserError
from interp.fingerprint import weights_fingerprint
from interp.locator.ranking import DEFAULT_METHODS
from interp.locator.validation import LocatorValidation, load_validation, validate_locator
from interp.report.types import Skipped, Step, StepInputs
from interp.testbed import shipped_unigram_counts
from interp.views.sections import locator_trust_section


def _locator_trust(inputs: StepInputs) -> LocatorValidation | Skipped:
    o, model = inputs.options, inputs.model
    if o.validation is not None:
        return recorded_validation(o.validation, model)
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


def recorded_validation(path: str, model) -> LocatorValidation:
    """A saved `validate-locator --json` result, refused unless it was measured on these very weights."""
    result = load_validation(path)
    saved = json.loads(Path(path).read_text()).get("weights_sha256")
    if saved != weights_fingerprint(model):
        raise UserError(
            f"--validation {path} was "
            + ("written without the weights' hash" if saved is None else "measured on other weights")
            + ": run `interp validate-locator --json FILE` on this model and pass that file"
        )
    return result


STEP = Step(
    "locator_trust",
    _locator_trust,
    locator_trust_section,
    options=("validate_locator", "validate_neurons", "validation", "seed", "batch_size"),
)
