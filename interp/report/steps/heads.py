"""Step 3: the memorization head located by every default method side by side, rare-token attention with
its null, the MEM-specific head, and the top heads' attention patterns for the circuitsvis view."""

from __future__ import annotations

import torch

from interp.backend import act_name, capture
from interp.conventions import conventions
from interp.data import rarity_ranks, unigram_counts
from interp.errors import UserError
from interp.locator.ranking import locate_memorization_head
from interp.locator.rare_tokens import mem_specific_head
from interp.memorization import MemorizationSplit, choose_indices, str_tokens
from interp.report.steps.memorization import mem_nmem_sets, set_step
from interp.report.types import Bundle, Skipped, StepInputs
from interp.testbed import shipped_unigram_counts
from interp.views.sections import heads_section


def _heads(inputs: StepInputs) -> Bundle | Skipped:
    split: MemorizationSplit = inputs.results["memorization"]
    if len(split.mem_idx) == 0 or len(split.nmem_idx) == 0:
        return mem_nmem_sets(inputs)
    o, model = inputs.options, inputs.model
    # the locator re-scores what it is given: every MEM paragraph it may use and as many NMEM ones
    wide = 16 * o.n_mem
    mem_idx, nmem_idx = choose_indices(split, n_mem=wide, n_nmem=wide, seed=o.seed)
    subset = inputs.paragraphs.select(torch.cat([mem_idx, nmem_idx]).sort().values)
    counts = shipped_unigram_counts(model)
    ranking = locate_memorization_head(
        model,
        subset,
        unigram_counts=counts,
        set_size=o.n_mem,
        method_options={
            "rare_token": {"score": conventions(o.conventions).rare_token_score, "null": o.rare_token_null}
        },
        mem_min=split.mem_min,
        nmem_max=split.nmem_max,
        seed=o.seed,
        batch_size=o.batch_size,
        progress=o.progress,
    )
    rare, rare_nmem, specific = ranking.rare_tokens, ranking.rare_tokens_nmem, None
    if rare is not None:
        if rare.null != o.rare_token_null:  # the locator scores with the default null; the p-values use the option's
            rare, rare_nmem = rare.with_null(o.rare_token_null), rare_nmem.with_null(o.rare_token_null)
        _ = rare.sum, rare_nmem.sum  # computed (and cached) here, in the step, so the view only reads them
        try:
            specific = mem_specific_head(rare, rare_nmem, seed=o.seed)
        except UserError as exc:
            specific = Skipped(str(exc))
    # attention patterns of the top heads on one MEM paragraph, for the circuitsvis view
    heads = [tuple(h) for h in ranking.order[:3].tolist()]
    example = inputs.paragraphs.select(mem_idx[:1])
    with torch.no_grad():
        _, cache = capture(
            model, example.tokens.to(model.cfg.device), [act_name("pattern", l) for l in range(model.cfg.n_layers)]
        )
    patterns = torch.stack([cache["pattern", layer][0, head] for layer, head in heads]).cpu()
    rarity = rarity_ranks(
        example.tokens, counts if counts is not None else unigram_counts(subset.tokens, model.cfg.d_vocab)
    )[0]
    return Bundle(
        {
            "ranking": ranking,
            "rare_tokens": rare,
            "rare_tokens_nmem": rare_nmem,
            "mem_specific_head": specific,
            "options": {
                "query": rare.query if rare is not None else None,
                "rare_token_null": o.rare_token_null,
                "rare_token_score": conventions(o.conventions).rare_token_score,
                "conventions": o.conventions,
            },
            "example": {
                "id": example.ids[0],
                "heads": heads,
                "patterns": patterns,
                "rarity": rarity,
                "str_tokens": str_tokens(model, example.tokens[0]),
                "corpus_counts": counts is not None,
            },
        }
    )


STEP = set_step("heads", _heads, heads_section, "batch_size", "conventions", "rare_token_null")
