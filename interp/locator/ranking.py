"""Locating memorization: every method's evidence per unit (head or MLP neuron), side by side, and one ranking.

Every method returns `UnitScores` (interp.locator.units): a score per unit, HIGHER = more evidence
that the unit holds the memorized paragraphs, its rank, and its compute time. Head methods:
- rare_token: minus the EXCESS Kendall tau of attention vs token-frequency rank on MEM paragraphs
  over its permutation null (paper section 6; see interp.locator.rare_tokens);
- gradient: the paper's gradient map, MEM-minus-NMEM concentration of max |grad| in the head's
  W_Q/W_K/W_V/W_O (`relative_diff_heads`, the larger of the four);
- gradient_l2, grad_x_weight, fisher, perturbed_gradient: gradient variants (interp.locator.gradient_scores);
- attribution: attribution patching (one forward and one backward): the linear estimate of how much
  of a memorized continuation's log-prob the head's clean output restores into a run whose prefix
  was corrupted. It is also the SCREEN: the exact methods below run only on its top `candidates`
  heads (default 8; `exact_all=True` runs them on every head), unscreened heads score NaN;
- patching: exact activation patching of the same (1 = fully restored);
- ablation: MEM NLL increase minus NMEM NLL increase when the head is mean-ablated (the mean over a
  `reference` set that is never scored); zero_out: the same with the head zeroed (MemPi's Zero-Out);
- integrated_gradients: IG attribution of the head's output to the MEM continuation minus NMEM's;
- hard_concrete, slimming: MemPi's learned masks that KEEP the MEM continuations (interp.locator.mask_learning).
Neuron methods (`locate_neurons`): activation (MemPi's baseline: mean activation x ||W_out row||),
the gradient variants, zero_out / ablation, integrated_gradients, hard_concrete, slimming.

The final order is the mean rank over the `rank_by` methods (Borda count; ties go to the larger
summed z-score). Which methods those are is not a fixed preference: given a `validation`
(interp.locator.validation, the injection benchmark run on this model) the locator combines the
methods that found the injected heads there; without one it combines DEFAULT_RANK_BY, the methods
that ranked every injected head first on the shipped testbed (numbers in docs/locator_trust.md). The ranking
says which methods it combined and why. The pairwise Kendall tau between all methods' scores
(over the units both scored) says where the evidence agrees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from scipy.stats import kendalltau, spearmanr
from torch import Tensor
from tqdm.auto import tqdm

from interp.backend import Model, act_name, capture, weight
from interp.constants import GRAD_BATCH_SIZE
from interp.data import BATCH_SIZE, Paragraphs
from interp.data import unigram_counts as count_unigrams
from interp.display import Displayed
from interp.errors import UserError
from interp.io import float_from_json
from interp.locator import registry
from interp.locator.options import (  # noqa: F401 (the method tuples: public names kept here)
    DEFAULT_METHODS,
    DEFAULT_NEURON_METHODS,
    DEFAULT_NEURON_RANK_BY,
    DEFAULT_RANK_BY,
    HEAD_METHODS,
    LOCATE,
    METHODS,
    NEURON_METHODS,
    SCREENED,
    UNIT_METHODS,
    LocateOptions,
    keywords_from,
    renamed_keyword,
)
from interp.locator.patching import PatchingResult, attribution_patching, patch_variants, resid_pre_all_layers
from interp.locator.rare_tokens import RareTokenAttention, rare_token_attention
from interp.locator.units import MethodCall, Stopwatch, UnitScores, frozen_weights, rank_units, unit_count, unit_hook
from interp.memorization import mem_nmem_thresholds, split_mem_nmem
from interp.metrics import continuation_log_probs, score_paragraphs
from interp.perturbation import corrupt_prefixes

DEFAULT_REASON = (
    "default: the causal methods (exact patching and mean ablation) ranked every injected head first "
    "on the shipped testbed (docs/locator_trust.md); run validate-locator on this "
    "model and pass its result to combine what passed here"
)


def describe_combination(rank_by: tuple[str, ...]) -> str:
    return (
        f"units ordered by their mean rank over {', '.join(rank_by)} (rank 1 = the method's highest score; Borda "
        "count over the units every one of those methods scored, each method's rank taken among them), ties broken "
        "by the larger sum of those methods' z-scores; units some of them did not score (outside the attribution "
        "screen) get no combined rank and follow, in the screen's order; the other methods are shown side by side "
        "with their own ranks"
    )


def method_ranks(score: Float[Tensor, "layer index"]) -> Float[Tensor, "layer index"]:
    """Rank of each unit within one method: 1 = highest score; NaN where the method did not score it."""
    return rank_units(score)


def _z(score: Tensor) -> Tensor:
    scored = score[~score.isnan()]
    spread = scored.std() if scored.numel() > 1 else torch.tensor(0.0)
    z = (score - scored.mean()) / (spread + 1e-12)
    return z.nan_to_num(nan=-1e6)


def agreement_between(scores: dict[str, Tensor]) -> dict[str, float]:
    """Kendall tau between every two methods' scores, over the units both scored (NaN under 3 such units)."""
    names = list(scores)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = scores[a].flatten(), scores[b].flatten()
            both = ~(x.isnan() | y.isnan())
            out[f"{a}~{b}"] = (
                float(kendalltau(x[both].numpy(), y[both].numpy()).statistic) if int(both.sum()) >= 3 else float("nan")
            )
    return out


def combine(
    scores: dict[str, Tensor], rank_by: tuple[str, ...], screen: Float[Tensor, "layer index"] | None = None
) -> tuple[dict[str, Tensor], Tensor, Tensor, dict[str, float]]:
    """Per-method ranks, mean rank over `rank_by`, the best-first order, pairwise Kendall tau between methods.

    The mean rank is taken only over the units EVERY `rank_by` method scored, each method's rank re-taken
    among those units (so a method that scored 8 heads and one that scored all 96 are averaged on the same
    scale); it is NaN elsewhere. Those unranked units follow the ranked ones, ordered by `screen` (the
    score that chose which units the screened methods ran on; by position without one)."""
    ranks = {m: method_ranks(s) for m, s in scores.items()}
    common = torch.stack([~scores[m].isnan() for m in rank_by]).all(0)
    hidden = {m: scores[m].float().masked_fill(~common, float("nan")) for m in rank_by}
    mean_rank = torch.stack([rank_units(hidden[m]) for m in rank_by]).mean(0)
    z = torch.stack([_z(hidden[m]) for m in rank_by]).sum(0)
    n_index = mean_rank.shape[1]
    # Ranked units by mean rank, then by summed z-score (descending): lexicographic via two stable sorts.
    ranked = common.flatten().nonzero().flatten()
    ranked = ranked[z.flatten()[ranked].argsort(descending=True, stable=True)]
    ranked = ranked[mean_rank.flatten()[ranked].argsort(stable=True)]
    rest = (~common).flatten().nonzero().flatten()
    if screen is not None:
        rest = rest[screen.flatten()[rest].double().nan_to_num(float("-inf")).argsort(descending=True, stable=True)]
    flat = torch.cat([ranked, rest])
    order = torch.stack([flat // n_index, flat % n_index], 1)
    return ranks, mean_rank, order, agreement_between(scores)


def _resolve_rank_by(
    methods: tuple[str, ...], rank_by: tuple[str, ...] | None, validation, default: tuple[str, ...], unit: str
) -> tuple[tuple[str, ...], str]:
    if rank_by is not None:
        rank_by = tuple(rank_by)
        if not rank_by or any(m not in methods for m in rank_by):
            raise UserError(
                f"rank_by (--rank-by) {rank_by} must be among the methods run (--methods): {', '.join(methods)}"
            )
        return rank_by, "asked for (rank_by)"
    if validation is not None:
        chosen, reason = validation.recommended_rank_by(unit)
        usable = tuple(m for m in chosen if m in methods)
        if usable:
            return usable, f"validation on this model: {reason}"
    usable = tuple(m for m in default if m in methods)
    if usable:
        return usable, DEFAULT_REASON if unit == "head" else (
            "default: Slimming and Zero-Out, the best on the shipped testbed's neuron injection (Recall@0.5% 0.84 "
            "each; docs/locator_trust.md) and among MemPi's best on GPT-2"
        )
    return tuple(methods), "none of the default methods ran, so every method run is combined"


@dataclass(frozen=True)
class HeadRanking(Displayed):
    """Heads ordered best first, every method's UnitScores, and the evidence behind them."""

    _view = "interp.views.heads:figure_method_ranks"

    results: dict[str, UnitScores]
    mean_rank: Float[Tensor, "layer head"]
    order: Int[Tensor, "cell 2"]  # (layer, head), best first
    agreement: dict[str, float]  # "a~b" -> Kendall tau between the two methods' scores
    rank_by: tuple[str, ...]
    combination_reason: str
    mem_ids: tuple[str, ...]
    nmem_ids: tuple[str, ...]
    reference_ids: tuple[str, ...] = ()
    candidates: Int[Tensor, "k 2"] | None = None  # the screened heads the exact methods ran on
    screen: dict = field(default_factory=dict)
    rare_tokens: RareTokenAttention | None = None  # on MEM paragraphs
    rare_tokens_nmem: RareTokenAttention | None = None
    patching: PatchingResult | None = None  # exact, NaN outside the candidates
    attribution: PatchingResult | None = None
    gradients: object | None = None  # interp.gradients.GradientMap
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def scores(self) -> dict[str, Tensor]:
        return {m: r.score for m, r in self.results.items()}

    @property
    def ranks(self) -> dict[str, Tensor]:
        return {m: r.ranks for m, r in self.results.items()}

    @property
    def seconds(self) -> dict[str, float]:
        return {m: r.seconds for m, r in self.results.items()}

    @property
    def top(self) -> tuple[int, int]:
        return int(self.order[0, 0]), int(self.order[0, 1])

    def rank_of(self, layer: int, head: int) -> int | None:
        """The head's place in the combined order (1 = first); None when a combined method did not score it
        (outside the screen): such a head has no combined rank."""
        if bool(self.mean_rank[layer, head].isnan()):
            return None
        hits = ((self.order[:, 0] == layer) & (self.order[:, 1] == head)).nonzero()
        return int(hits[0, 0]) + 1

    def status_of(self, layer: int, head: int) -> str:
        """ "ranked", or why the head has no combined rank ("outside the screen": the exact methods never ran on it)."""
        if not bool(self.mean_rank[layer, head].isnan()):
            return "ranked"
        if self.candidates is not None and not self.screen.get("exact_all", False):
            return "outside the screen"
        missing = [m for m in self.rank_by if bool(self.results[m].score[layer, head].isnan())]
        return f"not scored by {', '.join(missing)}"

    def head_table(self) -> list[dict]:
        """One row per head, best first, in the JSON layout of `to_json()["heads"]`.

        A head a combined method did not score (outside the screen) has `rank` and `mean_rank` None and its
        `status` says why; those rows follow the ranked ones in the screen's own order."""
        legacy = {
            "rare_token": "rare_token_tau",
            "gradient": "gradient_score",
            "ablation": "ablation_effect",
            "patching": "patching_effect",
        }
        rows = []
        ranks = self.ranks
        for rank, (layer, head) in enumerate(self.order.tolist(), start=1):
            row: dict = {"layer": layer, "head": head}
            for method, name in legacy.items():
                if method not in self.results:
                    row[name] = None
                elif method == "rare_token":
                    row[name] = float(self.rare_tokens.tau[layer, head])
                else:
                    value = float(self.results[method].score[layer, head])
                    row[name] = None if value != value else value
            for entry in registry.methods("head"):
                if entry.column is not None:
                    value = float(self.results[entry.name].score[layer, head]) if entry.name in self.results else None
                    row[entry.column] = None if value != value else value
            if self.rare_tokens is not None:
                row["rare_token_tau_mean"] = float(self.rare_tokens.tau_mean[layer, head])
                row["rare_token_excess"] = float(self.rare_tokens.excess[layer, head])
                row["rare_token_p"] = float(self.rare_tokens.sum.null_p[layer, head])
            row["scores"] = {m: float(r.score[layer, head]) for m, r in self.results.items()}
            row["method_ranks"] = {m: None if r[layer, head].isnan() else int(r[layer, head]) for m, r in ranks.items()}
            status = self.status_of(layer, head)
            row["mean_rank"] = float(self.mean_rank[layer, head]) if status == "ranked" else None
            row["rank"] = rank if status == "ranked" else None
            row["status"] = status
            rows.append(row)
        return rows

    def to_json(self) -> dict:
        out = {
            "heads": self.head_table(),
            "top": {"layer": self.top[0], "head": self.top[1]},
            "methods": list(self.results),
            "seconds": self.seconds,
            "rank_by": list(self.rank_by),
            "combination": describe_combination(self.rank_by),
            "combination_reason": self.combination_reason,
            "agreement_kendall_tau": self.agreement,
            "n_mem": len(self.mem_ids),
            "n_nmem": len(self.nmem_ids),
            "n_reference": len(self.reference_ids),
            "mem_ids": self.mem_ids,
            "nmem_ids": self.nmem_ids,
            "candidates": self.candidates,
            "screen": self.screen,
            "method_options": {m: r.options for m, r in self.results.items()},
            "notes": list(self.notes),
        }
        if self.rare_tokens is not None:
            out["rare_tokens"] = {"mem": self.rare_tokens.to_json(), "nmem": self.rare_tokens_nmem.to_json()}
        if self.patching is not None:
            out["patching"] = self.patching.to_json()
        if self.attribution is not None:
            out["attribution"] = self.attribution.to_json()
        if self.gradients is not None:
            out["gradients_most_salient"] = self.gradients.most_salient()
        return out


@dataclass(frozen=True)
class NeuronRanking:
    """MLP neurons ordered best first by the `rank_by` methods, with every method's UnitScores."""

    results: dict[str, UnitScores]
    mean_rank: Float[Tensor, "layer neuron"]
    order: Int[Tensor, "cell 2"]
    agreement: dict[str, float]
    rank_by: tuple[str, ...]
    combination_reason: str
    mem_ids: tuple[str, ...]
    nmem_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def seconds(self) -> dict[str, float]:
        return {m: r.seconds for m, r in self.results.items()}

    def to_json(self, top: int = 50) -> dict:
        return {
            "top_neurons": self.order[:top],
            "methods": {m: r.to_json() for m, r in self.results.items()},
            "rank_by": list(self.rank_by),
            "combination": describe_combination(self.rank_by),
            "combination_reason": self.combination_reason,
            "agreement_kendall_tau": self.agreement,
            "mem_ids": self.mem_ids,
            "nmem_ids": self.nmem_ids,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict, detail: Callable[[dict], Any] | None = None) -> NeuronRanking:
        """The ranking `to_json` wrote. It holds only the top of the order, so the mean rank and the whole order are
        taken again from the methods' scores (`combine`, as `locate_neurons` took them); `detail` reads the mask
        methods' runs (`UnitScores.from_json`)."""
        results = {m: UnitScores.from_json(r, detail) for m, r in data["methods"].items()}
        rank_by = tuple(data["rank_by"])
        _, mean_rank, order, _ = combine({m: r.score for m, r in results.items()}, rank_by)
        return cls(
            results,
            mean_rank,
            order,
            {pair: float_from_json(tau) for pair, tau in data["agreement_kendall_tau"].items()},
            rank_by,
            data["combination_reason"],
            tuple(data["mem_ids"]),
            tuple(data["nmem_ids"]),
            tuple(data["notes"]),
        )


def _check_methods(methods: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    bad = [m for m in methods if m not in allowed]
    if bad or not methods:
        raise UserError(f"unknown method {bad[0] if bad else None!r}: use any of {', '.join(allowed)}")


REFERENCE_SIZE = 8  # paragraphs mean ablation averages a head's output over (never scored)


def _pick_sets(
    model: Model,
    paragraphs: Paragraphs | None,
    mem: Paragraphs | None,
    nmem: Paragraphs | None,
    reference: Paragraphs | None,
    set_size: int,
    mem_min: int | None,
    nmem_max: int | None,
    seed: int,
    batch_size: int,
    need_reference: bool = True,
) -> tuple[Paragraphs, Paragraphs, Paragraphs | None, Paragraphs, Paragraphs, list[str]]:
    """MEM and NMEM for the costly methods (at most set_size each), the reference set, the wide MEM /
    NMEM sets (up to 16x as many) rare-token attention reads, and notes on sets that came out small.

    Without a given `reference` (and with mean ablation to run, `need_reference`), the reference set comes
    from paragraphs no method scores: first those left over after the scored sets are drawn, then, when
    fewer than REFERENCE_SIZE are left, from the NMEM pool BEFORE the scored NMEM set is drawn, so that
    NMEM keeps at least half of its pool (a small set shrinks both and says so, instead of failing)."""
    if set_size < 1:
        raise UserError("set_size (--set-size) must be at least 1")
    if mem is not None or nmem is not None:
        if mem is None or nmem is None or len(mem) == 0 or len(nmem) == 0:
            raise UserError("explicit sets need both mem= and nmem=, each with at least one paragraph")
        if (mem.prefix_len, mem.seq_len) != (nmem.prefix_len, nmem.seq_len):
            raise UserError("MEM and NMEM paragraphs must have the same prefix and continuation lengths")
        wide = 16 * set_size
        return (
            mem.select(range(min(len(mem), set_size))),
            nmem.select(range(min(len(nmem), set_size))),
            reference,
            mem.select(range(min(len(mem), wide))),
            nmem.select(range(min(len(nmem), wide))),
            [],
        )
    if paragraphs is None:
        raise UserError("give a paragraph set to split into MEM and NMEM, or explicit mem= and nmem= sets")
    em = score_paragraphs(model, paragraphs, batch_size=batch_size).em
    mem_idx, nmem_idx = split_mem_nmem(em, paragraphs.continuation_len, mem_min=mem_min, nmem_max=nmem_max)
    if len(mem_idx) == 0:
        raise UserError(
            "no memorized paragraph (MEM) in the set: the locator needs some; lower mem_min or pass other "
            "paragraphs (--paragraphs)"
        )
    if len(nmem_idx) == 0:
        raise UserError(
            f"no non-memorized paragraph (NMEM, EM <= "
            f"{mem_nmem_thresholds(paragraphs.continuation_len, nmem_max=nmem_max)[1]}) in the set: the locator needs "
            "some to contrast; "
            "raise --nmem-max or pass other paragraphs (--paragraphs)"
        )
    g = torch.Generator().manual_seed(seed)
    mem_idx = mem_idx[torch.randperm(len(mem_idx), generator=g)]
    nmem_idx = nmem_idx[torch.randperm(len(nmem_idx), generator=g)]
    notes = []
    wide_nmem_idx = nmem_idx
    if reference is None and need_reference:
        spare = torch.cat([nmem_idx[set_size:], mem_idx[set_size:]])
        if len(spare) >= REFERENCE_SIZE:
            reference = paragraphs.select(spare[: max(set_size, REFERENCE_SIZE)])
        else:  # carve the rest of the reference out of the scored NMEM set, which keeps at least half
            scored = nmem_idx[:set_size]
            carve = min(REFERENCE_SIZE - len(spare), len(scored) // 2)
            chosen = torch.cat([scored[len(scored) - carve :], spare])
            nmem_idx = scored[: len(scored) - carve]
            reference = paragraphs.select(chosen) if len(chosen) else None
    n_mem, n_nmem = min(len(mem_idx), set_size), min(len(nmem_idx), set_size)
    n_ref = len(reference) if reference is not None else 0
    if need_reference and (n_mem < set_size or n_nmem < set_size or n_ref < REFERENCE_SIZE):
        notes.append(
            f"small paragraph set ({len(paragraphs)}): {n_mem} MEM and {n_nmem} NMEM paragraphs scored, {n_ref} "
            f"more (never scored) as mean ablation's reference, where --set-size asks {set_size} each and "
            f"the reference wants {REFERENCE_SIZE}; every estimate is noisier. Pass more paragraphs (--paragraphs) "
            "or a reference file (--reference FILE)"
        )
    wide = 16 * set_size
    return (
        paragraphs.select(mem_idx[:set_size]),
        paragraphs.select(nmem_idx[:set_size]),
        reference,
        paragraphs.select(mem_idx[:wide]),
        paragraphs.select(wide_nmem_idx[:wide]),
        notes,
    )


def _exact_patching(
    model: Model,
    clean: Paragraphs,
    corrupted: Int[Tensor, "n seq"],
    cells: Int[Tensor, "k 2"],
    batch_size: int,
) -> PatchingResult:
    """Exact denoising activation patching of the given heads only (the rest NaN), the engine of
    interp.locator.patching with the same normalisation (1 = clean metric, 0 = corrupted)."""
    p, n_layers = clean.prefix_len, model.cfg.n_layers
    clean_tokens, corrupted = clean.tokens.to(model.cfg.device), corrupted.to(model.cfg.device)
    names = {act_name("z", layer) for layer in range(n_layers)}
    with torch.no_grad():
        run_logits, resid = resid_pre_all_layers(model, corrupted)
        clean_logits, cache = capture(model, clean_tokens, names)
    clean_m = continuation_log_probs(clean_logits.float(), clean_tokens, p).mean(1).cpu().mean()
    corrupt_m = continuation_log_probs(run_logits.float(), corrupted, p).mean(1).cpu().mean()
    source = [cache["z", layer] for layer in range(n_layers)]
    logp, _ = patch_variants(model, corrupted, p, "head_out", cells, source, resid, batch_size)
    per_paragraph = logp.mean(-1).float()  # [cell, n]
    effect = torch.full((n_layers, model.cfg.n_heads), float("nan"))
    effect[cells[:, 0], cells[:, 1]] = ((per_paragraph.mean(1) - corrupt_m) / (clean_m - corrupt_m)).float()
    full = torch.full((n_layers, model.cfg.n_heads, len(clean)), float("nan"))
    full[cells[:, 0], cells[:, 1]] = per_paragraph
    return PatchingResult("head_out", "denoise", "exact", effect, float(clean_m), float(corrupt_m), full)


@torch.no_grad()
def neuron_activations(model: Model, mem: Paragraphs, *, batch_size: int = BATCH_SIZE) -> UnitScores:
    """MemPi's Activations baseline: |mean activation over the positions that predict the continuation| x ||W_out row||."""
    clock = Stopwatch()
    n_layers, p = model.cfg.n_layers, mem.prefix_len
    names = {unit_hook("neuron", layer) for layer in range(n_layers)}
    sums = torch.zeros(n_layers, unit_count(model, "neuron"), dtype=torch.float64)
    for start in range(0, len(mem), batch_size):
        tokens = mem.tokens[start : start + batch_size].to(model.cfg.device)
        _, cache = capture(model, tokens, names)
        for layer in range(n_layers):
            sums[layer] += cache[unit_hook("neuron", layer)][:, p - 1 : -1].double().mean(1).sum(0).cpu()
    norms = torch.stack(
        [weight(model, layer, "W_out").detach().norm(dim=1).double().cpu() for layer in range(n_layers)]
    )
    score = ((sums / len(mem)).abs() * norms).float()
    return UnitScores("activation", "neuron", score, clock.seconds, {"positions": "continuation-predicting"})


def run_activation(call: MethodCall) -> UnitScores:
    """The registry's runner of MemPi's Activations baseline (neurons only)."""
    return neuron_activations(call.model, call.mem, batch_size=call.batch_size)


def unit_method(
    model: Model,
    method: str,
    mem: Paragraphs,
    nmem: Paragraphs | None,
    *,
    unit: str,
    reference: Paragraphs | None = None,
    units: Int[Tensor, "k 2"] | None = None,
    options: dict | None = None,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
) -> UnitScores:
    """One registered method with a runner (interp.locator.registry) on `unit`, with its options."""
    entry = registry.METHODS.get(method)
    if entry is None or entry.run is None or unit not in entry.units:
        raise UserError(f"method {method!r} has no {unit}-level form")
    call = MethodCall(model, method, mem, nmem, unit, reference, units, dict(options or {}), batch_size, seed)
    return entry.runner()(call)


def locate_memorization_head(
    model: Model,
    paragraphs: Paragraphs | None = None,
    *,
    options: LocateOptions | None = None,
    mem: Paragraphs | None = None,
    nmem: Paragraphs | None = None,
    reference: Paragraphs | None = None,
    unigram_counts: Int[Tensor, "vocab"] | None = None,
    methods: tuple[str, ...] = LOCATE.methods,
    rank_by: tuple[str, ...] | None = LOCATE.rank_by,
    validation=None,
    candidates: int = LOCATE.candidates,
    exact_all: bool = LOCATE.exact_all,
    set_size: int = LOCATE.set_size,
    mem_min: int | None = None,
    nmem_max: int | None = LOCATE.nmem_max,
    corrupt_fraction: float = LOCATE.corrupt_fraction,
    method_options: dict[str, dict] | None = None,
    seed: int = LOCATE.seed,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    max_paragraphs: int | None = None,
) -> HeadRanking:
    """Rank every head by how specifically it carries memorized paragraphs, with several methods.

    MEM / NMEM: explicit `mem=` / `nmem=` sets, or split from `paragraphs` by one teacher-forced
    pass (EM >= mem_min, default the full continuation; EM <= nmem_max); at most `set_size`
    of each (a seeded sample) feed the costly methods, while rare-token attention reads up to 16x
    as many. Mean ablation takes its mean over `reference` (default: paragraphs of the set that
    are not scored). `candidates` heads pass the attribution screen to the exact methods
    (patching, ablation, zero_out), all of them with `exact_all`. `method_options` maps a method
    to its keyword options (e.g. {"hard_concrete": {"target_density": 0.2}}). `rank_by` (default:
    from `validation` when given, else DEFAULT_RANK_BY) orders the table. Without
    `unigram_counts`, token frequencies are counted over the paragraphs given (noted).

    `options` (interp locate-head's `LocateOptions`) gives the settings whole: its fields replace the keyword
    arguments of the same name (`rare_token_null`: the rare-token method's null), which are kept for one release.
    `max_paragraphs` is `set_size`'s name until this release (a DeprecationWarning).
    """
    set_size = renamed_keyword(
        "locate_memorization_head", "max_paragraphs", max_paragraphs, "set_size", set_size, LOCATE.set_size
    )
    o = keywords_from(options, LOCATE, locals())
    methods, rank_by, candidates, exact_all = o["methods"], o["rank_by"], o["candidates"], o["exact_all"]
    set_size, nmem_max, corrupt_fraction = o["set_size"], o["nmem_max"], o["corrupt_fraction"]
    seed = o["seed"]
    rare_token_null = (options or LOCATE).rare_token_null
    methods = tuple(dict.fromkeys(methods))
    _check_methods(methods, registry.names("head"))
    rank_by, reason = _resolve_rank_by(methods, rank_by, validation, DEFAULT_RANK_BY, "head")
    if candidates < 1:
        raise UserError("candidates (--candidates) must be at least 1")
    per_method = method_options or {}
    mem, nmem, reference, wide_mem, wide_nmem, notes = _pick_sets(
        model,
        paragraphs,
        mem,
        nmem,
        reference,
        set_size,
        mem_min,
        nmem_max,
        seed,
        batch_size,
        need_reference="ablation" in methods,
    )
    results: dict[str, UnitScores] = {}
    rare = rare_nmem = patch = attrib = grads = None
    cells = None
    screen: dict = {}
    bar = tqdm(total=len(methods), desc="locating the head", unit="method", leave=False, disable=not progress)

    def done(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(len(results) - bar.n)

    if "rare_token" in methods:
        clock = Stopwatch()
        if unigram_counts is None:
            source = paragraphs.tokens if paragraphs is not None else torch.cat([wide_mem.tokens, wide_nmem.tokens])
            unigram_counts = count_unigrams(source, model.cfg.d_vocab)
            notes.append("rare_token: no corpus unigram counts given; frequencies counted over the paragraphs given")
        both = Paragraphs(torch.cat([wide_mem.tokens, wide_nmem.tokens]), mem.prefix_len, wide_mem.ids + wide_nmem.ids)
        null = per_method.get("rare_token", {}).get("null", rare_token_null)
        rare = rare_token_attention(model, both, unigram_counts, seed=seed, batch_size=batch_size, null=null)
        rare, rare_nmem = rare.select(torch.arange(len(wide_mem))), rare.select(torch.arange(len(wide_mem), len(both)))
        score = per_method.get("rare_token", {}).get("score", "excess")
        results["rare_token"] = UnitScores(
            "rare_token",
            "head",
            rare_token_score(rare, score),
            clock.seconds,
            {"query": rare.query, "n_mem": len(wide_mem), "score": score},
            detail=rare,
        )
        done("rare_token")
    if "gradient" in methods:
        from interp.gradients import gradient_map

        clock = Stopwatch()
        grads = gradient_map(model, mem, nmem, batch_size=min(batch_size, GRAD_BATCH_SIZE))
        results["gradient"] = UnitScores(
            "gradient",
            "head",
            grads.relative_diff_heads.max(-1).values.float(),
            clock.seconds,
            {"objective": "nll", "reduce": "max"},
        )
        done("gradient")
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    exact = [m.name for m in registry.methods("head") if m.screened and m.name in methods]
    corrupted = corrupt_prefixes(mem, corrupt_fraction, model.cfg.d_vocab, seed=seed)
    if "attribution" in methods or (exact and not exact_all and candidates < n_heads):
        clock = Stopwatch()
        with frozen_weights(model):
            attrib = attribution_patching(model, mem, corrupted, kinds=("head_out",))["head_out"]
        results["attribution"] = UnitScores(
            "attribution",
            "head",
            attrib.effect.nan_to_num(0.0),
            clock.seconds,
            {"corrupt_fraction": corrupt_fraction},
            detail=attrib,
        )
        done("attribution")
    if exact:
        if exact_all or candidates >= n_heads:
            cells = torch.stack(
                torch.meshgrid(torch.arange(model.cfg.n_layers), torch.arange(model.cfg.n_heads), indexing="ij"), -1
            ).view(-1, 2)
        else:
            cells = results["attribution"].top(candidates)
        screen = {"candidates": len(cells), "n_heads": n_heads, "exact_all": len(cells) == n_heads}
    if "patching" in methods:
        clock = Stopwatch()
        patch = _exact_patching(model, mem, corrupted, cells, batch_size)
        if abs(patch.clean_metric - patch.corrupted_metric) < 1e-3:
            notes.append(
                "patching: corrupting the prefix barely changed the continuation's log-prob; its effects are noise"
            )
        results["patching"] = UnitScores(
            "patching",
            "head",
            patch.effect,
            clock.seconds,
            {"corrupt_fraction": corrupt_fraction, "candidates": len(cells)},
            detail=patch,
        )
        if attrib is not None:
            screen.update(screen_agreement(attrib.effect, patch.effect, cells))
        done("patching")
    for entry in registry.methods("head"):
        if entry.run is not None and entry.name in methods:
            method = entry.name
            results[method] = unit_method(
                model,
                method,
                mem,
                nmem,
                unit="head",
                reference=reference,
                units=cells if entry.screened else None,
                options=per_method.get(method),
                batch_size=batch_size,
                seed=seed,
            )
            done(method)
    bar.close()
    for r in results.values():
        notes += list(r.notes)
    results = {m: results[m] for m in methods if m in results} | {m: r for m, r in results.items() if m not in methods}
    screened = cells is not None and len(cells) < n_heads
    _, mean_rank, order, agreement = combine(
        {m: r.score for m, r in results.items()}, rank_by, results["attribution"].score if screened else None
    )
    notes += _screen_notes(results, rank_by, len(cells) if screened else None, n_heads)
    return HeadRanking(
        results,
        mean_rank,
        order,
        agreement,
        rank_by,
        reason,
        mem.ids,
        nmem.ids,
        reference.ids if reference is not None and "ablation" in methods else (),
        cells,
        screen,
        rare,
        rare_nmem,
        patch,
        attrib,
        grads,
        tuple(notes),
    )


def _screen_notes(results: dict[str, UnitScores], rank_by: tuple[str, ...], screened: int | None, n: int) -> list[str]:
    """What the combined order means when some combined method scored only the screen's candidates."""
    if screened is None:
        return []
    partial = [m for m in rank_by if results[m].n_scored < n]
    if not partial:
        return []
    full = [m for m in rank_by if m not in partial]
    text = (
        f"{', '.join(partial)} scored only the {screened} heads the attribution screen kept, so only those have a "
        f"combined rank; the other {n - screened} heads follow in the screen's order, marked 'outside the screen' "
        "(no rank is made up for them)"
    )
    if full:
        text += (
            f". The combination mixes screened methods ({', '.join(partial)}) with methods that scored every head "
            f"({', '.join(full)}): each method's rank is re-taken among the screened heads before averaging"
        )
    return [text]


def rare_token_score(rare: RareTokenAttention, score: str = "excess") -> Float[Tensor, "layer head"]:
    """The locator's rare-token score, higher = more attention to rare tokens: minus the excess tau over
    the permutation null (default), or minus the raw summed tau (`score="tau"`, the paper's)."""
    if score not in ("excess", "tau"):
        raise UserError(f"rare_token score must be 'excess' or 'tau', got {score!r}")
    return -(rare.excess if score == "excess" else rare.tau).nan_to_num(0.0).float()


def screen_agreement(
    screen: Float[Tensor, "layer head"], exact: Float[Tensor, "layer head"], cells: Int[Tensor, "k 2"]
) -> dict:
    """How the attribution screen compares with exact patching on the heads both scored.

    Pearson / Spearman over the candidates; when every head was patched exactly, also whether the
    exact top head was inside the screen's top-k for k = 1, 4, 8 (the `exact_top_attribution_rank`).
    """
    a, b = screen[cells[:, 0], cells[:, 1]].double(), exact[cells[:, 0], cells[:, 1]].double()
    out: dict = {}
    if len(cells) >= 3:
        out["pearson_on_candidates"] = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        out["spearman_on_candidates"] = float(spearmanr(a.numpy(), b.numpy()).statistic)
    if len(cells) == exact.numel():
        layer, head = divmod(int(exact.nan_to_num(float("-inf")).flatten().argmax()), exact.shape[1])
        rank = int(rank_units(screen.nan_to_num(float("-inf")))[layer, head])
        out["exact_top"] = [layer, head]
        out["exact_top_attribution_rank"] = rank
    return out


def locate_neurons(
    model: Model,
    mem: Paragraphs,
    nmem: Paragraphs | None = None,
    *,
    reference: Paragraphs | None = None,
    methods: tuple[str, ...] = DEFAULT_NEURON_METHODS,
    rank_by: tuple[str, ...] | None = None,
    validation=None,
    method_options: dict[str, dict] | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> NeuronRanking:
    """Score every MLP neuron with each method on the MEM paragraphs (MemPi's setting scores the target
    alone; with `nmem` the ablation, IG and gradient methods subtract NMEM's score)."""
    methods = tuple(dict.fromkeys(methods))
    _check_methods(methods, registry.names("neuron"))
    unit_count(model, "neuron")
    if len(mem) == 0:
        raise UserError("neuron location needs at least one MEM paragraph")
    rank_by, reason = _resolve_rank_by(methods, rank_by, validation, DEFAULT_NEURON_RANK_BY, "neuron")
    options = method_options or {}
    results = {
        m: unit_method(
            model,
            m,
            mem,
            nmem,
            unit="neuron",
            reference=reference,
            options=options.get(m),
            batch_size=batch_size,
            seed=seed,
        )
        for m in methods
    }
    _, mean_rank, order, agreement = combine({m: r.score for m, r in results.items()}, rank_by)
    notes = tuple(n for r in results.values() for n in r.notes)
    return NeuronRanking(
        results, mean_rank, order, agreement, rank_by, reason, mem.ids, nmem.ids if nmem is not None else (), notes
    )
