"""Gradient evidence per unit (head or MLP neuron), and variants meant to survive a memorized minimum.

Why plain gradients miss. Where a paragraph is recited, its continuation tokens have p ~ 1, and
the NLL gradient d(-log p)/d logits = p - onehot ~ 0: the weights that store the text get almost
no gradient from it, exactly because they store it so well. The variants below are measured on
injected models by interp.locator.validation (docs/gradient_map.md):

- `gradient_l2`: || mean over paragraphs of d NLL / d W_u ||_2 over the unit's weights u (a head:
  its slices of W_Q, W_K, W_V, W_O; a neuron: its W_in (and W_gate) column and W_out row);
- `grad_x_weight`: | sum over the unit's weights of grad * weight |, the first-order estimate of
  the NLL change when the unit's weights are zeroed;
- `fisher`: sum over paragraphs of || d NLL_i / d W_u ||^2, the empirical Fisher information of the
  unit's weights (per-paragraph gradients, so opposite signs across paragraphs do not cancel);
- `perturbed_gradient`: `gradient_l2` at theta + delta, delta ~ N(0, (noise * |w|)^2) on every
  block weight (a fresh copy per draw): away from the minimum the NLL gradient is the restoring
  force ~ H delta, largest where the loss is sharpest, i.e. in the weights the text depends on.

Each is computed for MEM and for NMEM paragraphs; the score is MEM's share of the total over all
units minus NMEM's share (where MEM is relatively stronger, as `relative_diff_heads` of the
gradient map). Embeddings, unembedding and biases are left out, as in the paper.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.backend import Model, copy_model, named_weights, param_name
from interp.constants import GRAD_BATCH_SIZE
from interp.data import Paragraphs
from interp.errors import UserError
from interp.gradients import component_gradient, parameter_gradients
from interp.locator.options import GRADIENT_VARIANTS as VARIANTS
from interp.locator.units import MethodCall, Stopwatch, UnitScores, check_unit


def _unit_slices(tensors: dict[str, Tensor], model: Model, unit: str, reduce) -> Float[Tensor, "layer index"]:
    """`reduce(tensor, dims)` summed over each unit's weight slices, per layer. Under grouped-query attention a
    head's W_K / W_V slices are its key/value head's; a gated MLP's neuron also has its W_gate column."""
    rows = []
    mlp_in = ("W_in", "W_gate") if model.cfg.gated_mlp else ("W_in",)
    for layer in range(model.cfg.n_layers):
        if unit == "head":
            parts = [
                reduce(component_gradient(tensors, model, layer, c, per_query_head=True), (1, 2))
                for c in ("W_Q", "W_K", "W_V", "W_O")
            ]
        else:
            parts = [reduce(tensors[param_name(layer, c)], (0,)) for c in mlp_in]
            parts.append(reduce(tensors[param_name(layer, "W_out")], (1,)))
        rows.append(torch.stack(parts).sum(0))
    return torch.stack(rows).double().cpu()


def _squares(grads: dict[str, Tensor], model: Model, unit: str) -> Tensor:
    return _unit_slices(grads, model, unit, lambda g, dims: g.double().pow(2).sum(dims))


def _shares(values: Tensor) -> Tensor:
    total = values.sum()
    return values / total if total > 0 else values


def _contrast(mem: Tensor, nmem: Tensor) -> Float[Tensor, "layer index"]:
    return (_shares(mem) - _shares(nmem)).float()


def _mean_grads(model: Model, paragraphs: Paragraphs, batch_size: int) -> dict[str, Tensor]:
    return parameter_gradients(model, paragraphs, objective="nll", batch_size=batch_size)


def _fisher(model: Model, paragraphs: Paragraphs, unit: str) -> Tensor:
    total = None
    for i in range(len(paragraphs)):
        sq = _squares(_mean_grads(model, paragraphs.select([i]), 1), model, unit)
        total = sq if total is None else total + sq
    return total


@torch.no_grad()
def _perturbed(model: Model, noise: float, generator: torch.Generator) -> Model:
    shaken = copy_model(model)
    for name, weight in named_weights(shaken).items():
        if name.startswith("blocks.") and ".W_" in name:
            w = weight.tensor
            w.add_(torch.randn(w.shape, generator=generator).to(w.device, w.dtype) * w.abs() * noise)
    return shaken


def gradient_scores(
    model: Model,
    mem: Paragraphs,
    nmem: Paragraphs,
    *,
    unit: str = "head",
    variants: tuple[str, ...] = VARIANTS,
    noise: float = 0.05,
    draws: int = 2,
    seed: int = 0,
    batch_size: int = GRAD_BATCH_SIZE,
) -> dict[str, UnitScores]:
    """Every requested gradient variant's MEM-vs-NMEM score per unit (see the module docstring)."""
    check_unit(unit)
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise UserError(f"unknown gradient variant {bad[0] if bad else None!r}: use any of {', '.join(VARIANTS)}")
    if len(mem) == 0 or len(nmem) == 0:
        raise UserError("gradient scores compare MEM with NMEM paragraphs: both sets must be non-empty")
    if noise <= 0 or draws < 1:
        raise UserError("the perturbed gradient needs noise > 0 and draws >= 1")
    out: dict[str, UnitScores] = {}
    if {"gradient_l2", "grad_x_weight"} & set(variants):
        clock = Stopwatch()
        g_mem, g_nmem = _mean_grads(model, mem, batch_size), _mean_grads(model, nmem, batch_size)
        shared = clock.seconds
        weights = {name: w.tensor.detach() for name, w in named_weights(model).items() if name in g_mem}
        if "gradient_l2" in variants:
            clock = Stopwatch()
            score = _contrast(_squares(g_mem, model, unit).sqrt(), _squares(g_nmem, model, unit).sqrt())
            out["gradient_l2"] = UnitScores("gradient_l2", unit, score, shared + clock.seconds, {"reduce": "l2"})
        if "grad_x_weight" in variants:
            clock = Stopwatch()

            def dot(grads):
                products = {n: grads[n] * weights[n] for n in grads}
                return _unit_slices(products, model, unit, lambda t, dims: t.double().sum(dims)).abs()

            score = _contrast(dot(g_mem), dot(g_nmem))
            out["grad_x_weight"] = UnitScores(
                "grad_x_weight", unit, score, shared + clock.seconds, {"reduce": "|sum g*w|"}
            )
        del g_mem, g_nmem
    if "fisher" in variants:
        clock = Stopwatch()
        score = _contrast(_fisher(model, mem, unit), _fisher(model, nmem, unit))
        out["fisher"] = UnitScores("fisher", unit, score, clock.seconds, {"reduce": "sum_i ||g_i||^2"})
    if "perturbed_gradient" in variants:
        clock = Stopwatch()
        generator = torch.Generator().manual_seed(seed)
        m_total = n_total = None
        for _ in range(draws):
            shaken = _perturbed(model, noise, generator)
            m = _squares(_mean_grads(shaken, mem, batch_size), shaken, unit).sqrt()
            n = _squares(_mean_grads(shaken, nmem, batch_size), shaken, unit).sqrt()
            m_total = m if m_total is None else m_total + m
            n_total = n if n_total is None else n_total + n
            del shaken
        out["perturbed_gradient"] = UnitScores(
            "perturbed_gradient",
            unit,
            _contrast(m_total, n_total),
            clock.seconds,
            {"noise": noise, "draws": draws, "seed": seed},
        )
    return {v: out[v] for v in variants}


def run_variant(call: MethodCall) -> UnitScores:
    """The registry's runner of one gradient variant (`call.method`), MEM against NMEM."""
    if call.nmem is None:
        raise UserError(f"{call.method} compares MEM with NMEM paragraphs: give NMEM paragraphs")
    return gradient_scores(
        call.model,
        call.mem,
        call.nmem,
        unit=call.unit,
        variants=(call.method,),
        batch_size=min(call.batch_size, GRAD_BATCH_SIZE),
        **call.options,
    )[call.method]
