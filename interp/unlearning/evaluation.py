"""Scoring a model before and after unlearning: the targets and fixed collateral-damage probes.

`evaluate` scores one model on the targets and on fixed probe sets (`probe_sets`): other MEM
paragraphs, NMEM paragraphs against the original model's own greedy continuation (the paper's
collateral measure, full length = unchanged) and held-out text perplexity, in one batched pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.backend import Hook, Model, hooks_on
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.io import float_from_json, tensor_from_json
from interp.metrics import Scorable, greedy_continuations, score_paragraphs


@dataclass(frozen=True)
class Probe:
    """Fixed collateral-damage probes, built once from the ORIGINAL model.

    `nmem` carries the original model's own greedy continuations, so its EM is 50 (full length)
    before any edit; `heldout` is text never trained on, for perplexity."""

    mem: Paragraphs
    nmem: Paragraphs
    heldout: Paragraphs


def probe_sets(
    model: Model, mem: Paragraphs, nmem: Paragraphs, heldout: Paragraphs, *, batch_size: int = BATCH_SIZE
) -> Probe:
    """The probes, with NMEM continuations replaced by the model's own greedy decoding."""
    greedy = greedy_continuations(model, nmem.prefixes, nmem.continuation_len, batch_size=batch_size)
    return Probe(mem=mem, nmem=nmem.with_continuations(greedy), heldout=heldout)


@dataclass(frozen=True)
class Evaluation:
    """One model's scores: targets (and edit targets), probe MEM / NMEM EM, held-out perplexity."""

    target_ids: tuple[str, ...]
    target_em: Int[Tensor, "n_target"]
    target_nll: Float[Tensor, "n_target"]
    target_log10p: Float[Tensor, "n_target"]  # log10 of the probability that sampling reproduces the continuation
    edit_em: Int[Tensor, "n_edit"]  # EM against the NEW continuation (empty unless edit targets were given)
    mem_ids: tuple[str, ...]
    mem_em: Int[Tensor, "n_mem"]
    nmem_em: Int[Tensor, "n_nmem"]  # against the original model's greedy continuation
    heldout_ppl: float  # exp(mean continuation NLL) on held-out paragraphs; nan without a probe

    def other_mem_em(self) -> float:
        """Mean EM of the probe MEM paragraphs that are not targets (nan when there are none)."""
        keep = torch.tensor([i not in set(self.target_ids) for i in self.mem_ids], dtype=torch.bool)
        return float(self.mem_em[keep].float().mean()) if bool(keep.any()) else float("nan")

    def summary(self) -> dict:
        """Means over paragraphs (nan for an empty set)."""
        return {
            "target_em": _mean(self.target_em),
            "target_nll": _mean(self.target_nll),
            "target_log10p": _mean(self.target_log10p),
            "edit_em": _mean(self.edit_em),
            "other_mem_em": self.other_mem_em(),
            "nmem_em": _mean(self.nmem_em),
            "heldout_ppl": self.heldout_ppl,
        }

    def to_json(self) -> dict:
        return {
            **self.summary(),
            "targets": [
                {"id": i, "em": int(e), "nll": float(n), "log10p": float(lp)}
                for i, e, n, lp in zip(
                    self.target_ids, self.target_em.tolist(), self.target_nll.tolist(), self.target_log10p.tolist()
                )
            ],
            "edit_em_per_target": self.edit_em.tolist(),
            "mem_ids": list(self.mem_ids),
            "mem_em": self.mem_em.tolist(),
            "nmem_em": self.nmem_em.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> Evaluation:
        """The scores `to_json` wrote (EM back as int64, NLL and log10 p as float32, nulls as NaN); the means
        written beside them are recomputed from these."""
        targets = data["targets"]
        return cls(
            target_ids=tuple(t["id"] for t in targets),
            target_em=torch.tensor([t["em"] for t in targets], dtype=torch.long),
            target_nll=tensor_from_json([t["nll"] for t in targets], torch.float32),
            target_log10p=tensor_from_json([t["log10p"] for t in targets], torch.float32),
            edit_em=torch.tensor(data["edit_em_per_target"], dtype=torch.long),
            mem_ids=tuple(data["mem_ids"]),
            mem_em=torch.tensor(data["mem_em"], dtype=torch.long),
            nmem_em=torch.tensor(data["nmem_em"], dtype=torch.long),
            heldout_ppl=float_from_json(data["heldout_ppl"]),
        )


def _mean(values: Tensor) -> float:
    return float(values.float().mean()) if values.numel() else float("nan")


def _concat(parts: Sequence[Paragraphs]) -> Paragraphs:
    tokens = torch.cat([p.tokens.cpu() for p in parts])
    return Paragraphs(tokens, parts[0].prefix_len, tuple(str(i) for i in range(tokens.shape[0])))


@torch.no_grad()
def evaluate(
    model: Scorable,
    targets: Paragraphs,
    probe: Probe | None = None,
    *,
    edit_targets: Paragraphs | None = None,
    hooks: Sequence[Hook] = (),
    batch_size: int = BATCH_SIZE,
) -> Evaluation:
    """Score targets, edit targets and the probes in one batched teacher-forced pass (with `hooks` on).

    `model` may be a `LogitModel` with a `hooks` context manager, such as proxy.ProxyModel."""
    empty = targets.select(torch.zeros(len(targets), dtype=torch.bool))
    parts = [targets, edit_targets or empty]
    if probe is not None:
        parts += [probe.mem, probe.nmem, probe.heldout]
    if len({p.seq_len for p in parts if len(p)}) > 1 or len({p.prefix_len for p in parts}) > 1:
        raise UserError("targets, edit targets and probe paragraphs must share prefix and continuation lengths")
    with hooks_on(model, hooks):
        scores = score_paragraphs(model, _concat(parts), batch_size=batch_size)
    bounds = torch.tensor([0] + [len(p) for p in parts]).cumsum(0).tolist()
    em = [scores.em[a:b] for a, b in zip(bounds, bounds[1:])]
    nll = [scores.nll[a:b] for a, b in zip(bounds, bounds[1:])]
    have = probe is not None
    return Evaluation(
        target_ids=targets.ids,
        target_em=em[0],
        target_nll=nll[0],
        target_log10p=scores.log10_p[: len(targets)].float(),
        edit_em=em[1],
        mem_ids=probe.mem.ids if have else (),
        mem_em=em[2] if have else em[1][:0],
        nmem_em=em[3] if have else em[1][:0],
        heldout_ppl=float(nll[4].mean().exp()) if have and len(probe.heldout) else float("nan"),
    )
