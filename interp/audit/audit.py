"""The forgetting audit: is text "unlearned" by an edit really gone, or only hidden?

For each unlearned system (a weight-edited copy; the original with an intervention such as LoReFT; a
decoding-time ensemble, see interp.audit.systems) and each target paragraph, every attack's greedy EM and
extraction probability (log10 p of sampling the whole continuation), with three controls:

- control 1, the attack on the ORIGINAL model, on the targets: does the attack itself break recitation?
  An attack that lowers the original's mean EM by more than `BREAKS` of the continuation is flagged, and
  its recovery is also given against the original's attacked EM (what the attack could at best return);
- control 2, the same attack on the same UNLEARNED system, on paragraphs no model here recited
  (never-known: the testbed's held-out split, or a file), each paired with a target (control j with target
  j mod n) and given the dose its target gets (relearned in runs of as many paragraphs as the target's run,
  on its own prefix or its own document's text). Its mean gain is the attack's null, subtracted from each
  recovery; the same max over attacks computed on these paragraphs is the residual's null distribution;
- the donor control of restoration: a copy of the original fine-tuned to recite some never-known
  paragraphs, its activations restored into the original, window by window. Restoring activations can
  carry text the recipient never held; restoration's null is the larger of its control-2 gain and this
  donor gain, and restoration is labelled a diagnostic where that null is large.

Attacks (`ATTACKS`): int8 per channel, int4 symmetric in groups of 32 and 128, int4 with a zero point, NF4
(interp.audit.quantization); relearning on the prefix, the retain set or related text
(interp.audit.relearning); restoration of the original's activations (interp.audit.systems); the best of
K single-token prefix edits and of a few tokens of left context (interp.audit.prefixes). An attack that
cannot apply to a system (e.g. restoring the original into itself, int4 groups that do not divide a
matrix) is "n/a" with its reason, never a score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.audit.config import (  # noqa: F401 (public names kept here)
    ATTACKS,
    QUANTIZATIONS,
    REFERENCE,
    RESTORED,
    AuditConfig,
)
from interp.audit.prefixes import edit_attack, shift_attack, single_token_edits
from interp.audit.relearning import related_text
from interp.audit.scoring import best_of, best_option, score
from interp.audit.systems import (
    cannot_quantize,
    interventions,
    quantized_system,
    recite,
    relearned_system,
    restoration_target,
    restore_configs,
    restored,
)
from interp.backend import Model, copy_model
from interp.data import BATCH_SIZE, Paragraphs  # noqa: F401 (BATCH_SIZE: a name here before AuditConfig moved)
from interp.display import Displayed
from interp.errors import UserError
from interp.metrics import Scorable
from interp.position import filler_spans
from interp.restore import default_window, layer_windows
from interp.unlearning import Hook
from interp.unlearning.proxy import ProxyModel

BREAKS = 0.1  # control 1: an attack lowering the original's mean target EM by more than this share breaks it
DIAGNOSTIC = 0.1  # restoration's null at or above this share of the forgotten EM or log10 p: a diagnostic
Unlearned = Model | ProxyModel | tuple[Model | ProxyModel, Sequence[Hook]]


def median_interval(
    values: Float[Tensor, "n"], *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """The median of the finite values (the mean of the two middle ones when their number is even, not the
    lower one), a percentile bootstrap interval at `level`, and how many values there were."""
    x = values[~values.isnan()].double()
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    gen = torch.Generator().manual_seed(seed)
    draws = x[torch.randint(0, len(x), (n_boot, len(x)), generator=gen)].quantile(0.5, dim=1)
    lo, hi = draws.quantile(torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return float(x.quantile(0.5)), lo, hi, len(x)


def _share(gained: Tensor, lost: Tensor) -> Tensor:
    """clip(gained / lost, 0, 1), nan where nothing was lost."""
    return (gained / lost.where(lost > 0, torch.tensor(float("nan")))).clamp(0, 1)


def _max_applicable(recovery: Tensor, applies: Tensor) -> Tensor:
    """Max over attacks (dim 1) of the attacks that apply, nan where every value is nan."""
    masked = recovery.masked_fill(~applies[..., None], float("nan"))
    out = masked.nan_to_num(-1.0).max(1).values
    return out.masked_fill(out < 0, float("nan"))


@dataclass(frozen=True)
class AuditResult(Displayed):
    """Per method m, attack a and target paragraph i: EM and log10 p attacked, and the controls.

    `em_original_attacked[a, i]`: the original under attack a (control 1). `em_never_known_*[m, ..., j]`:
    method m's unlearned system on never-known paragraph j (paired with target `pairs[j]`), without and with
    each attack (control 2). `applies[m, a]`: whether attack a reached method m (`not_applicable` gives the
    reason where not; those cells hold the unlearned scores and count nowhere). `restore_null`: the donor
    control of restoration. `choices[method][attack]`: what the attack picked per target (restoration
    window, edited position, shift). `quantization_error[model][attack][tensor]` = ||w' - w||_F / ||w||_F;
    `weights_moved[model][attack]` = ||theta' - theta||_F / ||theta||_F of each relearning run."""

    _view = "interp.views.audit:figure_audit"

    ids: tuple[str, ...]
    never_known_ids: tuple[str, ...]
    methods: tuple[str, ...]
    attacks: tuple[str, ...]
    continuation_len: int
    em_original: Int[Tensor, "n"]
    log10p_original: Float[Tensor, "n"]
    em_unlearned: Int[Tensor, "m n"]
    log10p_unlearned: Float[Tensor, "m n"]
    em_attacked: Int[Tensor, "m a n"]
    log10p_attacked: Float[Tensor, "m a n"]
    em_original_attacked: Int[Tensor, "a n"]
    log10p_original_attacked: Float[Tensor, "a n"]
    em_never_known_unlearned: Int[Tensor, "m k"]
    em_never_known_attacked: Int[Tensor, "m a k"]
    log10p_never_known_attacked: Float[Tensor, "m a k"]
    log10p_never_known_unlearned: Float[Tensor, "m k"] | None = None
    pairs: Int[Tensor, "k"] | None = None  # the target each never-known paragraph is paired with
    applies: Bool[Tensor, "m a"] | None = None
    not_applicable: dict = field(default_factory=dict)  # method -> attack -> why it cannot apply
    restore_null: dict = field(default_factory=dict)  # method -> {"em": .., "log10p": ..} of the donor control
    choices: dict = field(default_factory=dict)
    quantization_error: dict = field(default_factory=dict)
    weights_moved: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, a, k = len(self.methods), len(self.attacks), len(self.never_known_ids)
        if self.applies is None:
            object.__setattr__(self, "applies", torch.ones(m, a, dtype=torch.bool))
        if self.pairs is None:
            object.__setattr__(self, "pairs", torch.arange(k) % max(1, len(self.ids)))
        if self.log10p_never_known_unlearned is None:
            object.__setattr__(self, "log10p_never_known_unlearned", torch.zeros(m, k))

    def _null(self, attacked: Tensor, unlearned: Tensor, key: str) -> Float[Tensor, "m a"]:
        gain = (attacked - unlearned[:, None]).float().mean(-1).clamp_min(0)
        if "restore" in self.attacks:
            r = self.attacks.index("restore")
            for m, method in enumerate(self.methods):
                donor = self.restore_null.get(method, {}).get(key)
                if donor is not None and not math.isnan(donor):
                    gain[m, r] = max(float(gain[m, r]), donor)
        return gain

    @property
    def never_known_gain(self) -> Float[Tensor, "m a"]:
        """Each attack's null on EM: the mean EM it adds to the never-known paragraphs on the same unlearned
        system (control 2), at least 0, and for restoration at least the donor control's gain. A negative
        mean (an attack that damages text in general) is not credited to the targets: a target already at
        EM 0 cannot fall further, so crediting it would invent recovery."""
        return self._null(self.em_never_known_attacked, self.em_never_known_unlearned, "em")

    @property
    def never_known_gain_log10p(self) -> Float[Tensor, "m a"]:
        """The same null on log10 p."""
        return self._null(self.log10p_never_known_attacked, self.log10p_never_known_unlearned, "log10p")

    @property
    def forgotten(self) -> Bool[Tensor, "m n"]:
        """Targets whose EM the unlearning lowered."""
        return self.em_unlearned < self.em_original

    def _recovery(self, attacked, unlearned, original, null) -> Tensor:
        """original: [n] (the original's scores) or [a, n] (the attacked original's)."""
        lost = (original[None] - unlearned[:, None]) if original.ndim == 2 else (original - unlearned)[:, None]
        rec = _share((attacked - unlearned[:, None]).float() - null[..., None], lost.float())
        return rec.masked_fill(~self.applies[..., None], float("nan"))

    @property
    def recovery(self) -> Float[Tensor, "m a n"]:
        """clip((EM_attacked - EM_unlearned - null) / (EM_original - EM_unlearned), 0, 1) per method, attack
        and target; nan where the unlearning lowered nothing or the attack does not apply."""
        return self._recovery(self.em_attacked, self.em_unlearned, self.em_original, self.never_known_gain)

    @property
    def recovery_log10p(self) -> Float[Tensor, "m a n"]:
        """The same share on log10 p: (lp_attacked - lp_unlearned - null) / (lp_original - lp_unlearned)."""
        return self._recovery(
            self.log10p_attacked, self.log10p_unlearned, self.log10p_original, self.never_known_gain_log10p
        )

    @property
    def breaks_original(self) -> Bool[Tensor, "a"]:
        """Control 1: attacks that lower the original's mean target EM by more than BREAKS of the continuation."""
        drop = self.em_original.float().mean() - self.em_original_attacked.float().mean(-1)
        return drop > BREAKS * self.continuation_len

    @property
    def recovery_of_attacked_original(self) -> Float[Tensor, "m a n"]:
        """Recovery against what the attack leaves the original: (EM_attacked - EM_unlearned - null) /
        (EM_original_attacked - EM_unlearned), clipped; nan where the attacked original is no better than the
        unlearned model (the attack destroys what it would measure)."""
        return self._recovery(self.em_attacked, self.em_unlearned, self.em_original_attacked, self.never_known_gain)

    def _residual(self, recovery: Tensor, lost: Tensor) -> Tensor:
        res = _max_applicable(recovery, self.applies)
        return res.masked_fill(lost <= 0, 1.0)

    @property
    def residual(self) -> Float[Tensor, "m n"]:
        """Residual memorization per method and target: the largest recovery over the attacks that apply.

        residual[m, i] = max_a clip((EM_a,i - EM_u,i - g_a) / (EM_o,i - EM_u,i), 0, 1), where EM_o, EM_u,
        EM_a are the target's greedy EM on the original, the unlearned and the attacked unlearned system,
        and g_a attack a's null (`never_known_gain`). The share of the forgotten text that the best attack
        returns beyond its null: 0 = gone under every attack, 1 = back to the original's EM. It is what
        these attacks, at these budgets, bring back, not a bound on what is stored: an attack can also teach
        or carry text in (the nulls measure how much on text never known; `residual_p` compares the score
        with the same max on those paragraphs), and a stronger attack may find more. 1 where the unlearning
        did not lower the target's EM at all (the text is all still there): such targets are counted
        (`forgotten`), never dropped."""
        return self._residual(self.recovery, (self.em_original - self.em_unlearned).float())

    @property
    def residual_log10p(self) -> Float[Tensor, "m n"]:
        """The residual on log10 p (1 where the unlearning did not lower log10 p)."""
        return self._residual(self.recovery_log10p, self.log10p_original - self.log10p_unlearned)

    @property
    def residual_attack(self) -> list[list[str | None]]:
        """The attack achieving each residual (None where every recovery is 0 or nothing was forgotten)."""
        rec = self.recovery.masked_fill(~self.applies[..., None], float("nan")).nan_to_num(-1.0)
        best = rec.argmax(1)
        return [
            [self.attacks[int(best[m, i])] if rec[m, best[m, i], i] > 0 else None for i in range(len(self.ids))]
            for m in range(len(self.methods))
        ]

    def _control_residual(self, attacked, unlearned, original_t, unlearned_t, null) -> Tensor:
        lost = (original_t - unlearned_t).float()[:, self.pairs]  # each paragraph's target's forgotten amount
        rec = _share((attacked - unlearned[:, None]).float() - null[..., None], lost[:, None])
        return _max_applicable(rec.masked_fill(~self.applies[..., None], float("nan")), self.applies)

    @property
    def control_residual(self) -> Float[Tensor, "m k"]:
        """The residual's statistic on the never-known paragraphs, each scaled by its paired target's
        forgotten EM: the same max over attacks on text the system never held (the residual's null)."""
        return self._control_residual(
            self.em_never_known_attacked,
            self.em_never_known_unlearned,
            self.em_original,
            self.em_unlearned,
            self.never_known_gain,
        )

    @property
    def control_residual_log10p(self) -> Float[Tensor, "m k"]:
        return self._control_residual(
            self.log10p_never_known_attacked,
            self.log10p_never_known_unlearned,
            self.log10p_original,
            self.log10p_unlearned,
            self.never_known_gain_log10p,
        )

    @staticmethod
    def _p(residual: Tensor, control: Tensor) -> Tensor:
        out = torch.full_like(residual, float("nan"))
        for m in range(residual.shape[0]):
            c = control[m][~control[m].isnan()]
            if len(c):
                out[m] = (1 + (c[None] >= residual[m][:, None]).sum(-1)) / (1 + len(c))
        return out.masked_fill(residual.isnan(), float("nan"))

    @property
    def residual_p(self) -> Float[Tensor, "m n"]:
        """Per target, the share of never-known paragraphs (plus one) whose control residual is at least the
        target's: a permutation-style p of the residual against its null."""
        return self._p(self.residual, self.control_residual)

    @property
    def residual_p_log10p(self) -> Float[Tensor, "m n"]:
        return self._p(self.residual_log10p, self.control_residual_log10p)

    @property
    def null_q95(self) -> Float[Tensor, "m"]:
        """The control residual's 95th percentile per method (nan without a control paragraph)."""
        return torch.stack([_q95(c) for c in self.control_residual])

    @property
    def null_q95_log10p(self) -> Float[Tensor, "m"]:
        return torch.stack([_q95(c) for c in self.control_residual_log10p])

    def median(self, m: int, on: str = "em") -> tuple[float, float, float, int]:
        """Median residual of method m over its targets (EM or log10 p), its 95% bootstrap interval and n."""
        res = self.residual if on == "em" else self.residual_log10p
        return median_interval(res[m], seed=int(self.settings.get("seed", 0)))

    @property
    def median_residual(self) -> Float[Tensor, "m"]:
        """The true median residual over all targets (forgotten or not; see `residual`)."""
        return torch.tensor([self.median(m)[0] for m in range(len(self.methods))])

    @property
    def median_residual_log10p(self) -> Float[Tensor, "m"]:
        return torch.tensor([self.median(m, "log10p")[0] for m in range(len(self.methods))])

    def restoration_is_diagnostic(self, m: int) -> bool:
        """Whether restoration's null (control 2 or donor) reaches DIAGNOSTIC of method m's mean forgotten
        EM or log10 p, or its donor null was not measured: then restoration shows where text can be written
        back, not that it was stored."""
        if "restore" not in self.attacks:
            return False
        r = self.attacks.index("restore")
        donor = self.restore_null.get(self.methods[m], {}).get("em")
        if donor is None or math.isnan(donor):
            return True
        lost = float((self.em_original - self.em_unlearned[m]).float().clamp_min(0).mean())
        lost_lp = float((self.log10p_original - self.log10p_unlearned[m]).clamp_min(0).mean())
        em_share = float(self.never_known_gain[m, r]) / lost if lost > 0 else 0.0
        lp_share = float(self.never_known_gain_log10p[m, r]) / lost_lp if lost_lp > 0 else 0.0
        return max(em_share, lp_share) >= DIAGNOSTIC

    def table(self, method: str) -> list[dict]:
        """One row per attack for `method`: mean EM and log10 p attacked, the controls, mean recoveries;
        an attack that does not apply has `applies` False, its reason in `why_not` and None for every number."""
        m = self.methods.index(method)
        rows = [
            {
                "attack": "none (unlearned)",
                "applies": True,
                "why_not": None,
                "em": float(self.em_unlearned[m].float().mean()),
                "log10p": float(self.log10p_unlearned[m].mean()),
                "original_em": float(self.em_original.float().mean()),
                "breaks_original": False,
                "never_known_gain": 0.0,
                "never_known_gain_log10p": 0.0,
                "recovery": 0.0,
                "recovery_log10p": 0.0,
                "recovery_of_attacked_original": 0.0,
            }
        ]
        rec, rec_lp, rec_o = self.recovery[m], self.recovery_log10p[m], self.recovery_of_attacked_original[m]
        for a, attack in enumerate(self.attacks):
            row = {
                "attack": attack,
                "applies": bool(self.applies[m, a]),
                "why_not": self.not_applicable.get(method, {}).get(attack),
                "original_em": float(self.em_original_attacked[a].float().mean()),
                "breaks_original": bool(self.breaks_original[a]),
            }
            if row["applies"]:
                row |= {
                    "em": float(self.em_attacked[m, a].float().mean()),
                    "log10p": float(self.log10p_attacked[m, a].mean()),
                    "never_known_gain": float(self.never_known_gain[m, a]),
                    "never_known_gain_log10p": float(self.never_known_gain_log10p[m, a]),
                    "recovery": float(rec[a].nanmean()),
                    "recovery_log10p": float(rec_lp[a].nanmean()),
                    "recovery_of_attacked_original": float(rec_o[a].nanmean()),
                }
            else:
                row |= dict.fromkeys(
                    ("em", "log10p", "never_known_gain", "never_known_gain_log10p", "recovery", "recovery_log10p")
                ) | {"recovery_of_attacked_original": None}
            rows.append(row)
        return rows

    def summary(self, m: int) -> str:
        """The method's one plain sentence: EM and log10 p before / after, targets not forgotten, the median
        residual on EM and on log10 p with interval and n, the control residual's 95th percentile, and the
        attacks that did not apply."""
        method = self.methods[m]
        med, lo, hi, n = self.median(m)
        med_lp, lo_lp, hi_lp, _ = self.median(m, "log10p")
        kept = int((~self.forgotten[m]).sum())
        why = self.not_applicable.get(method, {})
        na = [f"{a} ({why[a]})" for a in self.attacks if a in why]
        return (
            f"{method}: {len(self.ids)} target(s), EM {self.em_original.float().mean():.1f} -> "
            f"{self.em_unlearned[m].float().mean():.1f} of {self.continuation_len}, log10 p "
            f"{self.log10p_original.mean():.1f} -> {self.log10p_unlearned[m].mean():.1f}; {kept} not forgotten "
            f"(residual 1); median residual {med:.2f} [95% CI {lo:.2f}, {hi:.2f}] (n={n}) on EM, {med_lp:.2f} "
            f"[{lo_lp:.2f}, {hi_lp:.2f}] on log10 p; never-known null's 95th percentile "
            f"{float(self.null_q95[m]):.2f} on EM, {float(self.null_q95_log10p[m]):.2f} on log10 p; "
            + (f"did not apply: {'; '.join(na)}." if na else "every attack applied.")
        )

    def format(self) -> str:
        """Plain-text tables, one per method, and each target's residual scores."""

        def cell(v, fmt: str, width: int) -> str:
            return f"{'n/a':>{width}}" if v is None else f"{v:>{width}{fmt}}"

        lines = []
        for m, method in enumerate(self.methods):
            lines.append(self.summary(m))
            lines.append(
                f"  {'attack':<17} {'EM':>6} {'log10 p':>9} {'orig EM':>8} {'null EM':>8} {'null lp':>8} "
                f"{'rec EM':>7} {'rec lp':>7} {'rec/orig':>8}"
            )
            for r in self.table(method):
                flag = " (breaks the original)" if r["breaks_original"] else ""
                why = f"  n/a: {r['why_not']}" if not r["applies"] else ""
                lines.append(
                    f"  {r['attack']:<17} {cell(r['em'], '.1f', 6)} {cell(r['log10p'], '.1f', 9)} "
                    f"{r['original_em']:>8.1f} {cell(r['never_known_gain'], '.2f', 8)} "
                    f"{cell(r['never_known_gain_log10p'], '.2f', 8)} {cell(r['recovery'], '.2f', 7)} "
                    f"{cell(r['recovery_log10p'], '.2f', 7)} {cell(r['recovery_of_attacked_original'], '.2f', 8)}"
                    + flag
                    + why
                )
            attack = self.residual_attack[m]
            lines.append(
                "  residual per target (EM, log10 p, p vs never-known): "
                + ", ".join(
                    f"{pid} {float(self.residual[m, i]):.2f}/{float(self.residual_log10p[m, i]):.2f} "
                    f"p={float(self.residual_p[m, i]):.2f} ({attack[i] or '-'})"
                    for i, pid in enumerate(self.ids)
                )
            )
            if "restore" in self.attacks and self.restoration_is_diagnostic(m):
                lines.append("  restoration is a diagnostic here: its null is large or unmeasured (see restore_null)")
        lines.append(
            "orig EM = the same attack on the original model (control 1); null = mean gain the attack gives "
            f"{len(self.never_known_ids)} never-known paragraphs on the same unlearned system (control 2; for "
            "restore, at least the donor control's), subtracted; rec = share of the forgotten EM / log10 p brought "
            "back beyond that null; rec/orig = the same share of what the attacked original recites"
        )
        return "\n".join(lines)

    def to_json(self) -> dict:
        rec, rec_lp, res, res_lp = self.recovery, self.recovery_log10p, self.residual, self.residual_log10p
        res_attack, p, p_lp = self.residual_attack, self.residual_p, self.residual_p_log10p
        methods = {}
        for m, method in enumerate(self.methods):
            med, lo, hi, n = self.median(m)
            med_lp, lo_lp, hi_lp, _ = self.median(m, "log10p")
            methods[method] = {
                "summary": self.summary(m),
                "table": self.table(method),
                "median_residual": med,
                "median_residual_ci95": [lo, hi],
                "median_residual_log10p": med_lp,
                "median_residual_log10p_ci95": [lo_lp, hi_lp],
                "n_targets": n,
                "not_forgotten": [pid for i, pid in enumerate(self.ids) if not bool(self.forgotten[m, i])],
                "null_q95": float(self.null_q95[m]),
                "null_q95_log10p": float(self.null_q95_log10p[m]),
                "residual_excess": med - float(self.null_q95[m]),
                "residual_excess_log10p": med_lp - float(self.null_q95_log10p[m]),
                "not_applicable": self.not_applicable.get(method, {}),
                "restore_null": self.restore_null.get(method),
                "restoration_is_diagnostic": self.restoration_is_diagnostic(m) if "restore" in self.attacks else None,
                "never_known_gain": {a: float(self.never_known_gain[m, j]) for j, a in enumerate(self.attacks)},
                "never_known_gain_log10p": {
                    a: float(self.never_known_gain_log10p[m, j]) for j, a in enumerate(self.attacks)
                },
                "control_residual": self.control_residual[m],
                "control_residual_log10p": self.control_residual_log10p[m],
                "paragraphs": [
                    {
                        "id": pid,
                        "em_original": int(self.em_original[i]),
                        "em_unlearned": int(self.em_unlearned[m, i]),
                        "log10p_original": float(self.log10p_original[i]),
                        "log10p_unlearned": float(self.log10p_unlearned[m, i]),
                        "forgotten": bool(self.forgotten[m, i]),
                        "residual": float(res[m, i]),
                        "residual_log10p": float(res_lp[m, i]),
                        "residual_p": float(p[m, i]),
                        "residual_p_log10p": float(p_lp[m, i]),
                        "residual_attack": res_attack[m][i],
                        "attacks": {
                            a: (
                                {
                                    "em": int(self.em_attacked[m, j, i]),
                                    "log10p": float(self.log10p_attacked[m, j, i]),
                                    "recovery": float(rec[m, j, i]),
                                    "recovery_log10p": float(rec_lp[m, j, i]),
                                    "original_em": int(self.em_original_attacked[j, i]),
                                    "choice": self.choices.get(method, {}).get(a, [None] * len(self.ids))[i],
                                }
                                if bool(self.applies[m, j])
                                else {"n/a": self.not_applicable.get(method, {}).get(a)}
                            )
                            for j, a in enumerate(self.attacks)
                        },
                    }
                    for i, pid in enumerate(self.ids)
                ],
            }
        return {
            "targets": list(self.ids),
            "never_known": list(self.never_known_ids),
            "never_known_pairs": [self.ids[int(i)] for i in self.pairs],
            "attacks": list(self.attacks),
            "continuation_len": self.continuation_len,
            "score": "residual = max over the attacks that apply of clip((EM_attacked - EM_unlearned - null) / "
            "(EM_original - EM_unlearned), 0, 1), 1 where nothing was forgotten; the same on log10 p; its null: the "
            "same max on never-known paragraphs of the same unlearned system, each scaled by its paired target",
            "methods": methods,
            "original_control": {
                a: {
                    "em": self.em_original_attacked[j],
                    "log10p": self.log10p_original_attacked[j],
                    "breaks_original": bool(self.breaks_original[j]),
                }
                for j, a in enumerate(self.attacks)
            },
            "never_known_em": {
                method: {
                    "unlearned": self.em_never_known_unlearned[m],
                    **{a: self.em_never_known_attacked[m, j] for j, a in enumerate(self.attacks)},
                }
                for m, method in enumerate(self.methods)
            },
            "quantization_error": self.quantization_error,
            "weights_moved": self.weights_moved,
            "settings": self.settings,
        }


def _q95(x: Tensor) -> Tensor:
    x = x[~x.isnan()]
    return x.double().quantile(0.95).float() if len(x) else torch.tensor(float("nan"))


def _join(a: Paragraphs, b: Paragraphs) -> Paragraphs:
    tokens = torch.cat([a.tokens.cpu(), b.tokens.cpu()])
    return Paragraphs(tokens, a.prefix_len, tuple(str(i) for i in range(tokens.shape[0])))


@dataclass(frozen=True)
class _Sets:
    """What every system is attacked on, fixed once so that all see the same prompts: rows 0..n-1 of `both`
    are the targets, rows n.. the never-known paragraphs, row n + j paired with target `pairs[j]`; `groups`
    = the target rows each unlearned model forgot (all of them, or one target per run)."""

    targets: Paragraphs
    never_known: Paragraphs
    both: Paragraphs
    pairs: Tensor  # [k]
    retain: Paragraphs | None
    related: Paragraphs | None  # the user's related text (one set for every run), else found in `pool`
    pool: Paragraphs | None
    groups: tuple[Tensor, ...]
    variants: Tensor | None  # [n + k, K, seq]
    positions: Tensor | None  # [n + k, K]
    spans: Tensor | None  # [n + k, max shift]: each row's left context
    config: AuditConfig

    def with_controls(self, rows: Tensor) -> Tensor:
        """Target rows and the never-known rows paired with them."""
        n = len(self.targets)
        return torch.cat([rows, n + torch.isin(self.pairs, rows).nonzero().flatten()])

    def relearning_text(self, attack: str, rows: Tensor) -> Paragraphs:
        """The text attack `relearn_*` trains on when it attacks `rows` (target rows, or never-known rows)."""
        data = attack.removeprefix("relearn_")
        if data == "prefix":
            return self.both.select(rows)
        if data == "retain":
            return self.retain
        if self.related is not None:
            return self.related
        n, c = len(self.targets), self.config
        known = rows[rows < n]
        own = self.targets.select(known) if len(known) else self.never_known.select(rows[rows >= n] - n)
        other = self.never_known.ids if len(known) else self.targets.ids
        return related_text(self.pool, own, exclude=other, ngram=c.related_ngram, limit=c.related_limit)

    def runs(self, attack: str, rows: Tensor) -> list[Tensor]:
        """`rows` split into the runs attack `attack` needs. Relearning on the prefixes or on each paragraph's
        own related text: the target rows in one run, and the never-known rows in runs of as many paragraphs
        (each gets the dose of its target); every other attack: one run for all rows."""
        if attack == "relearn_prefix" or (attack == "relearn_related" and self.related is None):
            n = len(self.targets)
            known, controls = rows[rows < n], rows[rows >= n]
            size = max(1, len(known))
            return [r for r in (known, *controls.split(size)) if len(r)]
        return [rows]


def _why_not(original: Model, model: Scorable, hooks: Sequence[Hook], attack: str, config: AuditConfig) -> str | None:
    """Why `attack` cannot reach the system, or None."""
    if attack in QUANTIZATIONS:
        return cannot_quantize(model, hooks, config.quantization(attack)[1])
    if attack == "restore":
        if model is original and not hooks:
            return "the system is the original itself: nothing to restore"
        source, patched, _ = restoration_target(original, model, hooks)
        if source.cfg.n_layers != patched.cfg.n_layers or source.cfg.d_mlp != patched.cfg.d_mlp:
            return "its model's shape differs from the original's: no activation has a counterpart"
    return None


def _restore_configs(source: Model, sets: _Sets, sites: Sequence[str]) -> list[tuple[str, list[str]]]:
    c = sets.config
    n_layers = source.cfg.n_layers
    windows = layer_windows(n_layers, default_window(n_layers) if c.width is None else c.width)
    return restore_configs(n_layers, windows, c.restore_experiments, sites)


def _attack(
    original: Model, model: Scorable, hooks: Sequence[Hook], attack: str, rows: Tensor, sets: _Sets
) -> tuple[Tensor, Tensor, list | None, dict]:
    """EM and log10 p of paragraphs `rows` of `sets.both` under one attack on the system (`model`, `hooks`)
    in one run, what the attack picked per row, and what it did to the system (interp.audit.systems)."""
    config, bs, p = sets.config, sets.config.batch_size, sets.both.prefix_len
    paragraphs = sets.both.select(rows)
    if attack in QUANTIZATIONS:
        q, q_hooks, errors = quantized_system(model, hooks, *config.quantization(attack))
        em, logp = score(q, paragraphs.tokens, p, hooks=q_hooks, batch_size=bs)
        return em, logp, None, {"relative_error": errors}
    if attack.startswith("relearn_"):
        text = sets.relearning_text(attack, rows)
        tokens = text.prefixes if attack == "relearn_prefix" else text.tokens
        attacked, a_hooks, moved = relearned_system(
            model, hooks, tokens.cpu(), steps=config.relearn_steps, lr=config.relearn_lr
        )
        em, logp = score(attacked, paragraphs.tokens, p, hooks=a_hooks, batch_size=bs)
        return em, logp, None, {"weights_moved": moved}
    if attack == "restore":
        source, patched, sites = restoration_target(original, model, hooks)
        configs = _restore_configs(source, sets, sites)
        em, logp, best = best_of(*restored(source, model, hooks, patched, paragraphs, configs, batch_size=bs))
        return em, logp, [configs[int(b)][0] for b in best], {}
    if attack == "perturb":
        em, logp, best = edit_attack(model, sets.variants[rows], p, hooks=hooks, batch_size=bs)
        pos = sets.positions[rows, best]
        return em, logp, [f"position {int(x)}" for x in pos], {}
    em, logp, shift = shift_attack(model, paragraphs, sets.spans[rows], config.shifts, hooks=hooks, batch_size=bs)
    return em, logp, [f"{int(s)} tokens" for s in shift], {}


def _attack_rows(
    original: Model,
    model: Scorable,
    hooks: Sequence[Hook],
    attack: str,
    rows: Tensor,
    sets: _Sets,
    label: Callable[[Tensor], str],
) -> tuple[Tensor, Tensor, list | None, dict]:
    """`_attack` over `rows` in the runs the attack needs (`_Sets.runs`), put back in the order of `rows`;
    the quantization errors of the (one) quantized system, the weights moved per run under `label(run)`."""
    em = torch.zeros(len(rows), dtype=torch.long)
    logp = torch.zeros(len(rows))
    choices: list | None = None
    info: dict = {}
    where = {int(r): i for i, r in enumerate(rows)}
    for run in sets.runs(attack, rows):
        e, lp, chosen, done = _attack(original, model, hooks, attack, run, sets)
        at = torch.tensor([where[int(r)] for r in run])
        em[at], logp[at] = e.long(), lp
        if chosen is not None:
            choices = choices or [None] * len(rows)
            for i, c in zip(at.tolist(), chosen):
                choices[i] = c
        if "relative_error" in done:
            info["relative_error"] = done["relative_error"]
        if "weights_moved" in done:
            info.setdefault("weights_moved", {})[label(run)] = done["weights_moved"]
    return em, logp, choices, info


def _check_sets(targets: Paragraphs, never_known: Paragraphs, retain: Paragraphs | None, config: AuditConfig) -> None:
    if len(targets) == 0:
        raise UserError("no target paragraphs to audit: pass the ones the unlearning forgot")
    if len(never_known) == 0:
        raise UserError(
            "the audit's second control needs paragraphs the model never recited (the testbed's held-out split, or "
            "--never-known FILE)"
        )
    shapes = {(p.prefix_len, p.seq_len) for p in (targets, never_known, retain) if p is not None and len(p)}
    if len(shapes) > 1:
        raise UserError("targets, never-known and retain paragraphs must share prefix and continuation lengths")
    if "relearn_retain" in config.attacks and (retain is None or len(retain) == 0):
        raise UserError("the relearn_retain attack needs retain paragraphs: pass some, or drop it from --attacks")
    overlap = set(targets.ids) & set(never_known.ids)
    if overlap:
        raise UserError(f"paragraphs {sorted(overlap)[:3]} are both targets and never-known: they must differ")


def _runs_of(unlearned_models: Mapping[str, Unlearned | Sequence[Unlearned]], n: int) -> dict[str, list]:
    """name -> [(model, hooks)], one entry (forgot every target) or one per target (target i's own run)."""
    out = {}
    for name, value in unlearned_models.items():
        items = list(value) if isinstance(value, list | tuple) and not _is_model_with_hooks(value) else [value]
        if len(items) not in (1, n):
            raise UserError(f"{name}: {len(items)} unlearned models for {n} targets: give one, or one per target")
        out[name] = [(v, []) if not isinstance(v, tuple) else (v[0], list(v[1])) for v in items]
    return out


def _is_model_with_hooks(value) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and not isinstance(value[1], Model | ProxyModel)


def _donor_null(original: Model, never_known: Paragraphs, sets: _Sets, methods: dict[str, list]) -> tuple[dict, dict]:
    """Restoration's donor control: a copy of the original taught to recite some never-known paragraphs,
    its activations restored into the original per window (and at each intervention's site). Per method,
    the mean gain on EM and log10 p of the best window it could pick (an ensemble: `_ensemble_donor`, on its
    small models); and the per-window gains for the record."""
    c = sets.config
    chosen = never_known.select(range(min(c.donor_paragraphs, len(never_known))))
    donor = recite(original, chosen, max_steps=c.donor_steps, lr=c.donor_lr, batch_size=c.batch_size)
    sites = sorted({s for runs in methods.values() for m, h in runs for s, _ in interventions(h)})
    configs = _restore_configs(original, sets, sites)
    em, logp = restored(donor, original, [], original, chosen, configs, batch_size=c.batch_size)
    em0, lp0 = score(original, chosen.tokens, chosen.prefix_len, batch_size=c.batch_size)
    donor_em, _ = score(donor, chosen.tokens, chosen.prefix_len, batch_size=c.batch_size)
    gain_em, gain_lp = (em - em0).float(), logp - lp0
    per_method, ensembles = {}, {}
    for name, runs in methods.items():
        if isinstance(runs[0][0], ProxyModel):
            per_method[name], ensembles[name] = _ensemble_donor(runs[0][0], chosen, sets)
            continue
        own = {s for _, h in runs for s, _ in interventions(h)}
        keep = [i for i, (label, _) in enumerate(configs) if "site)" not in label or label.split(" (")[0] in own]
        best = best_option(em[keep], logp[keep])
        cols = torch.arange(len(chosen))
        per_method[name] = {
            "em": float(gain_em[keep][best, cols].mean()),
            "log10p": float(gain_lp[keep][best, cols].mean()),
        }
    record = {
        "paragraphs": list(chosen.ids),
        "donor_em": donor_em.tolist(),
        "original_em": em0.tolist(),
        "per_window": _per_window(configs, gain_em, gain_lp),
        **({"ensembles": ensembles} if ensembles else {}),
    }
    return per_method, record


def _per_window(configs: Sequence[tuple[str, list[str]]], gain_em: Tensor, gain_lp: Tensor) -> dict:
    """Each restored window's mean gain on EM and log10 p, by its label, for the donor's record."""
    return {
        label: {"em_gain": float(gain_em[i].mean()), "log10p_gain": float(gain_lp[i].mean())}
        for i, (label, _) in enumerate(configs)
    }


def _ensemble_donor(proxy: ProxyModel, chosen: Paragraphs, sets: _Sets) -> tuple[dict, dict]:
    """Restoration's donor control for a decoding-time ensemble, whose restoration patches the small original
    into the small unlearned model: a copy of the small original taught to recite `chosen` (never-known
    paragraphs), its activations restored window by window into the small model of an ensemble that forgot
    nothing (its small unlearned model a copy of the small original, so the ensemble reads as its base). The
    best window's mean gain on EM and log10 p, and the per-window gains for the record."""
    c = sets.config
    small = proxy.small_original
    donor = recite(small, chosen, max_steps=c.donor_steps, lr=c.donor_lr, batch_size=c.batch_size)
    untouched = ProxyModel(proxy.base, small, copy_model(small), proxy.alpha)
    configs = _restore_configs(small, sets, [])
    em, logp = restored(donor, untouched, [], untouched.small_unlearned, chosen, configs, batch_size=c.batch_size)
    em0, lp0 = score(untouched, chosen.tokens, chosen.prefix_len, batch_size=c.batch_size)
    gain_em, gain_lp = (em - em0).float(), logp - lp0
    best = best_option(em, logp)
    cols = torch.arange(len(chosen))
    donor_em, _ = score(donor, chosen.tokens, chosen.prefix_len, batch_size=c.batch_size)
    record = {
        "small_donor_em": donor_em.tolist(),
        "per_window": _per_window(configs, gain_em, gain_lp),
    }
    return {"em": float(gain_em[best, cols].mean()), "log10p": float(gain_lp[best, cols].mean())}, record


def audit(
    original: Model,
    unlearned_models: Mapping[str, Unlearned | Sequence[Unlearned]],
    targets: Paragraphs,
    never_known: Paragraphs,
    *,
    retain: Paragraphs | None = None,
    related: Paragraphs | None = None,
    pool: Paragraphs | None = None,
    config: AuditConfig = AuditConfig(),
) -> AuditResult:
    """Attack every unlearned system on `targets`, with the controls. A method is one system (a Model, a
    decoding-time ProxyModel, or (model, hooks)) that forgot every target, or a list of them, system i
    having forgotten target i alone (the unlearning table's runs): each is attacked on the targets it forgot
    and on the never-known paragraphs paired with them.

    `never_known`: paragraphs the original never recited (control 2; also the shift attack's left context
    when no `retain` is given). `retain`: text for the relearn_retain attack. Related text for
    relearn_related: `related` (one set, used for every run), else the other paragraphs of each
    paragraph's source document in `pool` (see `related_text`). No model is changed."""
    _check_sets(targets, never_known, retain, config)
    if not unlearned_models:
        raise UserError("no unlearned model to audit")
    n, k = len(targets), len(never_known)
    methods = _runs_of(unlearned_models, n)
    p, bs = targets.prefix_len, config.batch_size
    em_o, lp_o = score(original, targets.tokens, p, batch_size=bs)
    if bool((em_o == 0).any()):
        missed = [targets.ids[i] for i in (em_o == 0).nonzero().flatten().tolist()]
        raise UserError(f"the original model does not recite targets {missed[:3]} (EM 0): nothing was there to forget")
    partial = [targets.ids[i] for i in (em_o < targets.continuation_len).nonzero().flatten().tolist()]
    if partial and not config.partial_targets:
        raise UserError(
            f"the original recites targets {partial[:3]} only in part: audit fully recited targets, or pass "
            "--partial-targets (their recovery is then a share of what was recited)"
        )
    if "relearn_related" in config.attacks and related is None and pool is None:
        raise UserError("the relearn_related attack needs related text (--related FILE) or a paragraph pool")
    both = _join(targets, never_known)
    pairs = torch.arange(k) % n
    per_target = any(len(runs) > 1 for runs in methods.values())
    groups = tuple(torch.tensor([i]) for i in range(n)) if per_target else (torch.arange(n),)
    variants = positions = spans = None
    if "perturb" in config.attacks:
        variants, positions = single_token_edits(both, config.perturb_k, original.cfg.d_vocab, config.seed)
    filler = (retain if retain is not None and len(retain) else never_known).tokens.cpu()
    if "shift" in config.attacks:
        if not config.shifts or min(config.shifts) < 1:
            raise UserError(f"shifts must be positive numbers of tokens, got {config.shifts}: change --shifts")
        spans = filler_spans(filler, n + k, max(config.shifts), config.seed)
    sets = _Sets(targets, never_known, both, pairs, retain, related, pool, groups, variants, positions, spans, config)

    def who(run: Tensor) -> str:
        known, controls = run[run < n], run[run >= n]
        parts = ["targets" if len(known) == n else ",".join(targets.ids[int(i)] for i in known)] if len(known) else []
        if len(controls):
            parts.append("never-known " + ",".join(never_known.ids[int(i) - n] for i in controls))
        return " + ".join(parts)

    quant_err: dict = {}
    moved: dict = {}
    choices: dict = {}
    na: dict = {}
    attacks = config.attacks
    ctrl_em = em_o[None].repeat(len(attacks), 1)
    ctrl_lp = lp_o[None].repeat(len(attacks), 1)
    for j, a in enumerate(attacks):  # control 1: the original under each attack, run as the targets' runs are
        if a == "restore" or _why_not(original, original, [], a, config):
            continue  # restoring the original into itself changes nothing; an attack that cannot apply neither
        for rows in groups:
            e, lp, chosen, info = _attack_rows(original, original, [], a, rows, sets, who)
            ctrl_em[j, rows], ctrl_lp[j, rows] = e, lp
            if "relative_error" in info:
                quant_err.setdefault("original", {})[a] = info["relative_error"]
            if "weights_moved" in info:
                moved.setdefault("original", {}).setdefault(a, {}).update(info["weights_moved"])
    m_all = len(methods)
    em_u, lp_u = torch.zeros(m_all, n, dtype=torch.long), torch.zeros(m_all, n)
    em_att, lp_att = torch.zeros(m_all, len(attacks), n, dtype=torch.long), torch.zeros(m_all, len(attacks), n)
    nk_u, nk_lp_u = torch.zeros(m_all, k, dtype=torch.long), torch.zeros(m_all, k)
    nk_att, nk_lp_att = torch.zeros(m_all, len(attacks), k, dtype=torch.long), torch.zeros(m_all, len(attacks), k)
    applies = torch.ones(m_all, len(attacks), dtype=torch.bool)
    for mi, (name, runs) in enumerate(methods.items()):
        errors: dict = {}
        for g, rows in enumerate(groups):
            model, hooks = runs[g if len(runs) > 1 else 0]
            every = sets.with_controls(rows)
            t, c = every[every < n], every[every >= n] - n
            e, lp = score(model, both.tokens[every], p, hooks=hooks, batch_size=bs)
            em_u[mi, t], lp_u[mi, t], nk_u[mi, c], nk_lp_u[mi, c] = e[: len(t)], lp[: len(t)], e[len(t) :], lp[len(t) :]
            for j, a in enumerate(attacks):
                why = _why_not(original, model, hooks, a, config)
                if why is not None:
                    na.setdefault(name, {})[a] = why
                    applies[mi, j] = False
                    em_att[mi, j, t], lp_att[mi, j, t] = em_u[mi, t], lp_u[mi, t]
                    nk_att[mi, j, c], nk_lp_att[mi, j, c] = nk_u[mi, c], nk_lp_u[mi, c]
                    continue
                e, lp, chosen, info = _attack_rows(original, model, hooks, a, every, sets, who)
                em_att[mi, j, t], lp_att[mi, j, t] = e[: len(t)], lp[: len(t)]
                nk_att[mi, j, c], nk_lp_att[mi, j, c] = e[len(t) :], lp[len(t) :]
                if chosen is not None:
                    picked = choices.setdefault(name, {}).setdefault(a, [None] * n)
                    for i, ch in zip(t.tolist(), chosen):
                        picked[i] = ch
                if "relative_error" in info:
                    errors.setdefault(a, []).append(info["relative_error"])
                if "weights_moved" in info:
                    moved.setdefault(name, {}).setdefault(a, {}).update(info["weights_moved"])
        for a, per_run in errors.items():  # one dict per quantized system: the mean over the method's runs
            quant_err.setdefault(name, {})[a] = {t: sum(e[t] for e in per_run) / len(per_run) for t in per_run[0]}
    restore_null, donor_record = {}, None
    if "restore" in attacks and not bool((~applies[:, attacks.index("restore")]).all()):
        restore_null, donor_record = _donor_null(original, never_known, sets, methods)
    settings = {
        **asdict(config),
        "runs": "one unlearned model per target (each target attacked on its own run's model)"
        if per_target
        else "one unlearned model per method, attacked on every target",
        "never_known_control": "each attack on each method's UNLEARNED system, on never-known paragraphs paired "
        "with its targets (paragraph j with target j mod n) and given their dose: relearned in runs of as many "
        "paragraphs as the target's run, on their own prefixes or their own documents' text",
        "restore_donor": donor_record,
        "quantized_tensors": "the attention and MLP weight matrices (W_Q, W_K, W_V, W_O, W_in, W_gate, W_out) of "
        "every model of the system (a decoding-time ensemble's base and both small models) and every 2-D "
        "parameter of an intervention; embeddings, unembedding, biases and LayerNorms stay in float",
        "int8": "round-to-nearest, symmetric, one scale per output channel",
        "int4": f"round-to-nearest, symmetric, one scale per {config.group_size} input channels of an output channel",
        "int4_g128": "round-to-nearest, symmetric, one scale per 128 input channels",
        "int4_asym": f"round-to-nearest with a zero point (min / max per {config.group_size} input channels)",
        "nf4": "NF4 codebook (bitsandbytes' 16 levels), absmax per block of 64 input channels, reimplemented",
        "relearn": f"{config.relearn_steps} Adam steps at lr {config.relearn_lr:g}, every parameter of the system "
        "(a model's, an intervention's, an ensemble's three models'), next-token loss",
        "restore": "the original's MLP coefficients / attention outputs per window, and each intervention's own "
        "site; for a decoding-time ensemble, the small original's into the small unlearned model",
        "retain": list(retain.ids) if retain is not None else None,
        "related_targets": _related_ids(sets, groups, "relearn_related" in attacks),
        "related_never_known": _related_ids(sets, groups, "relearn_related" in attacks, controls=True),
        "shift_filler": "retain paragraphs" if retain is not None and len(retain) else "never-known paragraphs",
        "partial_targets": partial,
    }
    return AuditResult(
        ids=targets.ids,
        never_known_ids=never_known.ids,
        methods=tuple(methods),
        attacks=tuple(attacks),
        continuation_len=targets.continuation_len,
        em_original=em_o,
        log10p_original=lp_o,
        em_unlearned=em_u,
        log10p_unlearned=lp_u,
        em_attacked=em_att,
        log10p_attacked=lp_att,
        em_original_attacked=ctrl_em,
        log10p_original_attacked=ctrl_lp,
        em_never_known_unlearned=nk_u,
        em_never_known_attacked=nk_att,
        log10p_never_known_attacked=nk_lp_att,
        log10p_never_known_unlearned=nk_lp_u,
        pairs=pairs,
        applies=applies,
        not_applicable=na,
        restore_null=restore_null,
        choices=choices,
        quantization_error=quant_err,
        weights_moved=moved,
        settings=settings,
    )


def _related_ids(sets: _Sets, groups: Sequence[Tensor], wanted: bool, controls: bool = False) -> list[str] | None:
    """The related text's ids over the targets' runs (or the never-known paragraphs' runs)."""
    if not wanted:
        return None
    ids: dict[str, None] = {}
    n = len(sets.targets)
    for rows in groups:
        for run in sets.runs("relearn_related", sets.with_controls(rows)):
            if bool((run >= n).any() if controls else (run < n).any()):
                ids.update(dict.fromkeys(sets.relearning_text("relearn_related", run).ids))
    return list(ids)


def score_model(
    original: Model,
    model: Unlearned,
    targets: Paragraphs,
    never_known: Paragraphs,
    *,
    name: str = "model",
    **options: Any,
) -> dict:
    """One system's scores under every attack: for `model` (weights only, or (model, hooks), or an
    ensemble) on `targets` and the paired `never_known` paragraphs, per attack the EM and log10 p of each
    target and control paragraph, the recoveries, and the residual on EM and log10 p with its null; the
    audit of that one method (`audit`, which takes `options`: retain, related, pool, config), as JSON-ready
    numbers. For faithfulness scores over models known to hold or to lack the targets."""
    result = audit(original, {name: model}, targets, never_known, **options)
    out = result.to_json()["methods"][name]
    out["per_attack"] = {
        a: {
            "em": result.em_attacked[0, j].tolist(),
            "log10p": result.log10p_attacked[0, j].tolist(),
            "em_never_known": result.em_never_known_attacked[0, j].tolist(),
            "log10p_never_known": result.log10p_never_known_attacked[0, j].tolist(),
            "recovery": result.recovery[0, j].tolist(),
            "recovery_log10p": result.recovery_log10p[0, j].tolist(),
            "applies": bool(result.applies[0, j]),
        }
        for j, a in enumerate(result.attacks)
    }
    out["residual"] = result.residual[0].tolist()
    out["residual_log10p"] = result.residual_log10p[0].tolist()
    out["control_residual"] = result.control_residual[0].tolist()
    out["em_unlearned"] = result.em_unlearned[0].tolist()
    out["log10p_unlearned"] = result.log10p_unlearned[0].tolist()
    out["result"] = result
    return out
