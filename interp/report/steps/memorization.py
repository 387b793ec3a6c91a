"""Step 1: the memorization split (EM, NLL) of every paragraph, and the MEM / NMEM sets later steps draw."""

from __future__ import annotations

from interp.data import Paragraphs
from interp.memorization import MemorizationSplit, choose_sets, memorization_split
from interp.report.types import Skipped, Step, StepInputs
from interp.views.sections import memorization_section

SET_OPTIONS = ("n_mem", "n_nmem", "seed")
"""The options `mem_nmem_sets` reads: every step that draws the MEM / NMEM sets declares them."""


def _memorization(inputs: StepInputs) -> MemorizationSplit:
    o = inputs.options
    return memorization_split(
        inputs.model, inputs.paragraphs, batch_size=o.batch_size, nmem_max=o.nmem_max, n_examples=o.n_examples
    )


def mem_nmem_sets(inputs: StepInputs) -> tuple[Paragraphs, Paragraphs] | Skipped:
    split: MemorizationSplit = inputs.results["memorization"]
    if len(split.mem_idx) == 0 or len(split.nmem_idx) == 0:
        return Skipped(
            f"needs both MEM and NMEM paragraphs; this set has {len(split.mem_idx)} MEM and "
            f"{len(split.nmem_idx)} NMEM (see section 1)"
        )
    o = inputs.options
    return choose_sets(split, inputs.paragraphs, n_mem=o.n_mem, n_nmem=o.n_nmem, seed=o.seed)


STEP = Step("memorization", _memorization, memorization_section, options=("batch_size", "nmem_max", "n_examples"))
