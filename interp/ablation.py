"""Head ablation: knock out one head's output at a time and see what MEM and NMEM paragraphs lose.

Zero ablation sets a head's z (its output before W_O) to 0 at every position; mean ablation sets
it to its mean, per position, over a fixed REFERENCE set of paragraphs that is not scored (so a
paragraph's effect does not depend on what else is in the call, and never includes itself). All
(head, paragraph) variants run stacked in batched forwards (the patching engine with a constant
source). A head that matters for memorization raises MEM continuation NLL (and drops MEM EM)
more than NMEM's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.backend import Model, act_name, capture
from interp.data import Paragraphs
from interp.errors import UserError
from interp.metrics import continuation_log_probs, em_from_hits
from interp.patching import all_cells, patch_variants

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
    batch_size: int = 64,
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
        if reference is None or len(reference) == 0:
            raise UserError(
                "mean ablation needs reference paragraphs (not scored) to take the mean over: pass reference="
            )
        if (reference.prefix_len, reference.seq_len) != shape:
            raise UserError(
                "reference paragraphs must have the same prefix and continuation lengths as the scored ones"
            )
        shared = set(reference.ids) & set(ids)
        if shared:
            raise UserError(f"reference paragraphs must not be scored too; shared ids: {sorted(shared)[:5]}")
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
    means = _reference_means(model, reference, batch_size) if "mean" in modes else None
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


def _reference_means(model: Model, reference: Paragraphs, batch_size: int) -> list[Tensor]:
    """Per layer, the mean over the reference paragraphs of every head's z, per position: [1, pos, head, d_head]."""
    names = {act_name("z", layer) for layer in range(model.cfg.n_layers)}
    sums: list[Tensor] = []
    for start in range(0, len(reference), batch_size):
        tokens = reference.tokens[start : start + batch_size].to(model.cfg.device)
        _, cache = capture(model, tokens, names)
        parts = [cache["z", layer].double().sum(0, keepdim=True) for layer in range(model.cfg.n_layers)]
        sums = parts if not sums else [a + b for a, b in zip(sums, parts)]
    return [(s / len(reference)).to(model.cfg.dtype) for s in sums]
