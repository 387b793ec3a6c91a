"""Attention to rare tokens, per head: the paper's signature of the memorization head.

Inside each paragraph the prefix tokens get a dense rank of their corpus unigram frequency
(0 = rarest). For every head, the attention from the query position (default: the last prefix
position, which predicts the first continuation token) to the prefix tokens is summed per rank
over paragraphs, and Kendall's tau between rank and summed attention says how much the head
prefers rare tokens (tau < 0: more attention to rarer tokens; the paper's head 1.2: -0.97).

Summing favours low ranks a little by construction: every paragraph has a rank 0, but only
paragraphs with many distinct frequencies have rank 40. `tau_mean` therefore also correlates
the mean attention per paragraph that has the rank. One forward per batch over the prefixes
only, caching nothing but the attention patterns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from scipy.stats import kendalltau
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.data import Paragraphs, rarity_ranks
from interp.errors import UserError


def _kendall(curves: Float[Tensor, "layer head rank"], present: Bool[Tensor, "rank"]) -> tuple[Tensor, Tensor]:
    ranks = np.arange(int(present.sum()))
    values = curves[..., present].double().numpy()
    taus, ps = np.full(curves.shape[:2], np.nan), np.full(curves.shape[:2], np.nan)
    if len(ranks) < 2:
        return torch.tensor(taus).float(), torch.tensor(ps).float()
    for layer in range(curves.shape[0]):
        for head in range(curves.shape[1]):
            res = kendalltau(ranks, values[layer, head])
            taus[layer, head], ps[layer, head] = res.statistic, res.pvalue
    return torch.tensor(taus).float(), torch.tensor(ps).float()


@dataclass(frozen=True)
class RareTokenAttention:
    """Per-paragraph attention summed per frequency rank; taus over any subset via `select`.

    `per_paragraph[i, l, h, r]` = attention of head (l, h) from the query position to the prefix
    tokens of rank r in paragraph i; `has_rank[i, r]` whether paragraph i has a token of rank r.
    """

    ids: tuple[str, ...]
    query_pos: int
    per_paragraph: Float[Tensor, "n layer head rank"]
    has_rank: Bool[Tensor, "n rank"]

    @property
    def attention_by_rank(self) -> Float[Tensor, "layer head rank"]:
        """Attention summed over paragraphs per rank (the paper's curve)."""
        return self.per_paragraph.sum(0)

    @property
    def mean_by_rank(self) -> Float[Tensor, "layer head rank"]:
        """Mean attention per rank over the paragraphs that have that rank."""
        return self.attention_by_rank / self.has_rank.sum(0).clamp(min=1)

    @property
    def tau(self) -> Float[Tensor, "layer head"]:
        """Kendall's tau between rank and summed attention (paper; negative = prefers rare tokens)."""
        return _kendall(self.attention_by_rank, self.has_rank.any(0))[0]

    @property
    def p_value(self) -> Float[Tensor, "layer head"]:
        return _kendall(self.attention_by_rank, self.has_rank.any(0))[1]

    @property
    def tau_mean(self) -> Float[Tensor, "layer head"]:
        """Kendall's tau between rank and MEAN attention (free of the rank-count bias of sums)."""
        return _kendall(self.mean_by_rank, self.has_rank.any(0))[0]

    def select(self, index: Tensor) -> RareTokenAttention:
        idx = torch.as_tensor(index, dtype=torch.long)
        return RareTokenAttention(tuple(self.ids[i] for i in idx.tolist()), self.query_pos,
                                  self.per_paragraph[idx], self.has_rank[idx])

    def to_json(self) -> dict:
        present = self.has_rank.any(0)
        return {
            "query_pos": self.query_pos, "n_paragraphs": len(self.ids), "tau": self.tau, "p_value": self.p_value,
            "tau_mean": self.tau_mean, "attention_by_rank": self.attention_by_rank[..., present],
            "paragraphs_with_rank": self.has_rank.sum(0)[present],
        }


@torch.no_grad()
def rare_token_attention(
    model: HookedTransformer,
    paragraphs: Paragraphs,
    unigram_counts: Int[Tensor, "vocab"],
    query_pos: int | None = None,
    batch_size: int = 64,
) -> RareTokenAttention:
    """Attention from `query_pos` (default prefix_len - 1) to each frequency rank of the prefix, per head."""
    p = paragraphs.prefix_len
    query_pos = p - 1 if query_pos is None else query_pos
    if not 0 <= query_pos < p:
        raise UserError(f"query position {query_pos} must lie in the prefix (0..{p - 1})")
    if unigram_counts.shape[0] < model.cfg.d_vocab:
        raise UserError(f"unigram counts cover {unigram_counts.shape[0]} tokens, the model's vocabulary {model.cfg.d_vocab}: "
                        "were they counted with another tokenizer?")
    src = query_pos + 1
    prefixes = paragraphs.prefixes[:, :src]
    ranks = rarity_ranks(prefixes.cpu(), unigram_counts.cpu())  # [n, src]
    chunks = []
    for start in range(0, len(paragraphs), batch_size):
        tokens = prefixes[start : start + batch_size].to(model.cfg.device)
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("attn.hook_pattern"))
        pattern = torch.stack([cache["pattern", layer][:, :, query_pos, :src] for layer in range(model.cfg.n_layers)], 1)
        chunks.append(pattern.float().cpu())  # [b, layer, head, src]
    attn = torch.cat(chunks)
    n, n_layers, n_heads, _ = attn.shape
    index = ranks[:, None, None, :].expand(n, n_layers, n_heads, src)
    per_rank = torch.zeros(n, n_layers, n_heads, src).scatter_add_(-1, index, attn)
    has_rank = torch.zeros(n, src, dtype=torch.bool).scatter_(1, ranks, True)
    return RareTokenAttention(paragraphs.ids, query_pos, per_rank, has_rank)
