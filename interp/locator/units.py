"""One result type for every localization method: a score per unit (attention head or MLP neuron).

A unit is an attention head (layer, head), whose output is the hook `blocks.L.attn.hook_z`
sliced on its head axis, or an MLP neuron (layer, neuron), the hook `blocks.L.mlp.hook_post`
sliced on its last axis (the neuron's activation, its coefficient on the W_out row).

Every method of the locator returns `UnitScores`: HIGHER score = more evidence that the unit
holds the memorized text; NaN = the method did not score that unit (exact patching scores only
the candidates an attribution screen kept), and such a unit has no rank (NaN), never a made-up one. Each result carries
its wall-clock seconds and the options it ran with, so methods can be compared on cost as well
as on what the injection benchmark (interp.locator.validation) says about their accuracy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.backend import Model, act_name
from interp.data import BATCH_SIZE, Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.io import tensor_from_json

UNITS = ("head", "neuron")


def check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise UserError(f"unknown unit {unit!r}: use 'head' (attention heads) or 'neuron' (MLP neurons)")


def unit_count(model: Model, unit: str) -> int:
    """Units per layer: heads, or MLP neurons."""
    check_unit(unit)
    if unit == "neuron" and (model.cfg.attn_only or model.cfg.d_mlp is None):
        raise UserError("this model has no MLP, so it has no MLP neurons to locate")
    return model.cfg.n_heads if unit == "head" else model.cfg.d_mlp


def unit_hook(unit: str, layer: int) -> str:
    """The hook whose last unit axis holds every unit of a layer: z (heads) or the MLP's post activation."""
    return act_name("z" if unit == "head" else "post", layer)


def scale_units(act: Tensor, unit: str, factor: Float[Tensor, "... n_units"]) -> Tensor:
    """`act` (z [b, pos, head, d_head] or post [b, pos, d_mlp]) with each unit multiplied by its factor.

    `factor` broadcasts against [b, pos, unit]: a per-unit vector, or per-row [b, 1, unit].
    """
    return act * factor[..., None] if unit == "head" else act * factor


def rank_units(score: Float[Tensor, "layer index"]) -> Float[Tensor, "layer index"]:
    """Rank of every scored unit, 1 = the highest score, ties by position; NaN where the unit was not scored.

    An unscored unit has no rank: giving it one after the scored units (in layer-major order) would
    make its rank depend on where it sits in the model, not on any evidence."""
    flat = score.flatten().double()
    scored = ~flat.isnan()
    order = flat.nan_to_num(float("-inf")).argsort(descending=True, stable=True)
    ranks = torch.full_like(flat, float("nan"))
    n = int(scored.sum())
    ranks[order[:n]] = torch.arange(1, n + 1, dtype=torch.float64)
    return ranks.float().view(score.shape)


def top_units(score: Float[Tensor, "layer index"], k: int) -> Int[Tensor, "k 2"]:
    """The k best scored (layer, index) cells, best first (fewer if fewer were scored)."""
    flat = score.flatten().double()
    order = flat.nan_to_num(float("-inf")).argsort(descending=True, stable=True)
    flat = order[: min(k, int((~flat.isnan()).sum()))]
    return torch.stack([flat // score.shape[1], flat % score.shape[1]], 1)


def recall_at(
    score: Float[Tensor, "layer index"], gold: Bool[Tensor, "layer index"], fraction: float, per_layer: bool = True
) -> float:
    """Share of the gold units among the top `fraction` of units (MemPi's Recall@k).

    per_layer=True is MemPi's `get_layerwise_scores`: the top round(fraction * units per layer)
    units of EACH layer are predicted, and recall = gold units predicted / all gold units.
    per_layer=False ranks all units of all layers together (MemPi's `get_global_scores`).
    """
    if not 0 < fraction <= 1:
        raise UserError(f"recall fraction {fraction} must be in (0, 1]")
    if gold.shape != score.shape:
        raise UserError(f"gold units {tuple(gold.shape)} and scores {tuple(score.shape)} differ in shape")
    n_gold = int(gold.sum())
    if n_gold == 0:
        raise UserError("no gold units: recall is undefined")
    filled = score.double().nan_to_num(float("-inf"))
    if per_layer:
        k = max(1, round(fraction * score.shape[1]))
        picked = torch.zeros_like(gold)
        picked.scatter_(1, filled.topk(k, dim=1).indices, True)
    else:
        k = max(1, round(fraction * score.numel()))
        picked = torch.zeros(score.numel(), dtype=torch.bool)
        picked[filled.flatten().topk(k).indices] = True
        picked = picked.view(score.shape)
    return float((picked & gold).sum()) / n_gold


def recall_ceiling(gold: Bool[Tensor, "layer index"], fraction: float, per_layer: bool = True) -> float:
    """The largest `recall_at` any scoring can reach on `gold`: per layer only the top round(fraction * units per
    layer) units are predicted, so a layer holding more gold units than that caps the recall below 1 (a uniform
    random draw over all layers, as MemPi's injection makes, often puts more there)."""
    n_gold = int(gold.sum())
    if n_gold == 0:
        raise UserError("no gold units: recall is undefined")
    if per_layer:
        k = max(1, round(fraction * gold.shape[1]))
        return float(gold.sum(1).clamp(max=k).sum()) / n_gold
    return min(n_gold, max(1, round(fraction * gold.numel()))) / n_gold


@dataclass(frozen=True)
class UnitScores(Displayed):
    """A method's score for every unit (higher = more memorization), its cost and settings.

    `score[layer, index]`: index = head or neuron; NaN = not scored. `detail` keeps the method's
    own result where it has one (a PatchingResult, RareTokenAttention, mask trajectory, ...).
    """

    _view = "interp.views.heads:figure_unit_scores"

    method: str
    unit: str
    score: Float[Tensor, "layer index"]
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    detail: Any = None

    @property
    def ranks(self) -> Float[Tensor, "layer index"]:
        return rank_units(self.score)

    def rank_of(self, layer: int, index: int) -> int | None:
        """The unit's rank (1 = first), None when this method did not score it."""
        return _int_or_none(self.ranks[layer, index])

    def layer_rank_of(self, layer: int, index: int) -> int | None:
        """The unit's rank among the scored units of its own layer (1 = the layer's best), None if unscored."""
        return _int_or_none(rank_units(self.score[layer : layer + 1])[0, index])

    @property
    def n_scored(self) -> int:
        return int((~self.score.isnan()).sum())

    def margin(self, layer: int, index: int) -> float:
        """The unit's score minus the best score of any OTHER unit (> 0: first by that much)."""
        others = self.score.clone().double()
        others[layer, index] = float("nan")
        best = others.nan_to_num(float("-inf")).max()
        return float(self.score[layer, index] - best)

    def margin_z(self, layer: int, index: int) -> float:
        """`margin` in standard deviations of the scored units' scores (comparable across methods)."""
        scored = self.score[~self.score.isnan()].double()
        spread = float(scored.std()) if scored.numel() > 1 else 0.0
        return self.margin(layer, index) / spread if spread > 0 else float("nan")

    def top(self, k: int = 1) -> Int[Tensor, "k 2"]:
        return top_units(self.score, k)

    def with_time(self, seconds: float) -> UnitScores:
        return UnitScores(self.method, self.unit, self.score, seconds, self.options, self.notes, self.detail)

    def to_json(self) -> dict:
        out = {
            "method": self.method,
            "unit": self.unit,
            "seconds": self.seconds,
            "options": self.options,
            "score": self.score,
            "rank": self.ranks,
            "notes": list(self.notes),
        }
        if self.detail is not None and hasattr(self.detail, "to_json"):
            out["detail"] = self.detail.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict, detail: Callable[[dict], Any] | None = None) -> UnitScores:
        """The scores `to_json` wrote (score back as float32, unscored units as NaN). A written `detail` is read
        with the reader given for it (e.g. its class's `from_json`): the JSON does not say what it was."""
        if "detail" in data and detail is None:
            raise UserError(f"{data['method']}'s scores carry a detail: give its reader as detail=")
        return cls(
            data["method"],
            data["unit"],
            tensor_from_json(data["score"], torch.float32),
            data["seconds"],
            data["options"],
            tuple(data["notes"]),
            detail(data["detail"]) if "detail" in data else None,
        )


@dataclass(frozen=True)
class MethodCall:
    """What a registered method's runner (interp.locator.registry) is given: the model, the method's name,
    MEM and NMEM paragraphs, the unit, mean ablation's `reference` set, the screened `units` (exact
    methods only; None: every unit), the method's keyword `options`, the batch size and the seed."""

    model: Model
    method: str
    mem: Paragraphs
    nmem: Paragraphs | None
    unit: str
    reference: Paragraphs | None = None
    units: Int[Tensor, "k 2"] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = BATCH_SIZE
    seed: int = 0


def _int_or_none(value: Tensor) -> int | None:
    return None if bool(value.isnan()) else int(value)


class Stopwatch:
    """Wall-clock seconds since creation (`.seconds`)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


@contextlib.contextmanager
def frozen_weights(model: Model):
    """Inside the block no model parameter requires grad (so backward passes touch none), with grad
    enabled; every requires_grad flag is restored afterwards, also on error."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
