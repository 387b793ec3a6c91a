"""Step 1: the memorization split (EM, NLL) of every paragraph, and the MEM / NMEM sets later steps draw."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from interp.data import Paragraphs
from interp.memorization import MemorizationSplit, choose_sets, memorization_split
from interp.report.types import Section, Skipped, Step, StepInputs
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


def set_step(
    name: str,
    analyse: Callable[[StepInputs], Any],
    section: Callable[[Any, Mapping[str, Any]], Section],
    *options: str,
    after: tuple[str, ...] = (),
) -> Step:
    """A step on the MEM / NMEM sets: it declares `SET_OPTIONS` before its own `options` and depends on this
    step, then on `after`; one place for what every such step must declare."""
    return Step(name, analyse, section, options=(*SET_OPTIONS, *options), depends=("memorization", *after))


STEP = Step("memorization", _memorization, memorization_section, options=("batch_size", "nmem_max", "n_examples"))
