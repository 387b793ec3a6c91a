"""Step 2: gradient maps per layer / component / head for MEM vs NMEM (plain and contrastive objectives),
and the per-paragraph gradient norms compared between the sets."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from interp.gradient_norms import compare_norms, per_paragraph_norms
from interp.gradients import gradient_map
from interp.report.steps.memorization import mem_nmem_sets, set_step
from interp.report.types import Bundle, Skipped, StepInputs
from interp.views.sections import gradients_section


def _gradients(inputs: StepInputs) -> Bundle | Skipped:
    sets = mem_nmem_sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    mem, nmem = sets
    model, bs = inputs.model, inputs.options.grad_batch_size
    bar = tqdm(total=4, desc="gradients", unit="pass", leave=False, disable=not inputs.options.progress)
    parts: dict[str, Any] = {}
    for objective in ("nll", "contrastive"):
        parts[objective] = gradient_map(model, mem, nmem, objective=objective, reduce="max", batch_size=bs)
        bar.update()
    norms_mem = per_paragraph_norms(model, mem, batch_size=bs)
    bar.update()
    norms_nmem = per_paragraph_norms(model, nmem, batch_size=bs)
    bar.update()
    bar.close()
    parts.update(norms_mem=norms_mem, norms_nmem=norms_nmem, comparison=compare_norms(norms_mem, norms_nmem))
    return Bundle(parts)


STEP = set_step("gradients", _gradients, gradients_section, "grad_batch_size")
