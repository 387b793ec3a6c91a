"""Ablation, one unit at a time: zero-out or mean, heads or MLP neurons; one module for both uses.

Zero ablation (MemPi's `fast_zero_out_vector`) sets a unit's output to 0 at every position; mean
ablation sets it to its per-position mean over a fixed REFERENCE set of paragraphs that is never
scored (so a paragraph's effect does not depend on what else is in the call, and never includes
itself). Both uses share the reference set's checks and means:
- `head_ablation`: every head, EM and continuation NLL of every MEM and NMEM paragraph, per mode (the
  report's head-ablation figure); all (head, paragraph) variants run stacked in batched forwards (the
  patching engine with a constant source);
- `unit_ablation`: the locator's `zero_out` / `ablation` methods, a score per unit = the MEM continuation
  NLL increase minus NMEM's (MemPi scores the target alone), optionally only for some units (`units`,
  the candidates of a screen; the rest score NaN). Each variant runs from the cached residual stream of
  its unit's layer with logits only at the continuation positions: a head's z is overwritten by a hook;
  for a neuron, overwriting activation a_i by s_i changes the layer's output by (s_i - a_i) W_out[i] and
  nothing else in that layer, so the run starts at the NEXT layer from the cached residual stream plus
  that difference (no hook, one layer less per variant).
A head that matters for memorization raises MEM continuation NLL (and drops MEM EM) more than NMEM's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.backend import Model, act_name, capture, final_norm, hooks_on, run_from, unembed, weight
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.locator.patching import all_cells, patch_variants
from interp.locator.units import MethodCall, Stopwatch, UnitScores, check_unit, unit_count, unit_hook
from interp.metrics import continuation_log_probs, em_from_hits

MODES = ("zero", "mean")


@dataclass(frozen=True)
class HeadAblation:
    """EM and continuation NLL of every paragraph with each head ablated, per mode.

    `em[m, l, h, i]`, `nll[m, l, h, i]`: mode `modes[m]`, head (l, h), paragraph i; `is_mem[i]`
    marks MEM paragraphs (the rest are NMEM); `base_em`, `base_nll` without ablation.
    """

    ids: tuple[str, ...]
    modes: tuple[str, ...]
    reference_ids: tuple[str, ...]  # the paragraphs the mean was taken over (empty for zero ablation only)
    is_mem: Bool[Tensor, "n"]
    base_em: Int[Tensor, "n"]
    base_nll: Float[Tensor, "n"]
    em: Int[Tensor, "mode layer head n"]
    nll: Float[Tensor, "mode layer head n"]

    def _mean(self, values: Tensor, mem: bool) -> Tensor:
        rows = self.is_mem if mem else ~self.is_mem
        return values[..., rows].float().mean(-1)

    def em_drop(self, mem: bool = True) -> Float[Tensor, "mode layer head"]:
        """Mean EM lost over the MEM (or NMEM) paragraphs."""
        return self._mean(self.base_em - self.em, mem)

    def nll_increase(self, mem: bool = True) -> Float[Tensor, "mode layer head"]:
        return self._mean(self.nll - self.base_nll, mem)

    def effect(self, mode: str = "mean") -> Float[Tensor, "layer head"]:
        """MEM-specific damage: NLL increase on MEM minus that on NMEM (NMEM counts 0 if absent)."""
        m = self.modes.index(mode)
        nmem = self.nll_increase(False)[m] if (~self.is_mem).any() else 0.0
        return self.nll_increase(True)[m] - nmem

    def to_json(self) -> dict:
        out: dict = {
            "modes": self.modes,
            "n_mem": int(self.is_mem.sum()),
            "n_nmem": int((~self.is_mem).sum()),
            "n_reference": len(self.reference_ids),
        }
        for group, mem in (("mem", True), ("nmem", False)):
            if (self.is_mem == mem).any():
                out[f"{group}_em_drop"] = dict(zip(self.modes, self.em_drop(mem)))
                out[f"{group}_nll_increase"] = dict(zip(self.modes, self.nll_increase(mem)))
        out["effect"] = {mode: self.effect(mode) for mode in self.modes}
        return out


@torch.no_grad()
def head_ablation(
    model: Model,
    mem: Paragraphs,
    nmem: Paragraphs | None = None,
    *,
    reference: Paragraphs | None = None,
    modes: tuple[str, ...] = MODES,
    batch_size: int = BATCH_SIZE,
) -> HeadAblation:
    """Ablate each head in turn (zero and/or mean), scoring MEM and NMEM paragraphs in the same forwards.

    Mean ablation needs `reference`: paragraphs of the same lengths, disjoint from the scored ones,
    whose per-position mean of each head's z replaces the head's output."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"unknown ablation mode {bad[0] if bad else None!r}: use any of {', '.join(MODES)}")
    if len(mem) == 0:
        raise UserError("head ablation needs at least one MEM paragraph")
    shape = (mem.prefix_len, mem.seq_len)
    if nmem is not None and (nmem.prefix_len, nmem.seq_len) != shape:
        raise UserError("MEM and NMEM paragraphs must have the same prefix and continuation lengths")
    ids = mem.ids + (() if nmem is None else nmem.ids)
    if "mean" in modes:
        _check_reference(reference, shape, ids)
    tokens = mem.tokens if nmem is None else torch.cat([mem.tokens, nmem.tokens])
    tokens = tokens.to(model.cfg.device)
    is_mem = torch.arange(len(tokens)) < len(mem)
    p, n_layers = mem.prefix_len, model.cfg.n_layers
    names = {act_name(a, layer) for a in ("z", "resid_pre") for layer in range(n_layers)}
    logits, cache = capture(model, tokens, names)
    logits = logits.float()
    base_hits = logits[:, p - 1 : -1].argmax(-1) == tokens[:, p:]
    base_em = em_from_hits(base_hits).cpu()
    base_nll = (-continuation_log_probs(logits, tokens, p)).mean(1).cpu()
    resid = [cache["resid_pre", layer] for layer in range(n_layers)]
    z = [cache["z", layer] for layer in range(n_layers)]
    means = [m[None] for m in _reference_means(model, reference, "head", batch_size)] if "mean" in modes else None
    cells = all_cells(model, "head_out", tokens.shape[1])
    ems, nlls = [], []
    for mode in modes:
        source = [torch.zeros_like(a) if mode == "zero" else means[layer].expand_as(a) for layer, a in enumerate(z)]
        logp, hits = patch_variants(model, tokens, p, "head_out", cells, source, resid, batch_size)
        ems.append(em_from_hits(hits.flatten(0, 1)).view(n_layers, -1, len(tokens)))
        nlls.append((-logp.mean(-1)).view(n_layers, -1, len(tokens)).float())
    reference_ids = reference.ids if "mean" in modes else ()
    return HeadAblation(
        ids, tuple(modes), reference_ids, is_mem, base_em, base_nll, torch.stack(ems), torch.stack(nlls)
    )


def unit_ablation(
    model: Model,
    mem: Paragraphs,
    nmem: Paragraphs | None = None,
    *,
    unit: str = "head",
    mode: str = "zero",
    reference: Paragraphs | None = None,
    units: Int[Tensor, "k 2"] | None = None,
    batch_size: int = BATCH_SIZE,
) -> UnitScores:
    """Ablate each unit (or each of `units`) in turn; score = MEM NLL increase (minus NMEM's when given)."""
    check_unit(unit)
    if mode not in MODES:
        raise UserError(f"unknown ablation mode {mode!r}: use 'zero' or 'mean'")
    if len(mem) == 0:
        raise UserError("unit ablation needs at least one MEM paragraph")
    scored = mem.ids + (nmem.ids if nmem is not None else ())
    if nmem is not None and (nmem.prefix_len, nmem.seq_len) != (mem.prefix_len, mem.seq_len):
        raise UserError("MEM and NMEM paragraphs must have the same prefix and continuation lengths")
    means = None
    if mode == "mean":
        _check_reference(reference, (mem.prefix_len, mem.seq_len), scored)
    n_layers, n_units = model.cfg.n_layers, unit_count(model, unit)
    if units is None:
        layers, index = torch.meshgrid(torch.arange(n_layers), torch.arange(n_units), indexing="ij")
        units = torch.stack([layers.flatten(), index.flatten()], 1)
    units = torch.as_tensor(units, dtype=torch.long).cpu()
    clock = Stopwatch()
    if mode == "mean":
        means = _reference_means(model, reference, unit, batch_size)
    increase = _nll_increase(model, mem, unit, units, means, batch_size).mean(1)
    if nmem is not None and len(nmem):
        increase = increase - _nll_increase(model, nmem, unit, units, means, batch_size).mean(1)
    score = torch.full((n_layers, n_units), float("nan"))
    score[units[:, 0], units[:, 1]] = increase
    method = "zero_out" if mode == "zero" else "ablation"
    return UnitScores(
        method,
        unit,
        score,
        clock.seconds,
        {
            "mode": mode,
            "contrast": nmem is not None and len(nmem) > 0,
            "n_units_scored": len(units),
            "n_reference": 0 if means is None else len(reference),
        },
    )


def run_ablation(call: MethodCall) -> UnitScores:
    """The registry's runner of mean ablation ("ablation", over `call.reference`) and zero ablation ("zero_out")."""
    mode = "mean" if call.method == "ablation" else "zero"
    if mode == "mean" and call.reference is None:
        raise UserError(
            "mean ablation (--methods ablation) averages each unit's output over paragraphs that are not scored, "
            "and none is left: pass a reference file (--reference FILE, reference=), more paragraphs "
            "(--paragraphs), or use zero ablation instead (--methods zero_out)"
        )
    return unit_ablation(
        call.model,
        call.mem,
        call.nmem,
        unit=call.unit,
        mode=mode,
        reference=call.reference if mode == "mean" else None,
        units=call.units,
        batch_size=call.batch_size,
    )


def _check_reference(reference: Paragraphs | None, shape: tuple[int, int], scored: tuple[str, ...]) -> None:
    """UserError unless `reference` holds paragraphs of the scored ones' prefix and total lengths, none of them scored."""
    if reference is None or len(reference) == 0:
        raise UserError(
            "mean ablation needs reference paragraphs (never scored) to take the mean over: pass reference="
        )
    if (reference.prefix_len, reference.seq_len) != shape:
        raise UserError("reference paragraphs must have the scored paragraphs' prefix and continuation lengths")
    shared = set(reference.ids) & set(scored)
    if shared:
        raise UserError(f"reference paragraphs must not be scored too; shared ids: {sorted(shared)[:5]}")


@torch.no_grad()
def _reference_means(model: Model, reference: Paragraphs, unit: str, batch_size: int) -> list[Tensor]:
    """Per layer, the per-position mean of every unit's output over the reference paragraphs: [pos, head, d_head] or [pos, d_mlp]."""
    names = {unit_hook(unit, layer) for layer in range(model.cfg.n_layers)}
    sums: list[Tensor] = []
    for start in range(0, len(reference), batch_size):
        tokens = reference.tokens[start : start + batch_size].to(model.cfg.device)
        _, cache = capture(model, tokens, names)
        parts = [cache[unit_hook(unit, layer)].double().sum(0) for layer in range(model.cfg.n_layers)]
        sums = parts if not sums else [a + b for a, b in zip(sums, parts)]
    return [(s / len(reference)).to(model.cfg.dtype) for s in sums]


@torch.no_grad()
def _nll_increase(
    model: Model,
    paragraphs: Paragraphs,
    unit: str,
    units: Tensor,
    means: list[Tensor] | None,
    batch_size: int,
) -> Float[Tensor, "k n"]:
    """Continuation NLL increase of every paragraph with each unit of `units` ablated."""
    n_layers, p = model.cfg.n_layers, paragraphs.prefix_len
    tokens = paragraphs.tokens.to(model.cfg.device)
    names = {act_name("resid_pre", layer) for layer in range(n_layers)} | {unit_hook(unit, l) for l in range(n_layers)}
    if unit == "neuron":
        names |= {act_name("resid_post", layer) for layer in range(n_layers)}
    logits, cache = capture(model, tokens, names)
    base = -continuation_log_probs(logits.float(), tokens, p).mean(-1)
    n = len(paragraphs)
    out = torch.empty(len(units), n)
    for layer in units[:, 0].unique().tolist():
        ids = (units[:, 0] == layer).nonzero().flatten()
        rows_unit = ids.repeat_interleave(n)
        rows_paragraph = torch.arange(n).repeat(len(ids))
        act = cache[unit_hook(unit, layer)]
        for start in range(0, len(rows_unit), batch_size):
            u = rows_unit[start : start + batch_size]
            b = rows_paragraph[start : start + batch_size].to(act.device)
            index = units[u, 1].to(act.device)
            rows = torch.arange(len(b), device=act.device)
            if unit == "head":
                source = (
                    torch.zeros_like(act[b][rows, :, index])
                    if means is None
                    else means[layer][:, index].transpose(0, 1)
                )

                def hook(z, hook, rows=rows, index=index, source=source):
                    z[rows, :, index] = source.to(z.dtype)
                    return z

                logp = tail_log_probs(
                    model, cache["resid_pre", layer][b], layer, tokens[b], p, [(unit_hook(unit, layer), hook)]
                )
            else:
                a = act[b][rows, :, index]  # [rows, pos]
                s = torch.zeros_like(a) if means is None else means[layer][:, index].T
                w_out = weight(model, layer, "W_out")[index]  # [rows, d_model]
                resid = cache["resid_post", layer][b] + (s - a)[..., None] * w_out[:, None, :]
                logp = tail_log_probs(model, resid, layer + 1, tokens[b], p)
            out[u, b.cpu()] = (-logp.mean(-1) - base[b]).cpu().float()
    return out


@torch.no_grad()
def tail_log_probs(
    model: Model,
    resid: Float[Tensor, "b seq d_model"],
    start_layer: int,
    tokens: Int[Tensor, "b seq"],
    prefix_len: int,
    fwd_hooks: list | None = None,
) -> Float[Tensor, "b cont"]:
    """Continuation log-probs of a run from the residual stream entering `start_layer` (unembedding only the
    positions that predict the continuation)."""
    n_layers = model.cfg.n_layers
    if start_layer < n_layers:
        with hooks_on(model, fwd_hooks or []):
            resid = run_from(model, resid, start_layer, n_layers)
    logits = unembed(model, final_norm(model, resid[:, prefix_len - 1 : -1])).float()
    target = tokens[:, prefix_len:].to(logits.device)
    return logits.log_softmax(-1).gather(-1, target[..., None]).squeeze(-1)
