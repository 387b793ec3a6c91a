"""Boolean weight masks: the top fraction of weights by |gradient|, a random baseline, restrictions.

A mask is a dict keyed by TransformerLens parameter names (`blocks.1.attn.W_V`) whose values are
boolean tensors of the parameter's shape; later steps fine-tune only the selected weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from jaxtyping import Bool
from torch import Tensor

from interp.errors import UserError

Mask = dict[str, Bool[Tensor, "..."]]

ATTENTION_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O")
MLP_WEIGHTS = ("W_in", "W_out")
_BLOCK_PARAM = re.compile(r"^blocks\.(\d+)\.(\w+)\.(\w+)$")
# parameters whose first axis is the attention head
_HEAD_AXIS_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "_W_K", "_W_V", "_b_K", "_b_V")


def _check_nonempty(named: dict, what: str) -> None:
    if not named:
        raise UserError(f"the {what} dict is empty: pass at least one parameter")


def top_k_mask(gradients: dict[str, Tensor], fraction: float = 0.001, scope: str = "global") -> Mask:
    """Select the `fraction` of weights with the largest |value| (gradients or any scores).

    scope="global": one ranking over all given parameters, so some may get no weight at all;
    scope="component": the top fraction of each parameter separately. Exactly
    max(1, round(fraction * n)) weights are selected per ranking (ties broken by position).
    """
    _check_nonempty(gradients, "gradients")
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise UserError(f"fraction must be in (0, 1], got {fraction!r} (0.001 = the top 0.1%)")
    if scope == "component":
        return {name: _top_of(g.detach().abs().flatten(), fraction).view(g.shape) for name, g in gradients.items()}
    if scope != "global":
        raise UserError(f"scope must be 'global' or 'component', not {scope!r}")
    device = next(iter(gradients.values())).device
    flat = torch.cat([g.detach().abs().flatten().to(device=device, dtype=torch.float32) for g in gradients.values()])
    selected = _top_of(flat, fraction)
    mask, start = {}, 0
    for name, g in gradients.items():
        mask[name] = selected[start : start + g.numel()].view(g.shape).to(g.device)
        start += g.numel()
    return mask


def _top_of(values: Tensor, fraction: float) -> Tensor:
    k = max(1, round(fraction * values.numel()))
    chosen = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    chosen[torch.topk(values.nan_to_num(nan=-1.0), k, sorted=False).indices] = True
    return chosen


def random_mask(like: Mask, seed: int = 0) -> Mask:
    """A mask with the same number of selected weights in each parameter as `like`, at random places."""
    _check_nonempty(like, "mask")
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in like.items():
        chosen = torch.zeros(m.numel(), dtype=torch.bool)
        chosen[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[name] = chosen.view(m.shape).to(m.device)
    return out


def mask_size(mask: Mask) -> int:
    """Number of selected weights."""
    return int(sum(int(m.sum()) for m in mask.values()))


def _layer_and_tags(name: str) -> tuple[int | None, set[str]]:
    """Layer index (None outside the blocks) and the component names a parameter answers to."""
    found = _BLOCK_PARAM.match(name)
    if found:
        layer, module, param = found.groups()
        return int(layer), {module, param, param.lstrip("_")}
    return None, {name.split(".")[0], name}


def restrict_mask(
    mask: Mask,
    layers: Iterable[int] | None = None,
    components: Iterable[str] | None = None,
    head: int | None = None,
) -> Mask:
    """Keep only the selected weights inside the given layers, components and/or attention head.

    components are module names ("attn", "mlp") or weight names ("W_V", "W_in", "b_Q", "embed");
    head keeps only that head's slice of the per-head attention parameters (W_Q, W_K, W_V, W_O and
    their biases) and drops everything else. Keys and shapes stay the same; the rest is False.
    """
    _check_nonempty(mask, "mask")
    parsed = {name: _layer_and_tags(name) for name in mask}
    if layers is not None:
        layers = set(int(x) for x in layers)
        known = {layer for layer, _ in parsed.values() if layer is not None}
        if not layers <= known:
            raise UserError(f"layers {sorted(layers - known)} are not in the mask (its layers: {sorted(known)})")
    if components is not None:
        components = set(components)
        known_tags = set().union(*(tags for _, tags in parsed.values()))
        if not components <= known_tags:
            raise UserError(f"unknown components {sorted(components - known_tags)}; use one of {sorted(known_tags)}")
    out = {}
    for name, m in mask.items():
        layer, tags = parsed[name]
        keep = (layers is None or layer in layers) and (components is None or bool(tags & components))
        kept = m.clone() if keep else torch.zeros_like(m)
        if head is not None:
            kept = _only_head(name, kept, head)
        out[name] = kept
    return out


def _only_head(name: str, m: Tensor, head: int) -> Tensor:
    param = name.rsplit(".", 1)[-1]
    if param not in _HEAD_AXIS_PARAMS or ".attn." not in name:
        return torch.zeros_like(m)
    if not 0 <= head < m.shape[0]:
        raise UserError(f"head {head} out of range: {name} has {m.shape[0]} heads")
    only = torch.zeros_like(m)
    only[head] = m[head]
    return only


def count_by_parameter(mask: Mask) -> dict[str, int]:
    """Selected weights per parameter (only those with at least one)."""
    return {name: int(m.sum()) for name, m in mask.items() if bool(m.any())}

