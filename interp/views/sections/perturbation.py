"""Section 4 of the report: how hard a memorized paragraph is to knock off course (prefix perturbation).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.report_types import Bundle, Section, Table, perturbation_parts
from interp.views import heads as head_views
from interp.views import memorization as views


def perturbation_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """Prefix perturbation as section 4: EM lost per perturbed position, MEM vs NMEM."""
    mem, nmem = perturbation_parts(result)
    drop_m, drop_n = float(mem.mean_em_drop.mean()), float(nmem.mean_em_drop.mean())
    k = len(mem.ids)
    return Section(
        key="perturbation",
        title="4. How hard is a memorized paragraph to knock off course?",
        text=(
            f"Each prefix token is replaced, one at a time, by {mem.em.shape[-1]} random token(s); the continuation is "
            "decoded greedily and compared with the model's own unperturbed greedy continuation (EM, as in the paper "
            "section 4). The curve shows the mean EM lost per perturbed position; the token view colours each prefix "
            "token by the EM its replacement costs (red = a token the recitation depends on). The most damaging "
            "perturbation of each MEM paragraph gives the new continuation used as the editing target in section 5."
        ),
        figures={"em_drop_by_position": views.figure_perturbation_by_position(mem, nmem)},
        views={
            "Prefix tokens coloured by the EM lost when replaced (MEM first, then NMEM)": head_views.perturbation_view(
                result["all"], result["str_tokens"], max_paragraphs=8
            )
        },
        tables=[
            Table(
                "Mean EM drop per perturbed prefix token",
                ["set", "paragraphs", "mean EM drop", "paper (GPT-Neo 125M)"],
                [["MEM", k, drop_m, 12.19], ["NMEM", len(nmem.ids), drop_n, 33.12]],
            )
        ],
        notes=[
            f"Mean EM drop per perturbed token: MEM {drop_m:.2f}, NMEM {drop_n:.2f} "
            f"({'memorized paragraphs are harder to corrupt, as in the paper' if drop_m < drop_n else 'memorized paragraphs are NOT harder to corrupt here, unlike the paper'}; "
            "note that NMEM EM starts from the model's own greedy continuation, so both start at the full length)."
        ],
    )
