"""Step 4: how single-token prefix perturbations corrupt the continuation, MEM and NMEM rows in one pass."""

from __future__ import annotations

import torch

from interp.data import Paragraphs
from interp.memorization import str_tokens
from interp.perturbation import perturbed_batch_size, prefix_perturbation
from interp.report.steps.memorization import mem_nmem_sets, set_step
from interp.report.types import Bundle, Skipped, StepInputs
from interp.views.sections import perturbation_section


def _perturbation(inputs: StepInputs) -> Bundle | Skipped:
    sets = mem_nmem_sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model = inputs.options, inputs.model
    n = o.n_perturb
    mem, nmem = sets[0].select(range(min(n, len(sets[0])))), sets[1].select(range(min(n, len(sets[1]))))
    both = Paragraphs(torch.cat([mem.tokens, nmem.tokens]), mem.prefix_len, mem.ids + nmem.ids)
    result = prefix_perturbation(
        model, both, samples_per_position=o.perturb_samples, seed=o.seed, batch_size=perturbed_batch_size(o.batch_size)
    )
    return Bundle({"all": result, "n_mem": len(mem), "str_tokens": [str_tokens(model, row) for row in both.prefixes]})


STEP = set_step("perturbation", _perturbation, perturbation_section, "n_perturb", "perturb_samples", "batch_size")
