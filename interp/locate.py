"""Locating the memorization head: several methods' evidence per head, side by side, and one ranking.

Each method gives every head a score where HIGHER means more memorization-specific:
- rare_token: minus the EXCESS Kendall tau of attention vs token-frequency rank on MEM paragraphs
  over its permutation null (paper section 6; the raw tau is biased, see interp.attention);
- gradient: MEM-minus-NMEM gradient concentration in the head's W_Q/W_K/W_V/W_O (the larger of
  the four; `relative_diff_heads` of the gradient map when it has one, else `diff_heads`);
- ablation: MEM NLL increase minus NMEM NLL increase when the head is mean-ablated;
- patching: normalised recovery of the memorized continuation when the head's clean output is
  patched into a run with a corrupted prefix (1 = fully restored).
Heads are ranked per method (1 = best). The final order is the mean rank over the `rank_by`
methods (Borda count; ties go to the larger summed z-score), by default the two CAUSAL ones,
ablation and patching: they intervene on the head and watch the memorized continuation, while
rare-token attention and gradients are correlational signatures. Those stay side by side in the
table with their own ranks, and the pairwise Kendall tau between all methods' score maps says
where the evidence agrees (the paper's own methods disagreed). On a model whose memorization
was forced through one head (tests/test_locate.py) the causal methods rank it first while the
correlational ones need not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from scipy.stats import kendalltau
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.ablation import HeadAblation, head_ablation
from interp.attention import RareTokenAttention, rare_token_attention
from interp.data import Paragraphs, unigram_counts as count_unigrams
from interp.errors import UserError
from interp.metrics import NMEM_MAX_EM, score_paragraphs, split_mem_nmem
from interp.patching import PatchingResult, activation_patching, attribution_patching, patching_agreement
from interp.perturbation import corrupt_prefixes

METHODS = ("rare_token", "gradient", "ablation", "patching")
CAUSAL = ("ablation", "patching")


def describe_combination(rank_by: tuple[str, ...]) -> str:
    return (f"heads ordered by their mean rank over {', '.join(rank_by)} (rank 1 = the method's highest score; "
            "Borda count), ties broken by the larger sum of those methods' z-scores; the other methods are shown "
            "side by side with their own ranks")


def method_ranks(score: Float[Tensor, "layer head"]) -> Int[Tensor, "layer head"]:
    """Rank of each head within one method: 1 = highest score (ties share the better rank order arbitrarily)."""
    order = score.flatten().argsort(descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, len(order) + 1)
    return ranks.view(score.shape)


@dataclass(frozen=True)
class HeadRanking:
    """Heads ordered best first, with every method's score and rank, and the evidence behind them."""

    scores: dict[str, Tensor]  # method -> [layer, head], higher = more memorization-specific
    ranks: dict[str, Tensor]  # method -> [layer, head], 1 = best
    mean_rank: Float[Tensor, "layer head"]
    order: Int[Tensor, "cell 2"]  # (layer, head), best first
    agreement: dict[str, float]  # "a~b" -> Kendall tau between the two methods' score maps
    rank_by: tuple[str, ...]
    mem_ids: tuple[str, ...]
    nmem_ids: tuple[str, ...]
    rare_tokens: RareTokenAttention | None = None  # on MEM paragraphs
    rare_tokens_nmem: RareTokenAttention | None = None
    ablation: HeadAblation | None = None
    patching: PatchingResult | None = None
    attribution: PatchingResult | None = None
    gradients: object | None = None  # interp.gradients.GradientMap
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def top(self) -> tuple[int, int]:
        return int(self.order[0, 0]), int(self.order[0, 1])

    def head_table(self) -> list[dict]:
        """One row per head, best first, in the JSON layout of `to_json()["heads"]`."""
        fields = {"rare_token": "rare_token_tau", "gradient": "gradient_score", "ablation": "ablation_effect",
                  "patching": "patching_effect"}
        rows = []
        for rank, (layer, head) in enumerate(self.order.tolist(), start=1):
            row: dict = {"layer": layer, "head": head}
            for method, name in fields.items():
                if method not in self.scores:
                    row[name] = None
                elif method == "rare_token":
                    row[name] = float(self.rare_tokens.tau[layer, head])
                else:
                    row[name] = float(self.scores[method][layer, head])
            if self.rare_tokens is not None:
                row["rare_token_tau_mean"] = float(self.rare_tokens.tau_mean[layer, head])
                row["rare_token_excess"] = float(self.rare_tokens.excess[layer, head])
                row["rare_token_p"] = float(self.rare_tokens.sum.null_p[layer, head])
            row["method_ranks"] = {m: int(r[layer, head]) for m, r in self.ranks.items()}
            row["mean_rank"] = float(self.mean_rank[layer, head])
            row["rank"] = rank
            rows.append(row)
        return rows

    def to_json(self) -> dict:
        out = {
            "heads": self.head_table(),
            "top": {"layer": self.top[0], "head": self.top[1]},
            "methods": list(self.scores),
            "rank_by": list(self.rank_by),
            "combination": describe_combination(self.rank_by),
            "agreement_kendall_tau": self.agreement,
            "n_mem": len(self.mem_ids), "n_nmem": len(self.nmem_ids),
            "mem_ids": self.mem_ids, "nmem_ids": self.nmem_ids,
            "notes": list(self.notes),
        }
        if self.rare_tokens is not None:
            out["rare_tokens"] = {"mem": self.rare_tokens.to_json(), "nmem": self.rare_tokens_nmem.to_json()}
        if self.ablation is not None:
            out["ablation"] = self.ablation.to_json()
        if self.patching is not None:
            out["patching"] = self.patching.to_json()
        if self.attribution is not None:
            out["attribution"] = self.attribution.to_json()
            if self.patching is not None:
                out["attribution_vs_exact"] = patching_agreement(self.patching, self.attribution)
        if self.gradients is not None:
            out["gradients_most_salient"] = self.gradients.most_salient() if hasattr(self.gradients, "most_salient") else None
        return out


def combine(
    scores: dict[str, Tensor], rank_by: tuple[str, ...]
) -> tuple[dict[str, Tensor], Tensor, Tensor, dict[str, float]]:
    """Per-method ranks, mean rank over `rank_by`, the best-first order, pairwise Kendall tau between methods."""
    ranks = {m: method_ranks(s) for m, s in scores.items()}
    mean_rank = torch.stack([ranks[m].float() for m in rank_by]).mean(0)
    z = torch.stack([(scores[m] - scores[m].mean()) / (scores[m].std() + 1e-12) for m in rank_by]).sum(0)
    n_heads = mean_rank.shape[1]
    # Sort by mean rank, then by summed z-score (descending): lexicographic via two stable sorts.
    flat = z.flatten().argsort(descending=True, stable=True)
    flat = flat[mean_rank.flatten()[flat].argsort(stable=True)]
    order = torch.stack([flat // n_heads, flat % n_heads], 1)
    names = list(scores)
    agreement = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            agreement[f"{a}~{b}"] = float(kendalltau(scores[a].flatten().numpy(), scores[b].flatten().numpy()).statistic)
    return ranks, mean_rank, order, agreement


def locate_memorization_head(
    model: HookedTransformer,
    paragraphs: Paragraphs,
    unigram_counts: Int[Tensor, "vocab"] | None = None,
    methods: tuple[str, ...] = METHODS,
    rank_by: tuple[str, ...] | None = None,
    max_paragraphs: int = 16,
    mem_min: int | None = None,
    nmem_max: int = NMEM_MAX_EM,
    corrupt_fraction: float = 0.5,
    attribution: bool = True,
    seed: int = 0,
    batch_size: int = 64,
) -> HeadRanking:
    """Rank every head by how specifically it carries memorized paragraphs, with several methods.

    `rank_by` (default: the causal methods among `methods`, else all of them) orders the table.

    MEM / NMEM come from one teacher-forced pass (EM >= mem_min, default the full continuation;
    EM <= nmem_max); at most `max_paragraphs` of each (a seeded sample) feed the costly methods,
    while rare-token attention uses up to 16x as many. Without `unigram_counts`, token frequencies
    are counted over the paragraph set itself (a weaker proxy for corpus frequency; noted).
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method {bad[0] if bad else None!r}: use any of {', '.join(METHODS)}")
    if rank_by is None:
        rank_by = tuple(m for m in CAUSAL if m in methods) or tuple(methods)
    if not rank_by or any(m not in methods for m in rank_by):
        raise UserError(f"rank_by {rank_by} must be among the methods run: {', '.join(methods)}")
    if max_paragraphs < 1:
        raise UserError("max_paragraphs must be at least 1")
    notes: list[str] = []
    scores_all = score_paragraphs(model, paragraphs, batch_size=batch_size)
    mem_idx, nmem_idx = split_mem_nmem(scores_all.em, paragraphs.continuation_len, mem_min=mem_min, nmem_max=nmem_max)
    if len(mem_idx) == 0:
        raise UserError("no memorized paragraph (MEM) in the set: the locator needs some; lower mem_min or use other paragraphs")
    if len(nmem_idx) == 0:
        raise UserError(f"no non-memorized paragraph (NMEM, EM <= {nmem_max}) in the set: the locator needs some to contrast")
    g = torch.Generator().manual_seed(seed)
    mem_idx = mem_idx[torch.randperm(len(mem_idx), generator=g)]
    nmem_idx = nmem_idx[torch.randperm(len(nmem_idx), generator=g)]
    mem, nmem = paragraphs.select(mem_idx[:max_paragraphs]), paragraphs.select(nmem_idx[:max_paragraphs])

    scores: dict[str, Tensor] = {}
    rare = rare_nmem = ablation = patch = attrib = grads = None
    if "rare_token" in methods:
        if unigram_counts is None:
            unigram_counts = count_unigrams(paragraphs.tokens, model.cfg.d_vocab)
            notes.append("rare_token: no corpus unigram counts given; frequencies counted over the paragraph set")
        wide = 16 * max_paragraphs
        rare = rare_token_attention(model, paragraphs.select(torch.cat([mem_idx[:wide], nmem_idx[:wide]])),
                                    unigram_counts, batch_size=batch_size)
        n_wide_mem = min(len(mem_idx), wide)
        rare, rare_nmem = rare.select(torch.arange(n_wide_mem)), rare.select(torch.arange(n_wide_mem, len(rare.ids)))
        scores["rare_token"] = -rare.excess.nan_to_num(0.0)
    if "gradient" in methods:
        from interp.gradients import gradient_map

        grads = gradient_map(model, mem, nmem, batch_size=min(batch_size, 16))
        per_head = grads.relative_diff_heads if hasattr(grads, "relative_diff_heads") else grads.diff_heads
        scores["gradient"] = per_head.max(-1).values.float()
    if "ablation" in methods:
        unused = torch.cat([nmem_idx[max_paragraphs:], mem_idx[max_paragraphs:]])[:max(max_paragraphs, 8)]
        if len(unused) == 0:
            raise UserError("mean ablation takes its mean over paragraphs that are not scored, and every paragraph is "
                            f"scored here: pass more paragraphs or lower max_paragraphs (now {max_paragraphs})")
        ablation = head_ablation(model, mem, nmem, reference=paragraphs.select(unused), modes=("mean",), batch_size=batch_size)
        scores["ablation"] = ablation.effect("mean")
    if "patching" in methods:
        corrupted = corrupt_prefixes(mem, corrupt_fraction, model.cfg.d_vocab, seed=seed)
        patch = activation_patching(model, mem, corrupted, kinds=("head_out",), batch_size=batch_size)["head_out"]
        if abs(patch.clean_metric - patch.corrupted_metric) < 1e-3:
            notes.append("patching: corrupting the prefix barely changed the continuation's log-prob; its effects are noise")
        scores["patching"] = patch.effect.nan_to_num(0.0)
        if attribution:
            attrib = attribution_patching(model, mem, corrupted, kinds=("head_out",))["head_out"]
    ranks, mean_rank, order, agreement = combine(scores, rank_by)
    return HeadRanking(scores, ranks, mean_rank, order, agreement, rank_by, mem.ids, nmem.ids, rare, rare_nmem, ablation,
                       patch, attrib, grads, tuple(notes))
