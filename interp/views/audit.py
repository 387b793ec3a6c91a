"""Figures of the forgetting audit: the method x attack heatmap of recovery (interp.audit)."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.audit import AuditResult
from interp.views.export import SEQUENTIAL, paper_style


def figure_audit(result: AuditResult) -> go.Figure:
    """Mean recovery (share of the forgotten EM brought back beyond the never-known null) per method and
    attack; hover: mean EM attacked, the original model under the same attack, the null gain."""
    recovery = result.recovery.nanmean(-1)
    em = result.em_attacked.float().mean(-1)
    orig = result.em_original_attacked.float().mean(-1)
    gain = result.never_known_gain
    y = [f"{m} (median residual {float(r):.2f})" for m, r in zip(result.methods, result.median_residual)]
    custom = [
        [[float(em[m, a]), float(orig[a]), float(gain[m, a])] for a in range(len(result.attacks))]
        for m in range(len(result.methods))
    ]
    fig = go.Figure(
        go.Heatmap(
            z=recovery.tolist(),
            x=list(result.attacks),
            y=y,
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL,
            customdata=custom,
            text=[[f"{v:.2f}" for v in row] for row in recovery.tolist()],
            texttemplate="%{text}",
            colorbar=dict(thickness=12, title="recovery"),
            hovertemplate="%{y}<br>%{x}: recovery %{z:.2f}<br>EM attacked %{customdata[0]:.1f}, "
            "original under attack %{customdata[1]:.1f}, never-known gain %{customdata[2]:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="attack")
    return paper_style(
        fig,
        f"Is it really gone? Recovery of {len(result.ids)} forgotten paragraph(s) beyond the never-known null",
        width=980,
        height=200 + 50 * len(result.methods),
    )
