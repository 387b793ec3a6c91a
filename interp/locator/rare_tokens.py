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
over the same keys of the same paragraphs and (b) a permutation null, `null_draws` draws of one of:

- `"pair_paragraphs"` (the default): paragraph i's attention is paired with the rank row of
  paragraph pi(i), pi a random permutation of the paragraphs. Every paragraph keeps its attention
  pattern over positions and every rank row stays intact, so what position 0 (or the last key)
  usually holds is kept: a purely positional head (an attention sink on position 0) has no excess
  even where rarity correlates with position, e.g. when windows cut mid-document start on a rare
  fragment. All paragraphs share prefix_len, so keys and ranks align position by position; a rank
  that paragraph pi(i) lacks simply gets none of i's attention. The ranks present and the number of
  paragraphs per rank (the mean statistic's denominators) are the same in every draw. With n
  paragraphs there are only n! pairings (1 paragraph: the null is the observation, p = 1).
- `"shuffle_positions"` (the previous default): ranks shuffled among the prefix positions within
  each paragraph. It also breaks the link between position and rarity, so a positional head looks
  "rare-token preferring" whenever rare tokens sit at particular positions.

`excess` = tau - mean of the null; `null_p` = the one-sided permutation p-value of a preference for
rare tokens, (1 + #{null tau <= tau}) / (1 + draws), NaN where tau is undefined (a constant
per-rank curve); `family_p` = the family-wise p over all layer x head heads by the max-statistic
permutation (Westfall & Young): for every draw the most negative null excess over all heads, and
(1 + #{draws whose minimum <= the head's excess}) / (1 + draws). A head with no preference has
excess ~ 0 and a large p. `mem_specific_head` picks the head whose preference is most specific to
MEM paragraphs on one half of them and tests it on the other half by shuffling MEM / NMEM labels.

One forward per batch over the prefixes (plus the first continuation token for the default
query), caching nothing but the attention patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.backend import Model, act_name, capture
from interp.data import BATCH_SIZE, Paragraphs, rarity_ranks
from interp.errors import UserError
from interp.io import float_from_json, tensor_from_json
from interp.locator.options import DEFAULT_NULL, NULLS

QUERIES = ("first_continuation", "last_prefix")
STATISTICS = ("sum", "mean")
NULL_DRAWS = 1000


def _check_null(null: str, draws: int) -> None:
    if null not in NULLS:
        raise UserError(f"unknown rare-token null {null!r}: use one of {', '.join(NULLS)} (--rare-token-null)")
    if draws < 1:
        raise UserError(f"null_draws must be at least 1, got {draws}")


def null_ranks(
    ranks: Int[Tensor, "n key"],
    draws: int,
    generator: torch.Generator,
    null: str = DEFAULT_NULL,
    groups: Int[Tensor, "d n"] | None = None,
) -> Int[Tensor, "d n key"]:
    """`draws` rank assignments under the null: row i of draw d is the rank row paired with paragraph i's attention.

    `"pair_paragraphs"`: the rank row of a random partner paragraph (a permutation of the paragraphs,
    within each label of `groups[d]` when given); `"shuffle_positions"`: paragraph i's own ranks shuffled
    among its positions (`groups` is then irrelevant).
    """
    n, keys = ranks.shape
    if null == "shuffle_positions":
        order = torch.rand(draws, n, keys, generator=generator).argsort(-1)
        return ranks.expand(draws, n, keys).gather(-1, order)
    label = torch.zeros(draws, n) if groups is None else groups.double()
    # sorting label + U(0, 1) lists each label's members in a random order; two such orders pair them
    first = (label + torch.rand(draws, n, generator=generator, dtype=torch.float64)).argsort(-1)
    second = (label + torch.rand(draws, n, generator=generator, dtype=torch.float64)).argsort(-1)
    partner = torch.empty_like(first).scatter_(1, first, second)
    return ranks[partner]


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


def _nanstd(values: Float[Tensor, "draw head"], mean: Float[Tensor, "head"]) -> Float[Tensor, "head"]:
    """Standard deviation over draws, leaving out undefined (NaN) draws."""
    count = (~values.isnan()).sum(0)
    return ((values - mean).pow(2).nansum(0) / (count - 1).clamp(min=1)).sqrt()


@dataclass(frozen=True)
class TauStatistics:
    """One tau statistic of every head with its nulls (see the module docstring).

    `tau[l, h]`: Kendall tau between rank and the per-rank attention curve (summed, or the mean over
    the paragraphs that have the rank); `uniform_tau`: the same for uniform attention over the keys
    (one number, the same for every head); `null_mean`, `null_std`: the permutation null per head;
    `excess` = tau - null_mean; `null_p`: one-sided permutation p-value of rare-token preference (NaN
    where tau is undefined); `family_p`: the same corrected for all layer x head heads (max-statistic).
    """

    statistic: str
    tau: Float[Tensor, "layer head"]
    uniform_tau: float
    null_mean: Float[Tensor, "layer head"]
    null_std: Float[Tensor, "layer head"]
    null_p: Float[Tensor, "layer head"]
    family_p: Float[Tensor, "layer head"]
    draws: int
    null: str = DEFAULT_NULL

    @property
    def undefined(self) -> Bool[Tensor, "layer head"]:
        """Heads whose tau is undefined (a constant per-rank curve): no p-value, no excess."""
        return self.tau.isnan()

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
            "family_p": self.family_p,
            "family_p_method": "max-statistic permutation over all layer x head heads (min null excess per draw)",
            "null": self.null,
            "null_draws": self.draws,
            "undefined_tau_heads": int(self.undefined.sum()),
        }

    @classmethod
    def from_json(cls, data: dict) -> TauStatistics:
        """The statistics `to_json` wrote (tensors back as float32, nulls as NaN)."""
        return cls(
            data["statistic"],
            tensor_from_json(data["tau"], torch.float32),
            float_from_json(data["uniform_tau"]),
            tensor_from_json(data["null_mean"], torch.float32),
            tensor_from_json(data["null_std"], torch.float32),
            tensor_from_json(data["null_p"], torch.float32),
            tensor_from_json(data["family_p"], torch.float32),
            data["null_draws"],
            data["null"],
        )


def tau_statistics(
    attention: Float[Tensor, "n layer head key"],
    ranks: Int[Tensor, "n key"],
    *,
    statistic: str = "sum",
    draws: int = NULL_DRAWS,
    seed: int = 0,
    chunk: int = 25,
    null: str = DEFAULT_NULL,
) -> TauStatistics:
    """Tau of every head's per-rank attention curve, the uniform head's tau and the permutation null.

    Only ranks that occur in at least one paragraph enter the correlation. The null (`null`, see the
    module docstring) is drawn `draws` times (seeded), in chunks of `chunk` draws; the same draws give
    the per-head p and the family-wise p.
    """
    if statistic not in STATISTICS:
        raise UserError(f"unknown tau statistic {statistic!r}: use one of {', '.join(STATISTICS)}")
    _check_null(null, draws)
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
    draws_tau = []
    flat_att = att.permute(0, 2, 1).reshape(n * keys, -1)
    for start in range(0, draws, chunk):
        d = min(chunk, draws - start)
        shuffled = null_ranks(ranks, d, generator, null)  # [d, n, key]
        index = (torch.arange(d)[:, None] * n_ranks + shuffled.reshape(d, n * keys)).flatten()
        curves = torch.zeros(d * n_ranks, flat_att.shape[1], dtype=torch.float64).index_add_(
            0, index, flat_att.repeat(d, 1)
        )
        draws_tau.append(taus(curves.view(d, n_ranks, -1).transpose(1, 2)))  # [d, head]
    null_t = torch.cat(draws_tau)  # [draw, head]; NaN where a draw's curve is constant
    null_mean = null_t.nanmean(0)
    undefined = observed.isnan()
    p = (1 + (null_t <= observed + 1e-12).sum(0)).double() / (1 + draws)
    # max-statistic: per draw the most negative null excess over all heads (undefined ones left out)
    most_extreme = (null_t - null_mean).nan_to_num(float("inf")).min(1).values  # [draw]
    family = (1 + (most_extreme[:, None] <= (observed - null_mean)[None] + 1e-12).sum(0)).double() / (1 + draws)
    shape = (n_layers, n_heads)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return TauStatistics(
        statistic=statistic,
        tau=observed.view(shape).float(),
        uniform_tau=float(uniform),
        null_mean=null_mean.view(shape).float(),
        null_std=_nanstd(null_t, null_mean).view(shape).float(),
        null_p=torch.where(undefined, nan, p).view(shape).float(),
        family_p=torch.where(undefined, nan, family).view(shape).float(),
        draws=draws,
        null=null,
    )


@dataclass(frozen=True)
class RareTokenAttention:
    """Attention of every head from the query position to each prefix key, with the keys' rarity ranks.

    `key_attention[i, l, h, k]` = attention of head (l, h) from the query position to prefix key k
    of paragraph i; `key_ranks[i, k]` the key's frequency rank in that paragraph (0 = rarest).
    `sum` and `mean` are the two tau statistics with their nulls, computed on first use (`null_draws`
    draws of the `null`, seeded); `select` gives the same analysis on a subset of the paragraphs and
    `with_null` under another null.
    """

    ids: tuple[str, ...]
    query: str
    query_pos: int
    key_attention: Float[Tensor, "n layer head key"]
    key_ranks: Int[Tensor, "n key"]
    null_draws: int = NULL_DRAWS
    seed: int = 0
    null: str = DEFAULT_NULL

    def __post_init__(self) -> None:
        _check_null(self.null, self.null_draws)

    def _tau(self, statistic: str) -> TauStatistics:
        """`tau_statistics` of this attention with `statistic` ("sum" or "mean"), under this result's null."""
        return tau_statistics(
            self.key_attention,
            self.key_ranks,
            statistic=statistic,
            draws=self.null_draws,
            seed=self.seed,
            null=self.null,
        )

    @cached_property
    def sum(self) -> TauStatistics:
        """Tau of the summed attention per rank (the paper's statistic), with its nulls."""
        return self._tau("sum")

    @cached_property
    def mean(self) -> TauStatistics:
        """Tau of the mean attention per rank over the paragraphs that have the rank, with its nulls."""
        return self._tau("mean")

    @property
    def query_text(self) -> str:
        """Where the attention is read, in words that match `query_pos`."""
        if self.query == "first_continuation":
            return (
                f"the first continuation position (index {self.query_pos}, which holds the first continuation token "
                "and predicts the second)"
            )
        return f"the last prefix position (index {self.query_pos}, which predicts the first continuation token)"

    def with_null(self, null: str) -> RareTokenAttention:
        """The same attention and ranks under another null (statistics recomputed on first use)."""
        return replace(self, null=null)

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
            self.null,
        )

    def to_json(self) -> dict:
        present = self.has_rank.any(0)
        return {
            "query": self.query,
            "query_pos": self.query_pos,
            "null": self.null,
            "n_paragraphs": len(self.ids),
            "tau": self.tau,
            "tau_mean": self.tau_mean,
            "excess": self.excess,
            "sum": self.sum.to_json(),
            "mean": self.mean.to_json(),
            "attention_by_rank": self.attention_by_rank[..., present],
            "paragraphs_with_rank": self.has_rank.sum(0)[present],
        }


@dataclass(frozen=True)
class SpecificHead:
    """The head whose rare-token preference is most specific to MEM, chosen on one half, tested on the other.

    Chosen as the most negative (MEM excess - NMEM excess) of the summed tau on the choice half
    (`chosen_difference`, biased by the choice and shown only for contrast); measured on the disjoint
    test half as `mem_excess`, `nmem_excess` and `difference` = mem - nmem, each excess against the
    same null within its group (`inner_draws` draws, ranks present in the pooled test half). `p`:
    one-sided label-permutation p-value, (1 + #{shuffled difference <= difference}) / (1 + draws),
    with the MEM / NMEM labels of the test half shuffled at fixed group sizes; NaN if undefined.
    """

    layer: int
    head: int
    choice_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    n_test_mem: int
    n_test_nmem: int
    chosen_difference: float
    mem_excess: float
    nmem_excess: float
    difference: float
    p: float
    draws: int
    inner_draws: int
    null: str

    def to_json(self) -> dict:
        return {
            "layer": self.layer,
            "head": self.head,
            "choice_ids": list(self.choice_ids),
            "test_ids": list(self.test_ids),
            "n_test_mem": self.n_test_mem,
            "n_test_nmem": self.n_test_nmem,
            "chosen_difference": self.chosen_difference,
            "mem_excess": self.mem_excess,
            "nmem_excess": self.nmem_excess,
            "difference": self.difference,
            "p": self.p,
            "test": "MEM / NMEM labels shuffled on the held-out half, one-sided (MEM prefers rare tokens more)",
            "draws": self.draws,
            "inner_draws": self.inner_draws,
            "null": self.null,
        }

    @classmethod
    def from_json(cls, data: dict) -> SpecificHead:
        """The head `to_json` wrote (an undefined p or excess, written as null, back as NaN)."""
        return cls(
            data["layer"],
            data["head"],
            tuple(data["choice_ids"]),
            tuple(data["test_ids"]),
            data["n_test_mem"],
            data["n_test_nmem"],
            *(float_from_json(data[k]) for k in ("chosen_difference", "mem_excess", "nmem_excess", "difference", "p")),
            data["draws"],
            data["inner_draws"],
            data["null"],
        )


def _group_excess(
    attention: Float[Tensor, "n key"],
    ranks: Int[Tensor, "n key"],
    labels: Int[Tensor, "rows n"],
    *,
    inner_draws: int,
    null: str,
    generator: torch.Generator,
    budget: int = 4_000_000,
) -> Float[Tensor, "rows 2"]:
    """One head's summed-tau excess in each label group (0, 1) of every row of `labels`.

    Curves run over the ranks present in the pooled paragraphs (a rank a group lacks sums to 0); each
    group's null pairs / shuffles only within the group (`inner_draws` draws). Under the pairing null
    every draw is a sum of rows of `paired[i, j]` = paragraph i's attention per rank of paragraph j.
    """
    n, keys = ranks.shape
    n_ranks = int(ranks.max()) + 1
    present = torch.zeros(n_ranks, dtype=torch.bool)
    present[ranks.unique()] = True
    att = attention.double()
    paired = torch.zeros(n, n, n_ranks, dtype=torch.float64)  # [i, j, rank]
    paired.scatter_add_(2, ranks[None].expand(n, n, keys), att[:, None].expand(n, n, keys))
    paired = paired[..., present]

    def taus(curves: Tensor) -> Tensor:
        return kendall_tau_b((curves * 1e10).round())

    def curves_of(assigned: Tensor, label: Tensor) -> Tensor:  # [m, n, key] ranks, [m, n] labels -> [m, 2, rank]
        m = assigned.shape[0]
        group = (torch.arange(m)[:, None] * 2 + label)[:, :, None] * n_ranks  # [m, n, 1]
        index = (group + assigned).flatten()
        flat = torch.zeros(m * 2 * n_ranks, dtype=torch.float64).index_add_(0, index, att.flatten().repeat(m))
        return flat.view(m, 2, n_ranks)[..., present]

    def paired_curves(partner: Tensor, label: Tensor) -> Tensor:  # [m, n] partners and labels -> [m, 2, rank]
        onehot = torch.nn.functional.one_hot(label, 2).double().transpose(1, 2)  # [m, 2, n]
        return torch.bmm(onehot, paired[torch.arange(n), partner])

    out = []
    step = max(1, budget // max(1, inner_draws * n * max(keys, int(present.sum()))))
    for start in range(0, labels.shape[0], step):
        lab = labels[start : start + step]
        rows = lab.shape[0]
        inner = lab.repeat_interleave(inner_draws, 0)  # [rows * inner, n]
        if null == "pair_paragraphs":
            observed = taus(paired_curves(torch.arange(n).expand(rows, n), lab))  # [rows, 2]
            partner = null_ranks(torch.arange(n)[:, None], rows * inner_draws, generator, null, inner)[..., 0]
            nulls = taus(paired_curves(partner, inner))
        else:
            observed = taus(curves_of(ranks.expand(rows, n, keys), lab))
            nulls = taus(curves_of(null_ranks(ranks, rows * inner_draws, generator, null, inner), inner))
        out.append(observed - nulls.view(rows, inner_draws, 2).nanmean(1))
    return torch.cat(out)


def mem_specific_head(
    mem: RareTokenAttention,
    nmem: RareTokenAttention,
    *,
    draws: int = 200,
    inner_draws: int = 50,
    seed: int = 0,
) -> SpecificHead:
    """The most MEM-specific rare-token head, chosen on a random half of the paragraphs and tested on the rest.

    Choosing and reporting on the same paragraphs would make the difference large by selection alone;
    here the choice half picks (layer, head) by MEM excess - NMEM excess (summed tau, `inner_draws` null
    draws), and the test half measures it with a label-permutation p (`draws` shuffles). Both use
    `mem.null`. Needs at least 2 MEM and 2 NMEM paragraphs per half.
    """
    if len(mem.ids) < 4 or len(nmem.ids) < 4:
        raise UserError(
            f"the held-out MEM-specific head needs at least 4 MEM and 4 NMEM paragraphs (2 per half), got "
            f"{len(mem.ids)} and {len(nmem.ids)}: raise --n-mem / --n-nmem or give more paragraphs"
        )
    _check_null(mem.null, draws)
    _check_null(mem.null, inner_draws)
    generator = torch.Generator().manual_seed(seed)
    order_m = torch.randperm(len(mem.ids), generator=generator)
    order_n = torch.randperm(len(nmem.ids), generator=generator)
    half_m, half_n = len(mem.ids) // 2, len(nmem.ids) // 2
    choose_m, test_m = order_m[:half_m].sort().values, order_m[half_m:].sort().values
    choose_n, test_n = order_n[:half_n].sort().values, order_n[half_n:].sort().values
    pick_m = replace(mem.select(choose_m), null_draws=inner_draws, seed=seed)
    pick_n = replace(nmem.select(choose_n), null_draws=inner_draws, seed=seed)
    chosen = pick_m.excess - pick_n.excess
    layer, head = divmod(int(chosen.nan_to_num(float("inf")).flatten().argmin()), chosen.shape[1])
    attention = torch.cat([mem.key_attention[test_m, layer, head], nmem.key_attention[test_n, layer, head]])
    ranks = torch.cat([mem.key_ranks[test_m], nmem.key_ranks[test_n]])
    truth = torch.cat([torch.ones(len(test_m), dtype=torch.long), torch.zeros(len(test_n), dtype=torch.long)])
    shuffled = torch.stack([truth[torch.randperm(len(truth), generator=generator)] for _ in range(draws)])
    excess = _group_excess(
        attention,
        ranks,
        torch.cat([truth[None], shuffled]),
        inner_draws=inner_draws,
        null=mem.null,
        generator=generator,
    )
    difference = excess[:, 1] - excess[:, 0]  # MEM - NMEM, [1 + draws]
    observed = float(difference[0])
    p = float("nan") if observed != observed else float((1 + (difference[1:] <= observed + 1e-12).sum()) / (1 + draws))
    return SpecificHead(
        layer=layer,
        head=head,
        choice_ids=tuple(mem.ids[i] for i in choose_m.tolist()) + tuple(nmem.ids[i] for i in choose_n.tolist()),
        test_ids=tuple(mem.ids[i] for i in test_m.tolist()) + tuple(nmem.ids[i] for i in test_n.tolist()),
        n_test_mem=len(test_m),
        n_test_nmem=len(test_n),
        chosen_difference=float(chosen[layer, head]),
        mem_excess=float(excess[0, 1]),
        nmem_excess=float(excess[0, 0]),
        difference=observed,
        p=p,
        draws=draws,
        inner_draws=inner_draws,
        null=mem.null,
    )


@torch.no_grad()
def rare_token_attention(
    model: Model,
    paragraphs: Paragraphs,
    unigram_counts: Int[Tensor, "vocab"],
    *,
    query: str = "first_continuation",
    null_draws: int = NULL_DRAWS,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    null: str = DEFAULT_NULL,
) -> RareTokenAttention:
    """Attention from the query position to every prefix key, per head, with rank taus and their nulls.

    `query="first_continuation"` (the authors' code): position prefix_len over keys 0..prefix_len-1;
    `query="last_prefix"`: position prefix_len - 1 over keys 0..prefix_len-1 (itself included).
    `null`: `"pair_paragraphs"` (keeps position; default) or `"shuffle_positions"` (the old null).
    """
    if query not in QUERIES:
        raise UserError(f"unknown query position {query!r}: use one of {', '.join(QUERIES)}")
    _check_null(null, null_draws)
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
        _, cache = capture(model, tokens, [act_name("pattern", layer) for layer in range(model.cfg.n_layers)])
        pattern = torch.stack([cache["pattern", layer][:, :, query_pos, :p] for layer in range(model.cfg.n_layers)], 1)
        chunks.append(pattern.float().cpu())  # [b, layer, head, key]
    return RareTokenAttention(paragraphs.ids, query, query_pos, torch.cat(chunks), ranks, null_draws, seed, null)
