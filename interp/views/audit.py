"""Figures of the forgetting audit: the method x attack heatmaps of recovery on EM and on log10 p
(interp.audit)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.audit import AuditResult
from interp.views.export import heatmap_style, share_heatmap


def _cells(recovery, applies) -> tuple[list[list[float | None]], list[list[str]]]:
    """Mean recovery per method and attack (None where the attack does not apply), and the cell texts."""
    z, text = [], []
    for m in range(recovery.shape[0]):
        row = [float(recovery[m, a].nanmean()) if bool(applies[m, a]) else None for a in range(recovery.shape[1])]
        z.append(row)
        text.append(["n/a" if v is None else ("-" if math.isnan(v) else f"{v:.2f}") for v in row])
    return z, text


def figure_audit(result: AuditResult) -> go.Figure:
    """Mean recovery (share of the forgotten EM, left, and log10 p, right, brought back beyond the attack's
    null) per method and attack; "n/a" where the attack cannot reach the method (hover: why). Rows name the
    median residual on EM with its 95% interval and n."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("recovery of EM", "recovery of log10 p"), shared_yaxes=True)
    y = []
    for m, method in enumerate(result.methods):
        med, lo, hi, n = result.median(m)
        y.append(f"{method} (median residual {med:.2f} [{lo:.2f}, {hi:.2f}], n={n})")
    why = [[result.not_applicable.get(method, {}).get(a, "") for a in result.attacks] for method in result.methods]
    for col, (recovery, gain, label) in enumerate(
        (
            (result.recovery, result.never_known_gain, "EM"),
            (result.recovery_log10p, result.never_known_gain_log10p, "log10 p"),
        ),
        start=1,
    ):
        z, text = _cells(recovery, result.applies)
        custom = [
            [[float(gain[m, a]), why[m][a] or "applies"] for a in range(len(result.attacks))]
            for m in range(len(result.methods))
        ]
        fig.add_trace(
            share_heatmap(
                z,
                list(result.attacks),
                y,
                hovertemplate=f"%{{y}}<br>%{{x}}: recovery of {label} %{{text}}<br>null gain %{{customdata[0]:.2f}}"
                "<br>%{customdata[1]}<extra></extra>",
                colorbar_title="recovery",
                show_scale=col == 2,
                customdata=custom,
                text=text,
                texttemplate="%{text}",
            ),
            row=1,
            col=col,
        )
    return heatmap_style(
        fig,
        f"Is it really gone? Recovery of {len(result.ids)} forgotten paragraph(s) beyond each attack's null",
        width=1400,
        height=220 + 50 * len(result.methods),
        x_title="attack",
    )
