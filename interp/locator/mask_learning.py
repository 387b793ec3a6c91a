"""Learned sparse masks over units (MemPi's Hard Concrete and Slimming), for attention heads or MLP neurons.

Formulation, followed from MemPi (Chang, Thomason, Jia 2024; code terarachang/MemPi:
hardconcrete.py, slim.py, modeling_hardconcrete.py, patch.py): KEEP. A mask m_u in [0, 1]
multiplies unit u's output (a head's z, a neuron's activation) at every position; only the masks
train, the model is frozen, and the loss is

    NLL of the memorized continuations with the mask applied  +  penalty * mean_u R(m_u)

so the sparsity term pulls every mask towards 0 and the memorized text keeps the units it cannot
do without: the units whose masks stay highest are the located ones.

- Hard Concrete (Louizos et al. 2018): m_u = clamp(l + (r - l) sigmoid((log v - log(1 - v) +
  log_alpha_u) / beta), 0, 1), v ~ U(0, 1) drawn once per unit per step, stretch (l, r) = (-0.1,
  1.1), temperature beta (MemPi: 2/3 default, 1/3 for GPT-2 at 0.1%), log_alpha initialised so
  that sigmoid(log_alpha) = (init_keep - l) / (r - l) (MemPi's mask_p, 0.5); R = P(m_u != 0) =
  sigmoid(log_alpha_u - beta log(-l / r)), the expected L0 norm. Score: sigmoid(log_alpha_u).
- Slimming (Liu et al. 2017): m_u = clamp(c_u, 0, 1), c_u initialised to 1, R = |c_u| (L1).
  Score: c_u unclamped, which orders units as MemPi's clamped value does and breaks its ties at 1.

Training stops, as in MemPi, once the mean regulariser falls to `target_density` (their
--stop_loss), or after `max_steps`. Differences from MemPi: (1) the sparsity weight is not a
per-model constant (MemPi tunes it per model on 5 dev examples, hyper_HC.py / hyper_slim.py): it
starts at `penalty` and grows by `growth` per step, so the target density is reached on any model
within a predictable number of steps, and units are ordered by how long they resist a rising
pressure; (2) the NLL is over the continuation tokens only (the text recited after its prefix),
and several paragraphs are masked together (their mean NLL); (3) runs take at most a few hundred
steps (MemPi allows 4000). The defaults were checked on the injection benchmark; for neurons, Hard Concrete
uses MemPi's rate and stops near the located fraction (`_HC_NEURON`; why: docs/locator_injection.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from interp.backend import Model, hooks_on
from interp.constants import GRAD_BATCH_SIZE
from interp.data import Paragraphs
from interp.errors import UserError
from interp.io import float_from_json
from interp.locator.units import (
    MethodCall,
    Stopwatch,
    UnitScores,
    check_unit,
    frozen_weights,
    scale_units,
    unit_count,
    unit_hook,
)
from interp.objectives import continuation_nll

STRETCH = (-0.1, 1.1)
_HC = dict(lr=0.1, penalty=0.1, growth=1.05, target_density=0.3, max_steps=200, temperature=2 / 3, init_keep=0.5)
# Neurons: MemPi's rate (1e-2, not 0.1) and a stop near the located fraction (density 0.01, not 0.3), for at most
# 300 steps. With Adam every mask moves by about the rate per step whatever its gradient, so at 0.1 the order of
# the masks is set by the sampled noise of a few steps, and at density 0.3 a third of the 6,144 testbed neurons
# are still on when it stops: Recall@0.5% of the injected neurons 0.16 -> 0.84 (docs/locator_injection.md).
_HC_NEURON = {**_HC, "lr": 0.01, "target_density": 0.01, "max_steps": 300}
_SLIM = dict(lr=0.05, penalty=0.1, growth=1.05, target_density=0.3, max_steps=200)
DEFAULTS = {
    "head": {"hard_concrete": _HC, "slimming": _SLIM},
    "neuron": {"hard_concrete": _HC_NEURON, "slimming": _SLIM},
}


@dataclass(frozen=True)
class MaskRun:
    """How a mask was learned: steps taken, why it stopped, the NLL and mean regulariser per step."""

    steps: int
    stopped: str  # "target_density" or "max_steps"
    nll: tuple[float, ...]
    density: tuple[float, ...]

    def to_json(self) -> dict:
        return {"steps": self.steps, "stopped": self.stopped, "nll": list(self.nll), "density": list(self.density)}

    @classmethod
    def from_json(cls, data: dict) -> MaskRun:
        """The run `to_json` wrote (a null NLL or density, a non-finite one, back as NaN): the reader to give
        `UnitScores.from_json` / `NeuronRanking.from_json` as `detail=` for the mask methods' scores."""
        return cls(
            data["steps"],
            data["stopped"],
            tuple(float_from_json(v) for v in data["nll"]),
            tuple(float_from_json(v) for v in data["density"]),
        )


def _settings(method: str, unit: str, mem: Paragraphs, batch_size: int, options: dict[str, Any]) -> dict:
    """The method's DEFAULTS for `unit`, each replaced by the option of that name unless it is None (not given),
    checked. `options`: the method's keyword arguments beyond unit, batch_size and seed; DEFAULTS names those it
    takes, so any other is a TypeError, as an unknown keyword is."""
    check_unit(unit)
    defaults = DEFAULTS[unit][method]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")
    o = {name: default if options.get(name) is None else options[name] for name, default in defaults.items()}
    if len(mem) == 0:
        raise UserError("a unit mask needs at least one memorized paragraph to keep")
    if o["lr"] <= 0 or o["penalty"] < 0 or o["growth"] < 1 or o["max_steps"] < 1 or batch_size < 1:
        raise UserError("unit masks need lr > 0, penalty >= 0, growth >= 1, max_steps >= 1 and batch_size >= 1")
    target_density = o["target_density"]
    if not 0 <= target_density < 1:
        raise UserError(f"target density {target_density} must be in [0, 1): the mean mask at which training stops")
    return o


def _scores(method: str, unit: str, score: Tensor, clock: Stopwatch, options: dict, run: MaskRun, measure: str):
    """The learned mask as UnitScores, with a note when training stopped above the target density."""
    notes = (
        ()
        if run.stopped == "target_density"
        else (
            f"{method}: stopped after {run.steps} steps with {measure} {run.density[-1]:.2f} above the target "
            f"{options['target_density']}; raise penalty, growth or max_steps",
        )
    )
    return UnitScores(method, unit, score, clock.seconds, options, notes, run)


def _fit(
    model: Model,
    mem: Paragraphs,
    unit: str,
    param: Tensor,
    mask_of,
    regulariser_of,
    o: dict,
    batch_size: int,
) -> MaskRun:
    """Adam on `param` alone: mean continuation NLL under `mask_of(param)` + penalty * growth^step *
    `regulariser_of(param)`, until the regulariser reaches the target density (`o`: the method's settings)."""
    lr, penalty, growth, target_density, max_steps = (
        o[k] for k in ("lr", "penalty", "growth", "target_density", "max_steps")
    )
    n_layers = model.cfg.n_layers
    current: dict[str, Tensor] = {}

    def apply(act: Tensor, hook, layer: int) -> Tensor:
        return scale_units(act, unit, current["mask"][layer].to(act.dtype))

    hooks = [(unit_hook(unit, layer), partial(apply, layer=layer)) for layer in range(n_layers)]
    opt = torch.optim.Adam([param], lr=lr)
    tokens = mem.tokens.to(model.cfg.device)
    nlls: list[float] = []
    densities: list[float] = []
    stopped, step = "max_steps", 0
    with frozen_weights(model), hooks_on(model, hooks):
        for step in range(max_steps):
            regulariser = regulariser_of(param)
            densities.append(float(regulariser.detach()))
            if densities[-1] <= target_density:
                stopped = "target_density"
                break
            opt.zero_grad()
            total = 0.0
            for start in range(0, len(tokens), batch_size):
                chunk = tokens[start : start + batch_size]
                current["mask"] = mask_of(param, step)
                nll = continuation_nll(model, chunk, mem.prefix_len, reduction="sum") / len(tokens)
                nll.backward()
                total += float(nll.detach())
            (penalty * growth**step * regulariser).backward()
            opt.step()
            nlls.append(total)
        else:
            step = max_steps
    return MaskRun(step, stopped, tuple(nlls), tuple(densities))


def _shape(model: Model, unit: str) -> tuple[int, int]:
    return model.cfg.n_layers, unit_count(model, unit)


def hard_concrete(
    model: Model,
    mem: Paragraphs,
    *,
    unit: str = "head",
    batch_size: int = GRAD_BATCH_SIZE,
    seed: int = 0,
    **options: float | int | None,
) -> UnitScores:
    """Hard Concrete (L0) masks over every head or neuron that keep the MEM continuations (see module doc).

    `options`: lr, penalty, growth, target_density, max_steps, temperature, init_keep; each one left out or None
    takes the unit's default (DEFAULTS)."""
    o = _settings("hard_concrete", unit, mem, batch_size, options)
    if not 0 < o["init_keep"] < 1 or o["temperature"] <= 0:
        raise UserError("hard concrete needs 0 < init_keep < 1 and temperature > 0")
    clock = Stopwatch()
    low, high = STRETCH
    start = (o["init_keep"] - low) / (high - low)
    log_alpha = torch.full(
        _shape(model, unit), math.log(start / (1 - start)), device=model.cfg.device, requires_grad=True
    )
    generator = torch.Generator(device=model.cfg.device).manual_seed(seed)
    beta = o["temperature"]

    noise: dict[int, Tensor] = {}

    def mask_of(param: Tensor, step: int) -> Tensor:
        if step not in noise:  # one draw per unit per step, shared by the step's chunks
            noise.clear()
            v = torch.rand(param.shape, generator=generator, device=param.device).clamp(1e-4, 1 - 1e-4)
            noise[step] = v.log() - (1 - v).log()
        s = torch.sigmoid((noise[step] + param) / beta)
        return (s * (high - low) + low).clamp(0.0, 1.0)

    shift = beta * math.log(-low / high)

    def regulariser_of(param: Tensor) -> Tensor:
        return torch.sigmoid(param - shift).mean()

    run = _fit(model, mem, unit, log_alpha, mask_of, regulariser_of, o, batch_size)
    score = torch.sigmoid(log_alpha.detach()).cpu().float()
    return _scores("hard_concrete", unit, score, clock, {**o, "batch_size": batch_size, "seed": seed}, run, "mean L0")


def slimming(
    model: Model,
    mem: Paragraphs,
    *,
    unit: str = "head",
    batch_size: int = GRAD_BATCH_SIZE,
    **options: float | int | None,
) -> UnitScores:
    """Slimming (L1) coefficients over every head or neuron that keep the MEM continuations (see module doc).

    `options`: lr, penalty, growth, target_density, max_steps; each one left out or None takes the unit's default
    (DEFAULTS)."""
    o = _settings("slimming", unit, mem, batch_size, options)
    clock = Stopwatch()
    coef = torch.ones(_shape(model, unit), device=model.cfg.device, requires_grad=True)
    run = _fit(
        model,
        mem,
        unit,
        coef,
        lambda param, step: param.clamp(0.0, 1.0),
        lambda param: param.abs().mean(),
        o,
        batch_size,
    )
    return _scores(
        "slimming", unit, coef.detach().cpu().float(), clock, {**o, "batch_size": batch_size}, run, "mean |c|"
    )


def run_hard_concrete(call: MethodCall) -> UnitScores:
    """The registry's runner: `hard_concrete` with the call's options and seed (at most GRAD_BATCH_SIZE paragraphs a backward batch, whatever the forward batch)."""
    return hard_concrete(
        call.model,
        call.mem,
        unit=call.unit,
        seed=call.seed,
        batch_size=min(call.batch_size, GRAD_BATCH_SIZE),
        **call.options,
    )


def run_slimming(call: MethodCall) -> UnitScores:
    """The registry's runner: `slimming` with the call's options (at most GRAD_BATCH_SIZE paragraphs a backward batch, whatever the forward batch)."""
    return slimming(
        call.model, call.mem, unit=call.unit, batch_size=min(call.batch_size, GRAD_BATCH_SIZE), **call.options
    )
