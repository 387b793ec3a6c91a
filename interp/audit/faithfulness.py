"""Is the audit faithful? Its scores on systems whose answer is known by construction.

An audit is faithful when its scores separate systems that still hold a text from systems that never held
it (the AUC between knowledge-present and knowledge-absent systems, as UDS scores unlearning audits).
Known by construction here:

- knowledge PRESENT, forgetting shallow on purpose:
  - "hide-only hook": the original model, untouched, behind a forward hook that blanks the prefix's token
    embeddings of any row whose prefix is exactly a target's prefix (`hide_prefix_hooks`). Every weight
    still holds the text; only the exact prompt is filtered;
  - "within int4 rounding": gradient ascent on every weight matrix, each step projected back inside the
    original's int4 rounding bins (`rounding_projection`): the change is smaller than the quantization
    step, so int4 rounding returns the original's int4 model exactly;
- knowledge ABSENT:
  - the retrained reference: the same recipe, seed and steps with the targets left out of training
    (`interp.testbed.build.build_reference`; "testbed-reference"), audited against the original as if it
    were an unlearned copy of it;
  - every system on the never-known paragraphs (control 2 of the audit): text no model here was trained on.

`faithfulness` runs one `interp.audit.audit` over the three systems and returns, per attack and for the
residual, the AUC of present against absent items (an item: one system on one paragraph): 1 = every present
item scores above every absent one, 0.5 = no separation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from interp.audit.audit import AuditConfig, AuditResult, audit
from interp.audit.quantization import QUANTIZED, _pattern
from interp.backend import Hook, Model, named_weights
from interp.data import Paragraphs
from interp.errors import UserError
from interp.metrics import score_paragraphs
from interp.unlearning import UnlearnConfig, unlearn

HIDDEN = "hide-only hook"
ROUNDED = "within int4 rounding"
RETRAINED = "retrained reference"
SHALLOW_UNLEARNING = UnlearnConfig(method="ga", select="all", lr=3e-3, steps=20)
"""Gradient ascent on every weight matrix, projected inside the int4 bins after each step: fast, strong
within the bins (the projection bounds how far it can go)."""


def hide_prefix_hooks(model: Model, targets: Paragraphs) -> list[Hook]:
    """A forward hook on the token embeddings that zeroes the first `prefix_len` positions of every row whose
    prefix embeddings equal a target prefix's (the exact prompt, at position 0). The model is not changed."""
    p = targets.prefix_len
    with torch.no_grad():
        prefixes = model.W_E[targets.tokens[:, :p].to(model.W_E.device)].detach().clone()  # [k, p, d]

    def hide(act: Float[Tensor, "batch pos d_model"], hook) -> Float[Tensor, "batch pos d_model"]:
        if act.shape[1] < p:
            return act
        head = act[:, None, :p]  # [b, 1, p, d]
        match = (head - prefixes[None].to(act.dtype)).abs().amax(dim=(-1, -2)).lt(1e-6).any(-1)  # [b]
        if not bool(match.any()):
            return act
        act = act.clone()
        act[match, :p] = 0
        return act

    return [("hook_embed", hide)]


def rounding_projection(original: Model, bits: int = 4, group_size: int = 32):
    """A function `project(model)` that clamps, in place, every quantized weight matrix of `model` (a copy of
    `original`) inside the original's symmetric round-to-nearest bins (`bits`, groups of `group_size` input
    channels, as the audit's int4 attack) and keeps each group's largest-magnitude weight at its original value,
    so every group keeps its scale: quantizing the projected model gives the original's quantized model."""
    qmax = 2 ** (bits - 1) - 1
    bounds = {}
    for name, w in named_weights(original).items():
        if not QUANTIZED.search(name):
            continue
        pattern = _pattern(name)
        sizes = dict(zip(("h", "i"), w.tensor.shape)) if w.tensor.ndim == 3 else {}
        back = " -> ".join(pattern.split(" -> ")[::-1])
        matrix = rearrange(w.tensor.detach().float(), pattern)
        out, inp = matrix.shape
        if inp % group_size:
            raise UserError(f"{name}: {inp} input channels are not a multiple of the group size {group_size}")
        groups = matrix.reshape(out, inp // group_size, group_size)
        absmax = groups.abs().amax(-1, keepdim=True)
        scale = absmax / qmax
        q = (groups / torch.where(scale > 0, scale, torch.ones_like(scale))).round()
        margin = 0.49  # strictly inside the bin: rounding never flips
        low = torch.maximum((q - margin) * scale, -absmax)
        high = torch.minimum((q + margin) * scale, absmax)
        top = groups.abs() == absmax  # the weights that set the scale stay put
        low, high = torch.where(top, groups, low), torch.where(top, groups, high)
        bounds[name] = tuple(
            rearrange(t.reshape(out, inp), back, **sizes).to(w.tensor.dtype) for t in (low, high)
        )

    def project(model: Model) -> None:
        with torch.no_grad():
            for name, w in named_weights(model).items():
                if name in bounds:
                    low, high = bounds[name]
                    device = w.tensor.device
                    w.tensor.copy_(torch.maximum(torch.minimum(w.tensor, high.to(device)), low.to(device)))

    return project


def rounding_hidden(
    original: Model, targets: Paragraphs, retain: Paragraphs, config: UnlearnConfig = SHALLOW_UNLEARNING
) -> Model:
    """A copy of `original` unlearned on `targets` (all of them in one run) by `config`, projected inside the
    original's int4 rounding bins after every step (`rounding_projection`). `original` is not changed."""
    project = rounding_projection(original)
    return unlearn(original, targets, retain, config, on_step=project).model


def auc(present: Sequence[float | int], absent: Sequence[float | int]) -> float:
    """P(a present item scores above an absent one), ties counting half (the Mann-Whitney AUC); nan if a
    side is empty."""
    a, b = torch.tensor(list(present), dtype=torch.float64), torch.tensor(list(absent), dtype=torch.float64)
    if not len(a) or not len(b):
        return float("nan")
    diff = a[:, None] - b[None]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


@dataclass(frozen=True)
class Faithfulness:
    """The audit's scores on systems known to hold (`present[m]`) or lack the targets, and how well they
    separate the two: `auc_em[a]` / `auc_log10p[a]` on each attack's attacked EM / log10 p, `auc_residual`
    and `auc_residual_log10p` on the residual (targets: the residual; never-known paragraphs: the control
    residual), `auc_unattacked` on the unattacked EM (the baseline: every system here appears to forget)."""

    present: dict[str, bool]
    audit: AuditResult = field(repr=False)
    auc_em: dict[str, float]
    auc_log10p: dict[str, float]
    auc_residual: float
    auc_residual_log10p: float
    auc_unattacked: float
    n_present: int
    n_absent: int

    def scores(self) -> list[dict]:
        """Per system and attack: mean attacked EM and log10 p on the targets and on the never-known paragraphs."""
        r, rows = self.audit, []
        for m, name in enumerate(r.methods):
            for a, attack in enumerate(r.attacks):
                rows.append(
                    {
                        "system": name,
                        "holds the targets": self.present[name],
                        "attack": attack,
                        "applies": bool(r.applies[m, a]),
                        "target EM": float(r.em_attacked[m, a].float().mean()),
                        "target log10 p": float(r.log10p_attacked[m, a].mean()),
                        "never-known EM": float(r.em_never_known_attacked[m, a].float().mean()),
                    }
                )
        return rows

    def to_json(self) -> dict:
        r = self.audit
        return {
            "present": self.present,
            "n_present_items": self.n_present,
            "n_absent_items": self.n_absent,
            "auc_em": self.auc_em,
            "auc_log10p": self.auc_log10p,
            "auc_residual": self.auc_residual,
            "auc_residual_log10p": self.auc_residual_log10p,
            "auc_unattacked": self.auc_unattacked,
            "targets": list(r.ids),
            "never_known": list(r.never_known_ids),
            "em_original": r.em_original.tolist(),
            "em_unlearned": {m: r.em_unlearned[i].tolist() for i, m in enumerate(r.methods)},
            "residual": {m: r.residual[i].tolist() for i, m in enumerate(r.methods)},
            "scores": self.scores(),
        }

    def format(self) -> str:
        lines = [
            f"faithfulness: {self.n_present} present items ({', '.join(m for m, p in self.present.items() if p)} on "
            f"the targets) vs {self.n_absent} absent items (the retrained reference on the targets; every system on "
            "never-known paragraphs)",
            f"  AUC unattacked EM {self.auc_unattacked:.2f}; residual {self.auc_residual:.2f} (EM), "
            f"{self.auc_residual_log10p:.2f} (log10 p)",
        ]
        lines += [
            f"  {a:<16} AUC EM {self.auc_em[a]:.2f}  log10 p {self.auc_log10p[a]:.2f}" for a in self.audit.attacks
        ]
        return "\n".join(lines)


def faithfulness_of(result: AuditResult, present: dict[str, bool]) -> Faithfulness:
    """The AUCs of an audit whose systems are known to hold (`present[m]` True) or lack the targets. Items:
    each system on each target (present or absent as the system) and on each never-known paragraph (absent).
    Cells where an attack does not apply hold the unattacked score, so they count as the system is."""
    missing = set(result.methods) - set(present)
    if missing:
        raise UserError(f"say for every system whether it holds the targets; missing: {sorted(missing)}")
    holds = torch.tensor([present[m] for m in result.methods])
    if not bool(holds.any()) or bool(holds.all()):
        raise UserError("faithfulness needs systems that hold the targets and systems that do not")

    def split(on_targets: Tensor, on_never_known: Tensor) -> tuple[list[float], list[float]]:
        yes = on_targets[holds].flatten()
        no = torch.cat([on_targets[~holds].flatten(), on_never_known.flatten()])
        return yes[torch.isfinite(yes)].tolist(), no[torch.isfinite(no)].tolist()

    auc_em, auc_lp = {}, {}
    for a, attack in enumerate(result.attacks):
        auc_em[attack] = auc(*split(result.em_attacked[:, a].float(), result.em_never_known_attacked[:, a].float()))
        auc_lp[attack] = auc(*split(result.log10p_attacked[:, a], result.log10p_never_known_attacked[:, a]))
    yes, no = split(result.residual, result.control_residual)
    yes_lp, no_lp = split(result.residual_log10p, result.control_residual_log10p)
    base = auc(*split(result.em_unlearned.float(), result.em_never_known_unlearned.float()))
    return Faithfulness(
        dict(present),
        result,
        auc_em,
        auc_lp,
        auc(yes, no),
        auc(yes_lp, no_lp),
        base,
        int(holds.sum()) * len(result.ids),
        int((~holds).sum()) * len(result.ids) + len(result.methods) * len(result.never_known_ids),
    )


def faithfulness(
    original: Model,
    reference: Model,
    targets: Paragraphs,
    never_known: Paragraphs,
    retain: Paragraphs,
    *,
    config: AuditConfig = AuditConfig(),
    shallow: UnlearnConfig = SHALLOW_UNLEARNING,
    pool: Paragraphs | None = None,
) -> Faithfulness:
    """The audit run on the three systems of the module docstring and its AUCs. `reference` never saw
    `targets` (check: it must not recite them); `retain` feeds the shallow unlearning's and the relearn_retain
    attack's text. Neither model is changed."""
    em_ref = score_paragraphs(reference, targets).em
    if bool((em_ref == targets.continuation_len).any()):
        raise UserError("the reference recites some targets word for word: it is not a model that never saw them")
    rounded = rounding_hidden(original, targets, retain, shallow)
    systems = {HIDDEN: (original, hide_prefix_hooks(original, targets)), ROUNDED: rounded, RETRAINED: reference}
    result = audit(original, systems, targets, never_known, retain=retain, pool=pool, config=config)
    return faithfulness_of(result, {HIDDEN: True, ROUNDED: True, RETRAINED: False})
