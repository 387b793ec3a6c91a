"""Integrated Gradients over unit outputs: each head's z or each MLP neuron's activation.

IG (Sundararajan et al. 2017) with baseline 0, as in MemPi's knowledge-neuron method
(knowledge_neuron.py, after Dai et al. 2022): attribution of unit u = a_u * mean over alpha of
d f / d a_u at alpha * a, for alpha on a `steps`-point grid in (0, 1] (midpoints), summed over the
unit's positions and (for a head) its d_head components. f = the mean log-prob of the true
continuation tokens, per paragraph; scores are averaged over paragraphs. By IG's completeness the
attributions of one layer sum to f(a) - f(0): what zeroing the whole layer's units costs.

Where MemPi scales the activations at ONE position at a time and attributes that position's
next-token probability (one pass per position), here every position of the layer is scaled
together and the attribution is of the whole continuation's mean log-prob: one batched pass per
layer with `steps` x paragraphs rows, run from the cached residual stream entering that layer.

With `nmem` given the score is MEM attribution minus NMEM attribution (memorization-specific);
without it, the MEM attribution alone (MemPi's form).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.backend import Model, act_name, capture, hooks_on, run_from
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.locator.units import MethodCall, Stopwatch, UnitScores, check_unit, frozen_weights, unit_hook
from interp.metrics import continuation_log_probs


def _attributions(
    model: Model, paragraphs: Paragraphs, unit: str, steps: int, batch_size: int
) -> Float[Tensor, "layer index"]:
    """Mean over paragraphs of each unit's IG attribution to the mean continuation log-prob."""
    n_layers, p = model.cfg.n_layers, paragraphs.prefix_len
    tokens = paragraphs.tokens.to(model.cfg.device)
    names = [act_name("resid_pre", layer) for layer in range(n_layers)] + [unit_hook(unit, l) for l in range(n_layers)]
    with torch.no_grad():
        _, cache = capture(model, tokens, names)
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    n = len(paragraphs)
    rows_paragraph = torch.arange(n).repeat(steps)  # row r: paragraph r % n at alpha r // n
    rows_alpha = alphas.repeat_interleave(n)
    out = []
    for layer in range(n_layers):
        act = cache[unit_hook(unit, layer)]
        resid = cache["resid_pre", layer]
        grad_sum = torch.zeros_like(act, dtype=torch.promote_types(act.dtype, torch.float32))
        for start in range(0, len(rows_paragraph), batch_size):
            b = rows_paragraph[start : start + batch_size].to(act.device)
            alpha = rows_alpha[start : start + batch_size].to(act.device, act.dtype)
            scaled = (act[b] * alpha.view(-1, *([1] * (act.ndim - 1)))).detach().requires_grad_(True)
            with hooks_on(model, [(unit_hook(unit, layer), lambda a, hook, s=scaled: s)]):
                logits = run_from(model, resid[b], layer)
            metric = continuation_log_probs(logits.float(), tokens[b], p).mean(-1).sum()
            (grad,) = torch.autograd.grad(metric, scaled)
            grad_sum.index_add_(0, b, grad.to(grad_sum.dtype))
        attribution = act.to(grad_sum.dtype) * grad_sum / steps  # [n, pos, head, d_head] or [n, pos, d_mlp]
        per_unit = attribution.sum(dim=(1, 3)) if unit == "head" else attribution.sum(dim=1)
        out.append(per_unit.mean(0).cpu().double())
    return torch.stack(out).float()


def integrated_gradients(
    model: Model,
    mem: Paragraphs,
    nmem: Paragraphs | None = None,
    *,
    unit: str = "head",
    steps: int = 16,
    batch_size: int = BATCH_SIZE,
) -> UnitScores:
    """IG attribution of every head or neuron to the MEM continuations (minus NMEM's when given)."""
    check_unit(unit)
    if len(mem) == 0:
        raise UserError("integrated gradients need at least one MEM paragraph")
    if steps < 1 or batch_size < 1:
        raise UserError("integrated gradients need steps >= 1 and batch_size >= 1")
    clock = Stopwatch()
    with frozen_weights(model):
        score = _attributions(model, mem, unit, steps, batch_size)
        if nmem is not None and len(nmem):
            score = score - _attributions(model, nmem, unit, steps, batch_size)
    return UnitScores(
        "integrated_gradients",
        unit,
        score,
        clock.seconds,
        {"steps": steps, "baseline": "zero", "contrast": nmem is not None and len(nmem) > 0},
    )


def run(call: MethodCall) -> UnitScores:
    """The registry's runner: `integrated_gradients` with the call's options."""
    return integrated_gradients(
        call.model, call.mem, call.nmem, unit=call.unit, batch_size=call.batch_size, **call.options
    )
