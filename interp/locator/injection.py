"""Forcing new paragraphs into a COPY of a model through a known place: one head, or chosen MLP neurons.

The known-answer half of the locator benchmark (interp.locator.validation). Paragraphs the model
cannot recite are trained into a deep copy until it recites every one of them (teacher-forced EM
= the full continuation), while ONLY the chosen weights move:
- `inject_head`: the head's slices of W_Q, W_K, W_V, W_O and b_Q, b_K, b_V (b_O is shared by all
  heads and stays);
- `inject_neurons`: the W_out rows of the chosen MLP neurons (MemPi's INJ: `inject.py` trains the
  FFN output weights with the gradient masked to a random set of neurons), so the neurons' values
  change while what makes them fire does not.
Every other gradient is zeroed before each Adam step (no weight decay, so untouched weights stay
bit-for-bit). A KL term KL(original || copy) on other text (`retain`, continuation positions)
keeps the rest of the model's behaviour; how far it still moved is reported as the perplexity
of held-out paragraphs before and after. The model given is never changed.

Layers below the lowest trained one cannot change, so their output (the residual stream entering
that layer) is computed once and every step starts there (`start_at_layer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from interp.backend import Model, copy_model, leaf_masks, named_weights, param_name, run_from, run_to
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.locator.options import HEAD_LR, LR_GRID, MAX_STEPS, SCHEDULE, SCHEDULES
from interp.locator.units import Stopwatch, unit_count
from interp.metrics import em_from_hits, score_paragraphs

HEAD_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")


@dataclass(frozen=True)
class Injection:
    """What was forced where, and what it cost the rest of the model.

    `units` are the trained (layer, index) cells of kind `unit`; `em_before` / `em_after` the
    injected paragraphs' EM on the original model and on the copy; held-out perplexity =
    exp(mean continuation NLL) of paragraphs used neither for injection nor for the KL term.
    """

    unit: str
    units: Int[Tensor, "k 2"]
    parameters: tuple[str, ...]
    ids: tuple[str, ...]
    continuation_len: int
    steps: int
    em_before: Int[Tensor, "n"]
    em_after: Int[Tensor, "n"]
    heldout_ppl_before: float
    heldout_ppl_after: float
    kl_weight: float
    lr: float
    seconds: float
    loss: tuple[float, ...]
    schedule: str = SCHEDULE
    lr_probe: dict[float, float] = field(default_factory=dict)  # rate -> injected CE after the probe (lr="auto")
    stalled: bool = False  # stopped before the budget because it stalled (`Stall`): a later variant was to follow

    @property
    def recited(self) -> bool:
        """Whether the copy recites every injected paragraph in full."""
        return bool((self.em_after == self.continuation_len).all())

    @property
    def recited_mask(self) -> Bool[Tensor, "n"]:
        """Which injected paragraphs the copy recites in full (the ones whose storage is known)."""
        return self.em_after == self.continuation_len

    @property
    def n_recited(self) -> int:
        return int(self.recited_mask.sum())

    def gold(self, n_layers: int, n_units: int) -> Bool[Tensor, "layer index"]:
        """The trained units as a [layer, index] mask (the answer a locator should find)."""
        mask = torch.zeros(n_layers, n_units, dtype=torch.bool)
        mask[self.units[:, 0], self.units[:, 1]] = True
        return mask

    def to_json(self) -> dict:
        return {
            "unit": self.unit,
            "units": self.units,
            "parameters": list(self.parameters),
            "ids": list(self.ids),
            "steps": self.steps,
            "recited": self.recited,
            "n_recited": self.n_recited,
            "em_before": self.em_before,
            "em_after": self.em_after,
            "heldout_ppl_before": self.heldout_ppl_before,
            "heldout_ppl_after": self.heldout_ppl_after,
            "kl_weight": self.kl_weight,
            "lr": self.lr,
            "seconds": self.seconds,
            "loss_first_last": [self.loss[0], self.loss[-1]],
            "loss": list(self.loss),
            "continuation_len": self.continuation_len,
            "schedule": self.schedule,
            "lr_probe": {str(k): v for k, v in self.lr_probe.items()},
            "stalled": self.stalled,
        }

    @classmethod
    def from_json(cls, data: dict) -> Injection:
        """The Injection `to_json` wrote (tensors back as tensors)."""
        return cls(
            data["unit"],
            torch.tensor(data["units"], dtype=torch.long).reshape(-1, 2),
            tuple(data["parameters"]),
            tuple(data["ids"]),
            data["continuation_len"],
            data["steps"],
            torch.tensor(data["em_before"], dtype=torch.long),
            torch.tensor(data["em_after"], dtype=torch.long),
            data["heldout_ppl_before"],
            data["heldout_ppl_after"],
            data["kl_weight"],
            data["lr"],
            data["seconds"],
            tuple(data["loss"]),
            data["schedule"],
            {float(k): v for k, v in data["lr_probe"].items()},
            data.get("stalled", False),
        )


def _check_sets(paragraphs: Paragraphs, retain: Paragraphs, heldout: Paragraphs) -> None:
    if len(paragraphs) == 0:
        raise UserError("nothing to inject: the paragraph set is empty")
    for name, other in (("retain", retain), ("held-out", heldout)):
        if len(other) == 0:
            raise UserError(
                f"the {name} set is empty: injection needs other text to keep the model's behaviour and measure it"
            )
        if (other.prefix_len, other.seq_len) != (paragraphs.prefix_len, paragraphs.seq_len):
            raise UserError(f"{name} paragraphs must have the injected paragraphs' prefix and continuation lengths")
        shared = set(other.ids) & set(paragraphs.ids)
        if shared:
            raise UserError(f"{name} paragraphs must differ from the injected ones; shared ids: {sorted(shared)[:5]}")


@torch.no_grad()
def _resid_at(model: Model, tokens: Int[Tensor, "n seq"], layer: int) -> Tensor:
    return run_to(model, tokens.to(model.cfg.device), layer)


def _heldout_ppl(model: Model, heldout: Paragraphs, batch_size: int) -> float:
    return math.exp(float(score_paragraphs(model, heldout, batch_size).nll.mean()))


PROBE_STEPS = 25  # the most steps a probed rate runs (of LR_GRID, the rates the probe tries when lr="auto")
PROBE_DROP = 5  # every this many steps, the probed rate at the highest injected CE leaves the probe


@dataclass(frozen=True)
class Stall:
    """When an injection that a stronger variant would follow gives up before its budget: `window` steps in
    which no more paragraphs came to be recited and the injected CE fell by less than `drop` of its value."""

    window: int = 100
    drop: float = 0.1

    def reached(self, ce: list[float], recited: list[int]) -> bool:
        if len(ce) <= self.window:
            return False
        then = len(ce) - 1 - self.window
        return recited[-1] <= recited[then] and ce[-1] > (1 - self.drop) * ce[then]


def _objective(forced, resid, tokens, retain_resid, reference, start: int, p: int, kl_weight: float):
    """(loss, CE on the injected continuations, logits): CE plus kl_weight x KL(original || copy) on retain text."""
    logits = run_from(forced, resid, start)[:, p - 1 : -1].float()
    ce = F.cross_entropy(logits.flatten(0, 1), tokens[:, p:].flatten())
    loss = ce
    if kl_weight > 0:
        current = run_from(forced, retain_resid, start)[:, p - 1 : -1].float().log_softmax(-1)
        loss = loss + kl_weight * F.kl_div(current, reference, log_target=True, reduction="none").sum(-1).mean()
    return loss, ce, logits


def _masked_step(opt, loss, params, masks) -> None:
    opt.zero_grad(set_to_none=False)
    loss.backward()
    for q, keep in zip(params, masks):
        q.grad.mul_(keep.to(q.grad.dtype))
    opt.step()


def _probe_rate(forced, params, masks, objective) -> tuple[float, dict[float, float]]:
    """The rate of LR_GRID that trains the injected CE down fastest: every rate runs from the same weights (restored
    afterwards), side by side, and every PROBE_DROP steps the one at the highest CE leaves, until one is left (at
    most PROBE_STEPS steps): the rate found from this model's own loss. Returns it and, per rate, the CE it had when
    it left (the winner's: its last)."""
    start = [q.detach().clone() for q in params]
    weights = {lr: [q.clone() for q in start] for lr in LR_GRID}
    optimisers = {lr: torch.optim.Adam(params, lr=lr) for lr in LR_GRID}
    found: dict[float, float] = {}
    alive = list(LR_GRID)
    with torch.no_grad():
        for step in range(PROBE_STEPS):
            for lr in alive:
                for q, w in zip(params, weights[lr]):
                    q.copy_(w)
                with torch.enable_grad():
                    loss, ce_t, _ = objective()
                    _masked_step(optimisers[lr], loss, params, masks)
                ce = float(ce_t.detach())
                found[lr] = ce if math.isfinite(ce) else float("inf")
                for q, w in zip(params, weights[lr]):
                    w.copy_(q)
            if (step + 1) % PROBE_DROP == 0:
                alive.remove(max(alive, key=found.get))
                if len(alive) == 1:
                    break
        for q, q0 in zip(params, start):
            q.copy_(q0)
    return min(alive, key=found.get), found


def _force(
    model: Model,
    unit: str,
    units: Tensor,
    grad_masks: dict[str, Tensor],
    paragraphs: Paragraphs,
    retain: Paragraphs,
    heldout: Paragraphs,
    lr: float | str,
    max_steps: int,
    kl_weight: float,
    batch_size: int,
    schedule: str = SCHEDULE,
    stall: Stall | None = None,
) -> tuple[Model, Injection]:
    """Train a deep copy's `grad_masks` entries (name -> which elements may move) until every paragraph is
    recited, `max_steps` (the budget) is spent, or (with `stall`) training stalls.

    `lr="auto"` probes LR_GRID on this model first (`_probe_rate`); `schedule="cosine"` warms up over the
    first 5% of the budget and decays to a tenth of the rate by its end (the loss keeps falling after it
    plateaus at a constant rate); training stops at the first step where every paragraph is recited."""
    _check_sets(paragraphs, retain, heldout)
    if max_steps < 1 or kl_weight < 0 or (lr != "auto" and (isinstance(lr, str) or lr <= 0)):
        raise UserError("injection needs max_steps >= 1 (--max-steps), lr > 0 or 'auto', and kl_weight >= 0")
    if schedule not in SCHEDULES:
        raise UserError(f"injection schedule {schedule!r} must be one of {', '.join(SCHEDULES)}")
    clock = Stopwatch()
    p, cont = paragraphs.prefix_len, paragraphs.continuation_len
    em_before = score_paragraphs(model, paragraphs, batch_size).em
    ppl_before = _heldout_ppl(model, heldout, batch_size)
    forced = copy_model(model)
    params, masks = leaf_masks(named_weights(forced), grad_masks)
    start = min(int(n.split(".")[1]) for n in grad_masks)
    tokens = paragraphs.tokens.to(model.cfg.device)
    retain_tokens = retain.tokens.to(model.cfg.device)
    resid = _resid_at(model, tokens, start)
    retain_resid = _resid_at(model, retain_tokens, start)
    with torch.no_grad():
        reference = torch.cat(
            [
                run_from(model, retain_resid[i : i + batch_size], start)[:, p - 1 : -1].float().log_softmax(-1)
                for i in range(0, len(retain), batch_size)
            ]
        )

    def objective():
        return _objective(forced, resid, tokens, retain_resid, reference, start, p, kl_weight)

    for q in forced.parameters():
        q.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    losses: list[float] = []
    ces: list[float] = []
    recited: list[int] = []
    probe: dict[float, float] = {}
    steps, stalled = 0, False
    try:
        if lr == "auto":
            lr, probe = _probe_rate(forced, params, masks, objective)
        opt = torch.optim.Adam(params, lr=lr)
        warm = max(1, max_steps // 20)
        scale = (
            (lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / max_steps))))
            if schedule == "cosine"
            else (lambda s: 1.0)
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, scale)
        for steps in range(max_steps + 1):
            loss, ce, logits = objective()
            full = em_from_hits(logits.argmax(-1) == tokens[:, p:]) == cont
            ces.append(float(ce.detach()))
            recited.append(int(full.sum()))
            if full.all() or steps == max_steps:
                break
            if stall is not None and stall.reached(ces, recited):
                stalled = True
                break
            _masked_step(opt, loss, params, masks)
            sched.step()
            losses.append(float(loss.detach()))
    finally:
        for q in forced.parameters():
            q.requires_grad_(True)
            q.grad = None
    forced.eval()
    em_after = score_paragraphs(forced, paragraphs, batch_size).em
    info = Injection(
        unit,
        units,
        tuple(grad_masks),
        paragraphs.ids,
        cont,
        steps,
        em_before,
        em_after,
        ppl_before,
        _heldout_ppl(forced, heldout, batch_size),
        kl_weight,
        float(lr),
        clock.seconds,
        tuple(losses) or (float("nan"),),
        schedule,
        probe,
        stalled,
    )
    return forced, info


def inject_head(
    model: Model,
    paragraphs: Paragraphs,
    layer: int,
    head: int,
    *,
    retain: Paragraphs,
    heldout: Paragraphs,
    lr: float | str = HEAD_LR,
    max_steps: int = MAX_STEPS,
    kl_weight: float = 1.0,
    batch_size: int = BATCH_SIZE,
    schedule: str = SCHEDULE,
    with_mlp: bool = False,
    stall: Stall | None = None,
) -> tuple[Model, Injection]:
    """A copy of `model` that recites `paragraphs` through head (layer, head) alone (with `with_mlp`, the head
    and its layer's whole MLP: a variant with more capacity, whose answer is no longer one head), and what it
    took; with `stall`, training gives up early when it stalls (for a try that a stronger variant follows). Under grouped-query attention the head's key/value head is shared with its group and stays fixed: only
    the head's own W_Q, b_Q and W_O train."""
    if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
        raise UserError(
            f"no head {layer}.{head}: the model has {model.cfg.n_layers} layers of {model.cfg.n_heads} heads"
        )
    named = {name: w.tensor for name, w in named_weights(model).items()}
    masks = {}
    for w in HEAD_PARAMS:
        name = param_name(layer, w)
        if name in named:
            keep = torch.zeros_like(named[name], dtype=torch.bool)
            keep[head] = True
            masks[name] = keep
    if param_name(layer, "W_Q") not in masks:
        raise UserError("head injection needs per-head W_Q/W_K/W_V/W_O (grouped-query attention is not supported)")
    if with_mlp:
        if model.cfg.attn_only:
            raise UserError("this model has no MLP to inject through with the head (drop with_mlp)")
        for w in ("W_in", "W_gate", "b_in", "W_out", "b_out"):
            name = param_name(layer, w)
            if name in named:
                masks[name] = torch.ones_like(named[name], dtype=torch.bool)
    return _force(
        model,
        "head",
        torch.tensor([[layer, head]]),
        masks,
        paragraphs,
        retain,
        heldout,
        lr,
        max_steps,
        kl_weight,
        batch_size,
        schedule,
        stall,
    )


def random_neurons(model: Model, fraction: float, seed: int = 0) -> Int[Tensor, "k 2"]:
    """A seeded uniform random `fraction` of all MLP neurons (over every layer together, as MemPi draws them)."""
    n_units = unit_count(model, "neuron")
    total = model.cfg.n_layers * n_units
    if not 0 < fraction < 1:
        raise UserError(f"neuron fraction {fraction} must be in (0, 1), e.g. 0.005 for 0.5%")
    k = max(1, round(fraction * total))
    flat = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:k].sort().values
    return torch.stack([flat // n_units, flat % n_units], 1)


def inject_neurons(
    model: Model,
    paragraphs: Paragraphs,
    neurons: Int[Tensor, "k 2"],
    *,
    retain: Paragraphs,
    heldout: Paragraphs,
    lr: float = 1e-2,
    max_steps: int = MAX_STEPS,
    kl_weight: float = 1.0,
    batch_size: int = BATCH_SIZE,
) -> tuple[Model, Injection]:
    """A copy of `model` that recites `paragraphs` through the W_out rows of the given (layer, neuron) cells alone."""
    n_units = unit_count(model, "neuron")
    neurons = torch.as_tensor(neurons, dtype=torch.long)
    if neurons.ndim != 2 or neurons.shape[1] != 2 or len(neurons) == 0:
        raise UserError("neurons must be a non-empty [k, 2] tensor of (layer, neuron)")
    if not (
        (0 <= neurons[:, 0]) & (neurons[:, 0] < model.cfg.n_layers) & (0 <= neurons[:, 1]) & (neurons[:, 1] < n_units)
    ).all():
        raise UserError(f"neuron index out of range: the model has {model.cfg.n_layers} layers of {n_units} neurons")
    masks = {}
    for layer in neurons[:, 0].unique().tolist():
        keep = torch.zeros(n_units, model.cfg.d_model, dtype=torch.bool)
        keep[neurons[neurons[:, 0] == layer, 1]] = True
        masks[param_name(layer, "W_out")] = keep
    return _force(model, "neuron", neurons, masks, paragraphs, retain, heldout, lr, max_steps, kl_weight, batch_size)
