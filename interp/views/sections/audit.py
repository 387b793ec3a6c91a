"""Section 5b of the report, "Is it really gone?": the forgetting audit of the unlearning table's runs.

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from interp.audit import AuditResult
from interp.report.types import Bundle
from interp.views.audit import figure_audit
from interp.views.report_html import Section, Table

UNDONE, PARTLY = 0.5, 0.1  # mean recovery at or above: the attack undoes / partly undoes the forgetting

PUBLISHED = (
    "Published numbers to compare with: 4-bit quantization brought unlearned knowledge from 21% back to 83% "
    "(Zhang et al., ICLR 2025); relearning on a small held-out part of the forget set recovered ~88% of the "
    "pre-unlearning accuracy (Deeb & Roger 2024); relearning on loosely related text brought verbatim text back "
    "(Hu et al. 2024); restoring activations (Hong et al. 2024) is section 6's analysis, used here as an attack."
)


def verdict(result: AuditResult, m: int) -> str:
    """One sentence: which attacks the method's forgetting survives and which undo it (mean recovery)."""
    rec = result.recovery[m].nanmean(-1).tolist()
    if all(math.isnan(r) for r in rec):
        return f"{result.methods[m]}: nothing was forgotten, so nothing can come back."
    undone = [f"{a} ({r:.2f})" for a, r in zip(result.attacks, rec) if r >= UNDONE]
    partly = [f"{a} ({r:.2f})" for a, r in zip(result.attacks, rec) if PARTLY <= r < UNDONE]
    survives = [a for a, r in zip(result.attacks, rec) if r < PARTLY]
    parts = [f"survives {', '.join(survives)}" if survives else "survives no attack"]
    if partly:
        parts.append(f"partly undone by {', '.join(partly)}")
    if undone:
        parts.append(f"undone by {', '.join(undone)}")
    return (
        f"{result.methods[m]} (median residual {float(result.median_residual[m]):.2f}): its forgetting "
        + "; ".join(parts)
        + "."
    )


def audit_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """The method x attack recovery heatmap, the per-attack table with both controls, residual per target."""
    audit: AuditResult = result["audit"]
    s = audit.settings
    level = result["level"]
    matched = f"every target at EM <= {level:g}" if level is not None else "at the table's fixed rate (not matched)"
    rec = audit.recovery.nanmean(-1)
    summary = [
        [method, float(audit.median_residual[m]), *[float(r) for r in rec[m]]] for m, method in enumerate(audit.methods)
    ]
    per_attack = [
        [method, r["attack"], r["em"], r["log10p"], r["original_em"], r["never_known_gain"], r["recovery"]]
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
            float(audit.residual[m, i]),
            residual_attack[m][i] or "-",
        ]
        for m, method in enumerate(audit.methods)
        for i, pid in enumerate(audit.ids)
    ]
    notes = [verdict(audit, m) for m in range(len(audit.methods))]
    notes += [f"Not audited: {row['label']}: {row['why']}." for row in result["not_audited"]]
    orig = audit.em_original_attacked.float().mean(-1)
    breaking = [
        f"{a} ({float(e):.1f})" for a, e in zip(audit.attacks, orig) if float(e) < audit.em_original.float().mean() - 5
    ]
    notes.append(
        "Control 1, each attack on the ORIGINAL model: "
        + (
            f"these lower its own recitation by more than 5 tokens (mean EM under attack): {', '.join(breaking)}, so "
            "their recovery understates what is stored."
            if breaking
            else f"no attack lowers the original's mean target EM ({audit.em_original.float().mean():.1f}) by more "
            "than 5 tokens: the attacks do not break recitation by themselves."
        )
    )
    gain = audit.never_known_gain[0] if len(audit.methods) else None
    if gain is not None:
        notes.append(
            f"Control 2, each attack on the original on {len(audit.never_known_ids)} held-out paragraphs it never "
            "recited (mean EM gain, the attack's null, subtracted from every recovery): "
            + ", ".join(f"{a} {float(g):.2f}" for a, g in zip(audit.attacks, gain))
            + ". Computed once and shared by every method; restoring the original into itself is a no-op, so "
            "restoration's null is 0."
        )
    return Section(
        key="audit",
        title="5b. Is it really gone? Every attack on the unlearned runs, with its controls",
        text=(
            f"The table's runs at matched forgetting ({matched}; each target forgotten in its own run, audited on "
            "that run's model, no retraining) are attacked: int8 per-channel and int4 group-wise round-to-nearest "
            f"quantization of the attention and MLP weights (groups of {s['group_size']}), relearning "
            f"({s['relearn']}) on the target's prefix, on {len(s['retain'] or [])} retain paragraphs and on up to "
            f"{s['related_limit']} other paragraphs of the target's source document, the best restored window of "
            f"the original's activations, the best of {s['perturb_k']} single-token prefix edits and the best of "
            f"{', '.join(map(str, s['shifts']))} tokens of left context. A decoding-time row is attacked through "
            "the only weights it has, the frozen base (its small models' difference kept at decoding time). "
            "Per target, recovery = clip((EM attacked - EM unlearned - null) / (EM original - EM unlearned), 0, 1), "
            "the share of the forgotten text an attack brings back beyond what it gives text never known; the "
            "residual score is the largest over attacks (0 = gone under every attack, 1 = fully back), a lower "
            "bound on what is stored. The heatmap shows the mean recovery per method and attack.\n\n" + PUBLISHED
        ),
        figures={"recovery": figure_audit(audit)},
        tables=[
            Table(
                "Mean recovery per method and attack, and the median residual over targets",
                ["method", "median residual", *audit.attacks],
                summary,
            ),
            Table(
                "Per attack, means over targets: EM and log10 p attacked; the original under the same attack "
                "(control 1); the never-known gain (control 2, subtracted); recovery",
                ["method", "attack", "EM", "log10 p", "original EM attacked", "never-known gain", "recovery"],
                per_attack,
            ),
            Table(
                "Residual memorization per target (the best attack's recovery)",
                ["method", "target", "EM original", "EM unlearned", "residual", "attack"],
                per_target,
            ),
        ],
        notes=notes,
    )
