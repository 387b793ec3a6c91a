"""Position robustness: is a paragraph still recited when it does not start the context?

A model that memorized a paragraph by its content recites it wherever it appears; one that tied
it to absolute positions (trained with the paragraph always at positions 0..99) loses it as soon
as other text comes first. For each k, every paragraph is preceded by k tokens of unrelated text
(filler the model never saw) and its continuation is scored by exact match (EM, from argmax hits
up to the first miss) in one batched teacher-forced pass. The answer is, per k, the share of the
paragraphs memorized at k = 0 (EM = full) that are still at EM = full, and the mean EM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.backend import Model
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.metrics import count_groups, em_from_hits, teacher_forced_hits


@dataclass(frozen=True)
class PositionRobustness:
    """EM of every paragraph after k tokens of unrelated text, for each k."""

    ids: tuple[str, ...]
    counts: tuple[int, ...] | None  # training repeat counts, where known
    ks: tuple[int, ...]
    em: Int[Tensor, "k n"]  # em[i, j]: paragraph j preceded by ks[i] filler tokens
    mem_at_zero: Bool[Tensor, "n"]  # EM = full with nothing before it (the standard setting)
    continuation_len: int

    def share_kept(self, k: int) -> float:
        """Share of the paragraphs memorized at k = 0 that are still at EM = full after k tokens."""
        if not bool(self.mem_at_zero.any()):
            return float("nan")
        row = self.em[self.ks.index(k)]
        return float((row[self.mem_at_zero] == self.continuation_len).float().mean())

    def table(self) -> list[dict]:
        """One row per k: memorized at 0, still memorized, their share, mean EM (all / MEM at 0)."""
        rows = []
        for i, k in enumerate(self.ks):
            full = self.em[i] == self.continuation_len
            rows.append(
                {
                    "k": k,
                    "n": len(self.ids),
                    "n_mem_at_0": int(self.mem_at_zero.sum()),
                    "n_mem_at_0_kept": int((full & self.mem_at_zero).sum()),
                    "share_kept": self.share_kept(k),
                    "n_mem_at_k": int(full.sum()),
                    "mean_em": float(self.em[i].float().mean()),
                    "mean_em_mem_at_0": float(self.em[i][self.mem_at_zero].float().mean())
                    if self.mem_at_zero.any()
                    else float("nan"),
                }
            )
        return rows

    def by_count(self) -> list[dict]:
        """One row per (repeat count, k): paragraphs at EM = full and mean EM."""
        rows = []
        for c, sel in count_groups(self.counts):
            for i, k in enumerate(self.ks):
                em = self.em[i][sel]
                rows.append(
                    {
                        "count": c,
                        "k": k,
                        "n": int(sel.sum()),
                        "n_em_full": int((em == self.continuation_len).sum()),
                        "mean_em": float(em.float().mean()),
                    }
                )
        return rows

    def to_json(self) -> dict:
        """Plain JSON: shares and means that are undefined (no paragraph memorized at k = 0) are null."""
        return {
            "ks": list(self.ks),
            "continuation_len": self.continuation_len,
            "table": [{key: None if v != v else v for key, v in row.items()} for row in self.table()],
            "by_count": self.by_count(),
            "em": {pid: self.em[:, j].tolist() for j, pid in enumerate(self.ids)},
        }


def filler_spans(filler: Int[Tensor, "m len"], n: int, length: int, seed: int) -> Int[Tensor, "n length"]:
    """`n` spans of `length` tokens of filler text: the rows joined in a seeded random order, each
    span starting at a seeded random place. The same (filler, n, length, seed) gives the same spans."""
    gen = torch.Generator().manual_seed(seed)
    stream = filler[torch.randperm(filler.shape[0], generator=gen)].flatten()
    if stream.numel() < length:
        raise UserError(f"the filler holds {stream.numel()} tokens; {length} are needed before each paragraph")
    starts = torch.randint(0, stream.numel() - length + 1, (n,), generator=gen)
    return stream[starts[:, None] + torch.arange(length)]


def position_robustness(
    model: Model,
    paragraphs: Paragraphs,
    *,
    filler: Int[Tensor, "m len"],
    ks: tuple[int, ...] = (0, 17, 64, 150),
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> PositionRobustness:
    """EM of each paragraph's continuation when k tokens of unrelated text come first, for each k.

    `filler` holds rows of token ids of text the model never saw (e.g. held-out paragraphs); each
    paragraph gets its own span of max(ks) filler tokens (seeded, see `filler_spans`) and, for
    each k, the last k of them precede it, so the texts before one paragraph are nested. k = 0 is
    always measured: it defines which paragraphs count as memorized.
    """
    ks = tuple(sorted({0, *(int(k) for k in ks)}))
    if ks[0] < 0:
        raise UserError(f"k must be >= 0 tokens of text before the paragraph, got {ks[0]}")
    if ks[-1] + paragraphs.seq_len > model.cfg.n_ctx:
        raise UserError(
            f"k = {ks[-1]} filler tokens + {paragraphs.seq_len}-token paragraphs exceed the model's context of "
            f"{model.cfg.n_ctx} tokens: use smaller k"
        )
    filler = torch.as_tensor(filler, dtype=torch.long).cpu()
    if filler.ndim != 2:
        raise UserError(f"filler must be 2-D [rows, tokens], got shape {tuple(filler.shape)}")
    if int(filler.max()) >= model.cfg.d_vocab or int(filler.min()) < 0:
        raise UserError(f"filler token ids must lie in the model's vocabulary 0..{model.cfg.d_vocab - 1}")
    spans = filler_spans(filler, len(paragraphs), ks[-1], seed)
    tokens = paragraphs.tokens.cpu()
    rows = []
    for k in ks:
        with_filler = torch.cat([spans[:, spans.shape[1] - k :], tokens], dim=1)
        hits, _ = teacher_forced_hits(model, with_filler, k + paragraphs.prefix_len, batch_size)
        rows.append(em_from_hits(hits))
    em = torch.stack(rows)
    return PositionRobustness(
        ids=paragraphs.ids,
        counts=paragraphs.counts,
        ks=ks,
        em=em,
        mem_at_zero=em[0] == paragraphs.continuation_len,
        continuation_len=paragraphs.continuation_len,
    )
