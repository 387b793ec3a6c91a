"""Boolean weight masks: the top fraction of weights by |gradient|, random baselines, restrictions.

A mask is a dict keyed by TransformerLens parameter names (`blocks.1.attn.W_V`) whose values are
boolean tensors of the parameter's shape; later steps fine-tune only the selected weights.

Restrict FIRST, then select: `candidate_mask` says which weights may be chosen (layers,
components, one head), and `top_k_mask(..., candidates=...)` takes the top fraction OF THOSE, as
the paper's code does ("top 0.1% within head 1.2" = 0.1% of that head's weights). Two random
baselines: `uniform_random_mask` draws the same fraction uniformly over the candidates (the
paper's control), `matched_random_mask` keeps a given mask's count in every tensor and moves
only the places (a stricter control: same tensors, different weights).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from jaxtyping import Bool
from torch import Tensor

from interp.constants import SCOPES
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


def candidate_mask(
    params: dict[str, Tensor],
    *,
    layers: Iterable[int] | None = None,
    components: Iterable[str] | None = None,
    head: int | None = None,
) -> Mask:
    """Every weight of `params` that lies in the given layers, components and/or head (all when None)."""
    _check_nonempty(params, "parameter")
    full = {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
    if layers is None and components is None and head is None:
        return full
    return restrict_mask(full, layers=layers, components=components, head=head)


def top_k_mask(
    gradients: dict[str, Tensor], fraction: float = 0.001, scope: str = "global", *, candidates: Mask | None = None
) -> Mask:
    """Select the `fraction` of weights with the largest |value| (gradients or any scores).

    scope="global": one ranking over all candidate weights at once, so some parameters may get no
    weight at all; scope="component": the top fraction of each parameter's candidates separately.
    Exactly max(1, round(fraction * n)) weights are selected per ranking, n = the number of
    candidates (every weight when `candidates` is None); ties broken by position.
    """
    _check_nonempty(gradients, "gradients")
    _check_fraction(fraction)
    allowed = _candidates_for(gradients, candidates)
    if scope == "component":
        out = {}
        for name, g in gradients.items():
            ok = allowed[name].flatten()
            out[name] = (
                _top_of(g.detach().abs().flatten(), fraction, ok).view(g.shape)
                if ok.any()
                else torch.zeros_like(ok).view(g.shape)
            )
        return out
    if scope not in SCOPES:
        raise UserError(f"scope must be 'global' or 'component', not {scope!r}")
    device = next(iter(gradients.values())).device
    flat = torch.cat([g.detach().abs().flatten().to(device=device, dtype=torch.float32) for g in gradients.values()])
    ok = torch.cat([allowed[name].flatten().to(device) for name in gradients])
    if not ok.any():
        raise UserError(
            "no candidate weights: the restriction (layers / components / head) selects none of these parameters"
        )
    return _unflatten(_top_of(flat, fraction, ok), gradients)


def uniform_random_mask(candidates: Mask, fraction: float = 0.001, *, seed: int = 0) -> Mask:
    """max(1, round(fraction * n)) weights drawn uniformly among the n candidate weights (the paper's control)."""
    _check_nonempty(candidates, "candidate mask")
    _check_fraction(fraction)
    flat = torch.cat([m.flatten().cpu() for m in candidates.values()])
    pool = flat.nonzero().flatten()
    if len(pool) == 0:
        raise UserError("no candidate weights to draw a random mask from")
    k = max(1, round(fraction * len(pool)))
    chosen = torch.zeros_like(flat)
    chosen[pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:k]]] = True
    return _unflatten(chosen, candidates)


def matched_random_mask(like: Mask, *, seed: int = 0, candidates: Mask | None = None) -> Mask:
    """As many weights as `like` selects in each parameter, at random places among that parameter's candidates."""
    _check_nonempty(like, "mask")
    allowed = _candidates_for(like, candidates)
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in like.items():
        pool = allowed[name].flatten().cpu().nonzero().flatten()
        chosen = torch.zeros(m.numel(), dtype=torch.bool)
        chosen[pool[torch.randperm(len(pool), generator=generator)[: int(m.sum())]]] = True
        out[name] = chosen.view(m.shape).to(m.device)
    return out


def _check_fraction(fraction: float) -> None:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise UserError(f"fraction must be in (0, 1], got {fraction!r} (0.001 = the top 0.1%)")


def _candidates_for(tensors: dict[str, Tensor], candidates: Mask | None) -> Mask:
    if candidates is None:
        return {name: torch.ones(t.shape, dtype=torch.bool, device=t.device) for name, t in tensors.items()}
    missing = set(tensors) - set(candidates)
    if missing:
        raise UserError(f"the candidate mask has no entry for {sorted(missing)[:3]}")
    return {name: candidates[name].to(t.device) for name, t in tensors.items()}


def _unflatten(flat: Tensor, like: dict[str, Tensor]) -> Mask:
    mask, start = {}, 0
    for name, t in like.items():
        mask[name] = flat[start : start + t.numel()].view(t.shape).to(t.device)
        start += t.numel()
    return mask


def _top_of(values: Tensor, fraction: float, allowed: Tensor) -> Tensor:
    k = max(1, round(fraction * int(allowed.sum())))
    chosen = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    ranked = values.nan_to_num(nan=-1.0).masked_fill(~allowed, float("-inf"))
    chosen[torch.topk(ranked, k, sorted=False).indices] = True
    return chosen


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
