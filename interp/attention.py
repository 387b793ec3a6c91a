"""Attention to rare tokens, per head: the paper's signature of the memorization head, with its null.

Inside each paragraph the prefix tokens get a dense rank of their corpus unigram frequency
(0 = rarest). For every head, the attention from one query position to the prefix tokens is
summed per rank over paragraphs, and Kendall's tau between rank and summed attention says how
much the head prefers rare tokens (tau < 0: more attention to rarer tokens; the paper's head 1.2
of GPT-Neo 125M: -0.97).

Query position. The authors' notebooks read the FIRST continuation position (index prefix_len)
attending over the prefix keys 0..prefix_len-1 (`query="first_continuation"`, the default). The
position that predicts the first continuation token, prefix_len - 1, attending over keys
0..prefix_len-1 including itself, is `query="last_prefix"`.

Null. Neither tau is 0 for a head with no preference: every paragraph has a rank 0 but few have
rank 40, so summed attention falls with rank even for a uniform head, and the mean per rank has
biases of its own. Each statistic is therefore reported beside (a) the tau of UNIFORM attention
over the same keys of the same paragraphs and (b) a permutation null: the frequency ranks are
shuffled among the prefix positions within each paragraph (`null_draws` times), which keeps
every paragraph's rank multiset and the head's attention pattern and breaks only the link
between attention and rarity. `excess` = tau - mean of the null; `null_p` = the one-sided
permutation p-value of a preference for rare tokens, (1 + #{null tau <= tau}) / (1 + draws).
A head with no preference has excess ~ 0 and a large p.

One forward per batch over the prefixes (plus the first continuation token for the default
query), caching nothing but the attention patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.data import Paragraphs, rarity_ranks
from interp.errors import UserError

QUERIES = ("first_continuation", "last_prefix")
STATISTICS = ("sum", "mean")
NULL_DRAWS = 1000


def kendall_tau_b(y: Float[Tensor, "... r"]) -> Float[Tensor, "..."]:
    """Kendall's tau-b between the positions 0..r-1 and the values `y`, over the last axis.

    Equal to scipy.stats.kendalltau(range(r), y) (tau-b: ties in y reduce the denominator); nan
    when y is constant or r < 2.
    """
    r = y.shape[-1]
    if r < 2:
        return torch.full(y.shape[:-1], float("nan"), dtype=torch.float64)
    y = y.double()
    upper = torch.triu(torch.ones(r, r, dtype=torch.bool), diagonal=1)
    diff = (y[..., None, :] - y[..., :, None])[..., upper]  # y_j - y_i for every pair i < j
    concordance = diff.sign().sum(-1)
    n0 = r * (r - 1) / 2
    tied = (diff == 0).sum(-1).double()
    return concordance / torch.sqrt(n0 * (n0 - tied))


def _per_rank(
    attention: Float[Tensor, "n head key"], ranks: Int[Tensor, "n key"], n_ranks: int
) -> Float[Tensor, "head rank"]:
    """Attention summed over paragraphs per frequency rank."""
    n, heads, keys = attention.shape
    flat = attention.permute(0, 2, 1).reshape(n * keys, heads)
    return torch.zeros(n_ranks, heads, dtype=attention.dtype).index_add_(0, ranks.flatten(), flat).T


@dataclass(frozen=True)
class TauStatistics:
    """One tau statistic of every head with its nulls (see the module docstring).

    `tau[l, h]`: Kendall tau between rank and the per-rank attention curve (summed, or the mean over
    the paragraphs that have the rank); `uniform_tau`: the same for uniform attention over the keys
    (one number, the same for every head); `null_mean`, `null_std`: the permutation null per head;
    `excess` = tau - null_mean; `null_p`: one-sided permutation p-value of rare-token preference.
    """

    statistic: str
    tau: Float[Tensor, "layer head"]
    uniform_tau: float
    null_mean: Float[Tensor, "layer head"]
    null_std: Float[Tensor, "layer head"]
    null_p: Float[Tensor, "layer head"]
    draws: int

    @property
    def excess(self) -> Float[Tensor, "layer head"]:
        return self.tau - self.null_mean

    def to_json(self) -> dict:
        return {
            "statistic": self.statistic,
            "tau": self.tau,
            "uniform_tau": self.uniform_tau,
            "null_mean": self.null_mean,
            "null_std": self.null_std,
            "excess": self.excess,
            "null_p": self.null_p,
            "null_draws": self.draws,
        }


def tau_statistics(
    attention: Float[Tensor, "n layer head key"],
    ranks: Int[Tensor, "n key"],
    *,
    statistic: str = "sum",
    draws: int = NULL_DRAWS,
    seed: int = 0,
    chunk: int = 25,
) -> TauStatistics:
    """Tau of every head's per-rank attention curve, the uniform head's tau and the permutation null.

    Only ranks that occur in at least one paragraph enter the correlation. The null shuffles ranks
    among positions within each paragraph, `draws` times (seeded), in chunks of `chunk` draws.
    """
    if statistic not in STATISTICS:
        raise UserError(f"unknown tau statistic {statistic!r}: use one of {', '.join(STATISTICS)}")
    if draws < 1:
        raise UserError(f"null_draws must be at least 1, got {draws}")
    n, n_layers, n_heads, keys = attention.shape
    att = attention.double().reshape(n, n_layers * n_heads, keys)
    n_ranks = int(ranks.max()) + 1
    has_rank = torch.zeros(n, n_ranks, dtype=torch.bool).scatter_(1, ranks, True)
    present = has_rank.any(0)
    denominator = (
        has_rank.sum(0).clamp(min=1).double() if statistic == "mean" else torch.ones(n_ranks, dtype=torch.float64)
    )

    def taus(curves: Tensor) -> Tensor:  # [..., rank] -> [...]; rounded so that equal sums tie exactly
        return kendall_tau_b(((curves / denominator)[..., present] * 1e10).round())

    observed = taus(_per_rank(att, ranks, n_ranks))
    uniform = taus(_per_rank(torch.full((n, 1, keys), 1.0 / keys, dtype=torch.float64), ranks, n_ranks))[0]
    generator = torch.Generator().manual_seed(seed)
    null = []
    flat_att = att.permute(0, 2, 1).reshape(n * keys, -1)
    for start in range(0, draws, chunk):
        d = min(chunk, draws - start)
        order = torch.rand(d, n, keys, generator=generator).argsort(-1)
        shuffled = ranks.expand(d, n, keys).gather(-1, order)  # [d, n, key]
        index = (torch.arange(d)[:, None] * n_ranks + shuffled.reshape(d, n * keys)).flatten()
        curves = torch.zeros(d * n_ranks, flat_att.shape[1], dtype=torch.float64).index_add_(
            0, index, flat_att.repeat(d, 1)
        )
        null.append(taus(curves.view(d, n_ranks, -1).transpose(1, 2)))  # [d, head]
    null_t = torch.cat(null)
    p = (1 + (null_t <= observed + 1e-12).sum(0)).double() / (1 + draws)
    shape = (n_layers, n_heads)
    return TauStatistics(
        statistic=statistic,
        tau=observed.view(shape).float(),
        uniform_tau=float(uniform),
        null_mean=null_t.mean(0).view(shape).float(),
        null_std=null_t.std(0).view(shape).float(),
        null_p=p.view(shape).float(),
        draws=draws,
    )


@dataclass(frozen=True)
class RareTokenAttention:
    """Attention of every head from the query position to each prefix key, with the keys' rarity ranks.

    `key_attention[i, l, h, k]` = attention of head (l, h) from the query position to prefix key k
    of paragraph i; `key_ranks[i, k]` the key's frequency rank in that paragraph (0 = rarest).
    `sum` and `mean` are the two tau statistics with their nulls, computed on first use (`null_draws`
    permutations, seeded); `select` gives the same analysis on a subset of the paragraphs.
    """

    ids: tuple[str, ...]
    query: str
    query_pos: int
    key_attention: Float[Tensor, "n layer head key"]
    key_ranks: Int[Tensor, "n key"]
    null_draws: int = NULL_DRAWS
    seed: int = 0

    @cached_property
    def sum(self) -> TauStatistics:
        """Tau of the summed attention per rank (the paper's statistic), with its nulls."""
        return tau_statistics(
            self.key_attention, self.key_ranks, statistic="sum", draws=self.null_draws, seed=self.seed
        )

    @cached_property
    def mean(self) -> TauStatistics:
        """Tau of the mean attention per rank over the paragraphs that have the rank, with its nulls."""
        return tau_statistics(
            self.key_attention, self.key_ranks, statistic="mean", draws=self.null_draws, seed=self.seed
        )

    @property
    def n_ranks(self) -> int:
        return self.key_attention.shape[-1]

    @property
    def has_rank(self) -> Bool[Tensor, "n rank"]:
        """Whether paragraph i has a prefix token of rank r."""
        return torch.zeros(len(self.ids), self.n_ranks, dtype=torch.bool).scatter_(1, self.key_ranks, True)

    @property
    def per_paragraph(self) -> Float[Tensor, "n layer head rank"]:
        """Attention per paragraph summed per rank."""
        n, layers, heads, keys = self.key_attention.shape
        index = self.key_ranks[:, None, None, :].expand(n, layers, heads, keys)
        return torch.zeros(n, layers, heads, self.n_ranks).scatter_add_(-1, index, self.key_attention)

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
        """Kendall's tau between rank and summed attention (the paper's statistic; biased, see `sum.excess`)."""
        return self.sum.tau

    @property
    def tau_mean(self) -> Float[Tensor, "layer head"]:
        """Kendall's tau between rank and MEAN attention per rank (biased too, see `mean.excess`)."""
        return self.mean.tau

    @property
    def excess(self) -> Float[Tensor, "layer head"]:
        """Summed tau minus its permutation-null mean: < 0 = attends to rare tokens beyond chance."""
        return self.sum.excess

    def select(self, index: Tensor) -> RareTokenAttention:
        """The same analysis restricted to paragraphs `index` (statistics and nulls recomputed)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return RareTokenAttention(
            tuple(self.ids[i] for i in idx.tolist()),
            self.query,
            self.query_pos,
            self.key_attention[idx],
            self.key_ranks[idx],
            self.null_draws,
            self.seed,
        )

    def to_json(self) -> dict:
        present = self.has_rank.any(0)
        return {
            "query": self.query,
            "query_pos": self.query_pos,
            "n_paragraphs": len(self.ids),
            "tau": self.tau,
            "tau_mean": self.tau_mean,
            "excess": self.excess,
            "sum": self.sum.to_json(),
            "mean": self.mean.to_json(),
            "attention_by_rank": self.attention_by_rank[..., present],
            "paragraphs_with_rank": self.has_rank.sum(0)[present],
        }


@torch.no_grad()
def rare_token_attention(
    model: HookedTransformer,
    paragraphs: Paragraphs,
    unigram_counts: Int[Tensor, "vocab"],
    *,
    query: str = "first_continuation",
    null_draws: int = NULL_DRAWS,
    seed: int = 0,
    batch_size: int = 64,
) -> RareTokenAttention:
    """Attention from the query position to every prefix key, per head, with rank taus and their nulls.

    `query="first_continuation"` (the authors' code): position prefix_len over keys 0..prefix_len-1;
    `query="last_prefix"`: position prefix_len - 1 over keys 0..prefix_len-1 (itself included).
    """
    if query not in QUERIES:
        raise UserError(f"unknown query position {query!r}: use one of {', '.join(QUERIES)}")
    if unigram_counts.shape[0] < model.cfg.d_vocab:
        raise UserError(
            f"unigram counts cover {unigram_counts.shape[0]} tokens, the model's vocabulary {model.cfg.d_vocab}: "
            "were they counted with another tokenizer?"
        )
    if len(paragraphs) == 0:
        raise UserError("rare-token attention needs at least one paragraph")
    p = paragraphs.prefix_len
    query_pos = p if query == "first_continuation" else p - 1
    inputs = paragraphs.tokens[:, : query_pos + 1]
    ranks = rarity_ranks(paragraphs.prefixes.cpu(), unigram_counts.cpu())  # [n, p]
    chunks = []
    for start in range(0, len(paragraphs), batch_size):
        tokens = inputs[start : start + batch_size].to(model.cfg.device)
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("attn.hook_pattern"))
        pattern = torch.stack([cache["pattern", layer][:, :, query_pos, :p] for layer in range(model.cfg.n_layers)], 1)
        chunks.append(pattern.float().cpu())  # [b, layer, head, key]
    if null_draws < 1:
        raise UserError(f"null_draws must be at least 1, got {null_draws}")
    return RareTokenAttention(paragraphs.ids, query, query_pos, torch.cat(chunks), ranks, null_draws, seed)
