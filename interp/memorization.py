"""The memorization split as one analysis result: EM / NLL of every paragraph, MEM and NMEM sets,
memorization by training repeat count, and per-token losses of a few example paragraphs.

`mem_nmem_thresholds` / `split_mem_nmem` are the one definition of MEM (EM >= mem_min, default the
whole continuation) and NMEM (EM <= nmem_max, default 10 of 50 tokens, as the paper) used everywhere.

This is the first step of every pipeline: the gradient, head and unlearning analyses all start
from the MEM / NMEM sets it chooses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.backend import Model
from interp.data import BATCH_SIZE, Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.metrics import NMEM_MAX_EM, ParagraphScores, count_groups, score_paragraphs


def mem_nmem_thresholds(
    continuation_len: int, *, mem_min: int | None = None, nmem_max: int | None = None
) -> tuple[int, int]:
    """(mem_min, nmem_max): MEM = EM >= mem_min (default: the whole continuation); NMEM = EM <= nmem_max
    (default: 10 for the paper's 50-token continuations, the same fraction, a fifth, of other lengths)."""
    mem_min = continuation_len if mem_min is None else mem_min
    nmem_max = round(NMEM_MAX_EM * continuation_len / 50) if nmem_max is None else nmem_max
    if not 0 <= nmem_max < mem_min <= continuation_len:
        raise UserError(
            f"need 0 <= nmem_max < mem_min <= continuation length {continuation_len}; "
            f"got nmem_max={nmem_max}, mem_min={mem_min}"
        )
    return mem_min, nmem_max


def split_mem_nmem(
    em: Int[Tensor, "n"], continuation_len: int, *, mem_min: int | None = None, nmem_max: int | None = None
) -> tuple[Int[Tensor, "n_mem"], Int[Tensor, "n_nmem"]]:
    """Indices of MEM and NMEM paragraphs, with the thresholds of `mem_nmem_thresholds`."""
    mem_min, nmem_max = mem_nmem_thresholds(continuation_len, mem_min=mem_min, nmem_max=nmem_max)
    return (em >= mem_min).nonzero().flatten(), (em <= nmem_max).nonzero().flatten()


@dataclass(frozen=True)
class MemorizationSplit(Displayed):
    """Scores of every paragraph and the MEM (EM >= mem_min) / NMEM (EM <= nmem_max) split."""

    _view = "interp.views.memorization:figure_em_histogram"

    scores: ParagraphScores
    mem_idx: Int[Tensor, "n_mem"]
    nmem_idx: Int[Tensor, "n_nmem"]
    mem_min: int
    nmem_max: int
    continuation_len: int
    counts: tuple[int, ...] | None  # training repeat counts, where known
    splits: tuple[str, ...] | None  # the testbed's 'planted' / 'once' / 'heldout' labels, where known
    examples: tuple[dict, ...]  # a few MEM and NMEM paragraphs with str_tokens and per-token NLL

    def by_count(self) -> list[dict]:
        """Per training repeat count: n, MEM fraction, mean EM, mean NLL (highest count first)."""
        rows = []
        for c, sel in count_groups(self.counts):
            em = self.scores.em[sel]
            rows.append(
                {
                    "count": c,
                    "n": int(sel.sum()),
                    "n_mem": int((em >= self.mem_min).sum()),
                    "fraction_mem": float((em >= self.mem_min).float().mean()),
                    "mean_em": float(em.float().mean()),
                    "mean_nll": float(self.scores.nll[sel].mean()),
                }
            )
        return rows

    def to_json(self) -> dict:
        records = self.scores.to_json()
        for i, rec in enumerate(records):
            if self.counts is not None:
                rec["count"] = self.counts[i]
            if self.splits is not None:
                rec["split"] = self.splits[i]
        return {
            "continuation_len": self.continuation_len,
            "mem_min": self.mem_min,
            "nmem_max": self.nmem_max,
            "n_paragraphs": len(records),
            "n_mem": len(self.mem_idx),
            "n_nmem": len(self.nmem_idx),
            "mean_em": float(self.scores.em.float().mean()),
            "em_histogram": self.scores.em.bincount(minlength=self.continuation_len + 1).tolist(),
            "by_count": self.by_count(),
            "mem_ids": [self.scores.ids[i] for i in self.mem_idx.tolist()],
            "paragraphs": records,
            "examples": list(self.examples),
        }


@torch.no_grad()
def per_token_nll(model: Model, tokens: Int[Tensor, "n seq"]) -> Float[Tensor, "n seq"]:
    """-log p(token | earlier tokens) at every position; 0 at position 0, which has no prediction."""
    logits = model(tokens.to(model.cfg.device), return_type="logits").float()
    lp = logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None].to(logits.device)).squeeze(-1)
    return torch.cat([torch.zeros_like(lp[:, :1]), -lp], dim=1).cpu()


def memorization_split(
    model: Model,
    paragraphs: Paragraphs,
    *,
    batch_size: int = BATCH_SIZE,
    mem_min: int | None = None,
    nmem_max: int | None = None,
    n_examples: int = 2,
) -> MemorizationSplit:
    """Score every paragraph in batched teacher-forced passes and split MEM / NMEM.

    Thresholds: `mem_nmem_thresholds` (defaults: MEM = the whole continuation reproduced; NMEM =
    EM <= 10 for the paper's 50-token continuations, the same fraction of other lengths).

    `n_examples` MEM and NMEM paragraphs (the first of each, in file order) get per-token NLL
    and token strings for per-token views.
    """
    cont = paragraphs.continuation_len
    mem_min, nmem_max = mem_nmem_thresholds(cont, mem_min=mem_min, nmem_max=nmem_max)
    scores = score_paragraphs(model, paragraphs, batch_size=batch_size)
    mem_idx, nmem_idx = split_mem_nmem(scores.em, cont, mem_min=mem_min, nmem_max=nmem_max)
    chosen = [("mem", i) for i in mem_idx[:n_examples].tolist()] + [("nmem", i) for i in nmem_idx[:n_examples].tolist()]
    examples: list[dict] = []
    if chosen:
        idx = [i for _, i in chosen]
        token_nll = per_token_nll(model, paragraphs.tokens[idx])
        for row, (kind, i) in enumerate(chosen):
            examples.append(
                {
                    "kind": kind,
                    "id": paragraphs.ids[i],
                    "em": int(scores.em[i]),
                    "prefix_len": paragraphs.prefix_len,
                    "str_tokens": str_tokens(model, paragraphs.tokens[i]),
                    "token_nll": [round(x, 4) for x in token_nll[row].tolist()],
                }
            )
    return MemorizationSplit(
        scores=scores,
        mem_idx=mem_idx,
        nmem_idx=nmem_idx,
        mem_min=mem_min,
        nmem_max=nmem_max,
        continuation_len=cont,
        counts=paragraphs.counts,
        splits=paragraphs.meta.get("split"),
        examples=tuple(examples),
    )


def str_tokens(model: Model, tokens: Int[Tensor, "seq"]) -> list[str]:
    """Each token as text (its id as <id> when the model has no tokenizer), for views."""
    if model.tokenizer is None:
        return [f"<{t}>" for t in tokens.tolist()]
    return [model.tokenizer.decode([t]) for t in tokens.tolist()]


def choose_indices(
    split: MemorizationSplit, *, n_mem: int, n_nmem: int, seed: int = 0
) -> tuple[Int[Tensor, "a"], Int[Tensor, "b"]]:
    """Positions of up to n_mem MEM and n_nmem NMEM paragraphs, drawn with a fixed seed, sorted.

    NMEM paragraphs come from text the model was trained on where that is known (the testbed's
    'heldout' paragraphs, never seen, are left out), as in the paper.
    """
    nmem_pool = split.nmem_idx
    if split.splits is not None:
        seen = torch.tensor([s != "heldout" for s in split.splits])
        if seen[nmem_pool].any():
            nmem_pool = nmem_pool[seen[nmem_pool]]
    gen = torch.Generator().manual_seed(seed)
    mem = split.mem_idx[torch.randperm(len(split.mem_idx), generator=gen)[:n_mem]].sort().values
    nmem = nmem_pool[torch.randperm(len(nmem_pool), generator=gen)[:n_nmem]].sort().values
    return mem, nmem


def choose_sets(
    split: MemorizationSplit, paragraphs: Paragraphs, *, n_mem: int, n_nmem: int, seed: int = 0
) -> tuple[Paragraphs, Paragraphs]:
    """Up to n_mem MEM and n_nmem NMEM paragraphs for the costlier analyses (see `choose_indices`)."""
    mem, nmem = choose_indices(split, n_mem=n_mem, n_nmem=n_nmem, seed=seed)
    return paragraphs.select(mem), paragraphs.select(nmem)


def heldout_indices(split: MemorizationSplit) -> Int[Tensor, "h"]:
    """Positions of paragraphs never trained on (the testbed's 'heldout' split); empty when unknown."""
    if split.splits is None:
        return torch.zeros(0, dtype=torch.long)
    return torch.tensor([i for i, s in enumerate(split.splits) if s == "heldout"], dtype=torch.long)
