"""Section 5b of the report, "Is it really gone?": the forgetting audit of the unlearning table's runs.

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from interp.audit import AuditResult
from interp.audit.audit import BREAKS
from interp.report_types import Bundle, Section, Table
from interp.views.audit import figure_audit

UNDONE, PARTLY = 0.5, 0.1  # mean recovery at or above: the attack undoes / partly undoes the forgetting

PUBLISHED = (
    "Published numbers to compare with: 4-bit quantization brought unlearned knowledge from 21% back to 83% "
    "(Zhang et al., ICLR 2025); relearning on a small held-out part of the forget set recovered ~88% of the "
    "pre-unlearning accuracy (Deeb & Roger 2024); relearning on loosely related text brought verbatim text back "
    "(Hu et al. 2024); restoring activations (Hong et al. 2024) is section 6's analysis, used here as an attack."
)


def verdict(result: AuditResult, m: int) -> str:
    """One sentence: which attacks the method's forgetting survives and which undo it, by the larger of the
    mean recoveries on EM and on log10 p (both given), which attacks did not apply, and the median residual
    with its interval and n."""
    method = result.methods[m]
    rec = result.recovery[m].nanmean(-1).tolist()
    rec_lp = result.recovery_log10p[m].nanmean(-1).tolist()
    med, lo, hi, n = result.median(m)
    head = f"{method} (median residual {med:.2f} [95% CI {lo:.2f}, {hi:.2f}], n={n}, on EM)"
    applied = [j for j in range(len(result.attacks)) if bool(result.applies[m, j])]
    why = result.not_applicable.get(method, {})
    na = f" Did not apply: {'; '.join(f'{a} ({why[a]})' for a in result.attacks if a in why)}." if why else ""
    if all(math.isnan(rec[j]) and math.isnan(rec_lp[j]) for j in applied):
        return f"{head}: nothing was forgotten, so nothing can come back.{na}"

    def worst(j: int) -> float:
        return max((v for v in (rec[j], rec_lp[j]) if not math.isnan(v)), default=0.0)

    def named(j: int) -> str:
        return f"{result.attacks[j]} (EM {rec[j]:.2f}, log10 p {rec_lp[j]:.2f})"

    undone = [named(j) for j in applied if worst(j) >= UNDONE]
    partly = [named(j) for j in applied if PARTLY <= worst(j) < UNDONE]
    survives = [result.attacks[j] for j in applied if worst(j) < PARTLY]
    parts = [f"survives {', '.join(survives)}" if survives else "survives no attack"]
    if partly:
        parts.append(f"partly undone by {', '.join(partly)}")
    if undone:
        parts.append(f"undone by {', '.join(undone)}")
    return f"{head}: its forgetting " + "; ".join(parts) + "." + na


def _num(v: float | None) -> float | str:
    return "n/a" if v is None else v


def audit_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """The method x attack recovery heatmaps (EM, log10 p), the per-attack table with the controls, residual
    per target; the never-known fallback's caveat when the paragraphs had no held-out split."""
    audit: AuditResult = result["audit"]
    s = audit.settings
    level = result["level"]
    matched = f"every target at EM <= {level:g}" if level is not None else "at the table's fixed rate (not matched)"
    summary = []
    for m, method in enumerate(audit.methods):
        med, lo, hi, n = audit.median(m)
        med_lp, lo_lp, hi_lp, _ = audit.median(m, "log10p")
        rows = {r["attack"]: r for r in audit.table(method)}
        summary.append(
            [
                method,
                float(audit.log10p_unlearned[m].mean()),
                f"{med:.2f} [{lo:.2f}, {hi:.2f}]",
                f"{med_lp:.2f} [{lo_lp:.2f}, {hi_lp:.2f}]",
                n,
                int((~audit.forgotten[m]).sum()),
                float(audit.null_q95[m]),
                *[_num(rows[a]["recovery"]) for a in audit.attacks],
            ]
        )
    per_attack = [
        [
            method,
            r["attack"] + (" (breaks the original)" if r["breaks_original"] else ""),
            _num(r["em"]),
            _num(r["log10p"]),
            r["original_em"],
            _num(r["never_known_gain"]),
            _num(r["never_known_gain_log10p"]),
            _num(r["recovery"]),
            _num(r["recovery_log10p"]),
            _num(r["recovery_of_attacked_original"]),
            r["why_not"] or "",
        ]
        for method in audit.methods
        for r in audit.table(method)
    ]
    residual_attack = audit.residual_attack
    per_target = [
        [
            method,
            pid,
            int(audit.em_original[i]),
            int(audit.em_unlearned[m, i]),
            float(audit.log10p_unlearned[m, i]),
            float(audit.residual[m, i]),
            float(audit.residual_log10p[m, i]),
            float(audit.residual_p[m, i]),
            residual_attack[m][i] or "-",
        ]
        for m, method in enumerate(audit.methods)
        for i, pid in enumerate(audit.ids)
    ]
    notes = [verdict(audit, m) for m in range(len(audit.methods))]
    notes += [audit.summary(m) for m in range(len(audit.methods))]
    notes += [f"Not audited: {row['label']}: {row['why']}." for row in result["not_audited"]]
    breaking = [
        f"{a} ({float(e):.1f})"
        for a, e, b in zip(audit.attacks, audit.em_original_attacked.float().mean(-1), audit.breaks_original)
        if bool(b)
    ]
    notes.append(
        "Control 1, each attack on the ORIGINAL model: "
        + (
            f"these lower its own mean target EM by more than {BREAKS:.0%} of the continuation (mean EM under "
            f"attack): {', '.join(breaking)}; their recovery understates what is stored, and the table also gives "
            "it against the attacked original's EM."
            if breaking
            else f"no attack lowers the original's mean target EM ({audit.em_original.float().mean():.1f}) by more "
            f"than {BREAKS:.0%} of the continuation: the attacks do not break recitation by themselves."
        )
    )
    donor = s.get("restore_donor")
    if donor:
        widest = max(donor["per_window"].items(), key=lambda kv: kv[1]["log10p_gain"])
        diagnostic = [method for m, method in enumerate(audit.methods) if audit.restoration_is_diagnostic(m)]
        notes.append(
            f"Restoration's donor control: a copy of the original fine-tuned to recite {len(donor['paragraphs'])} "
            f"never-known paragraphs (EM {', '.join(map(str, donor['donor_em']))}), its activations restored into "
            f"the original; the largest mean gain, {widest[0]}, is EM {widest[1]['em_gain']:.2f}, log10 p "
            f"{widest[1]['log10p_gain']:.1f}. Restoration's null is the larger of this (best window) and its "
            "never-known gain"
            + (
                f"; it is a diagnostic, not evidence of storage, for {', '.join(diagnostic)}."
                if diagnostic
                else "."
            )
        )
    source = result.parts.get("never_known_source")
    caveat = f"\n\nNever-known paragraphs: {source}." if source else ""
    return Section(
        key="audit",
        title="5b. Is it really gone? Every attack on the unlearned runs, with its controls",
        text=(
            f"The table's runs at matched forgetting ({matched}; each target forgotten in its own run, audited on "
            "that run's model, no retraining) are attacked where their forgetting lives (a weight edit's weights; "
            "LoReFT's intervention and the residual stream it edits; a decoding-time ensemble's base and both small "
            "models): int8 per channel; int4 in groups of "
            f"{s['group_size']} and 128 input channels, with a zero point, and NF4 (blocks of 64); relearning "
            f"({s['relearn']}) on the target's prefix, on {len(s['retain'] or [])} retain paragraphs and on up to "
            f"{s['related_limit']} other paragraphs of the target's source document; the best restored window of "
            f"the original's activations; the best of {s['perturb_k']} single-token prefix edits and of "
            f"{', '.join(map(str, s['shifts']))} tokens of left context. An attack that cannot reach a method reads "
            "n/a, with why. Per target, recovery = clip((attacked - unlearned - null) / (original - unlearned), 0, 1) "
            "on EM and on log10 p, the null being the mean gain the same attack gives never-known paragraphs on the "
            "same unlearned model (paired with the targets, relearned at the same dose). The residual is the largest "
            "recovery over attacks: what these attacks at these budgets bring back, not a bound on what is stored "
            "(an attack can also carry text in); its null is the same max on the never-known paragraphs, whose 95th "
            "percentile is given. Targets not forgotten count as residual 1. Medians are true medians with 95% "
            f"bootstrap intervals over n targets.{caveat}\n\n" + PUBLISHED
        ),
        figures={"recovery": figure_audit(audit)},
        tables=[
            Table(
                "Per method: mean log10 p after unlearning, median residual on EM and on log10 p [95% CI], n targets, "
                "targets not forgotten, the never-known null's 95th percentile, mean EM recovery per attack",
                [
                    "method",
                    "log10 p unlearned",
                    "median residual (EM)",
                    "median residual (log10 p)",
                    "n",
                    "not forgotten",
                    "null 95th pct",
                    *audit.attacks,
                ],
                summary,
            ),
            Table(
                "Per attack, means over targets: EM and log10 p attacked; the original under the same attack "
                "(control 1); the never-known null on EM and log10 p (control 2, subtracted); recovery on EM, on "
                "log10 p, and against the attacked original; why an attack did not apply",
                [
                    "method",
                    "attack",
                    "EM",
                    "log10 p",
                    "original EM attacked",
                    "never-known gain",
                    "never-known gain log10 p",
                    "recovery",
                    "recovery log10 p",
                    "recovery vs attacked original",
                    "n/a because",
                ],
                per_attack,
            ),
            Table(
                "Residual memorization per target (the best attack's recovery) on EM and log10 p, and its p against "
                "the never-known paragraphs' residuals",
                [
                    "method",
                    "target",
                    "EM original",
                    "EM unlearned",
                    "log10 p unlearned",
                    "residual",
                    "residual log10 p",
                    "p",
                    "attack",
                ],
                per_target,
            ),
        ],
        notes=notes,
    )
