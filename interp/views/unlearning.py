"""Figures of unlearning: the paper's Figure 5 bars and the layer-by-layer restoration heatmap."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.restore import RestorationResult
from interp.unlearning import UnlearningTable
from interp.views.export import MEM_COLOR, NMEM_COLOR, SEQUENTIAL, paper_style


def figure_unlearning_table(table: UnlearningTable) -> go.Figure:
    """Mean EM after each run: the forgotten MEM target, other MEM paragraphs, NMEM (vs the original's own
    continuation) and the target after the relearning attack; dotted lines = the original model."""
    labels = list(table.labels)
    fig = go.Figure()
    series = [
        ("target MEM", [a["target_em"] for a in table.after], MEM_COLOR),
        ("other MEM", [a["other_mem_em"] for a in table.after], "#ff9896"),
        ("NMEM (vs own greedy)", [a["nmem_em"] for a in table.after], NMEM_COLOR),
    ]
    if any(table.relearned):
        series.append(("target after relearning", [r.get("target_em") for r in table.relearned], "#7f7f7f"))
    for name, values, color in series:
        fig.add_bar(
            x=labels,
            y=values,
            name=name,
            marker_color=color,
            hovertemplate="%{x}<br>" + name + ": %{y:.2f}<extra></extra>",
        )
    for key, color in (("target_em", MEM_COLOR), ("nmem_em", NMEM_COLOR)):
        fig.add_hline(y=table.before[key], line_dash="dot", line_color=color, opacity=0.6)
    fig.update_layout(barmode="group", yaxis_title="mean exact match (tokens)", legend=dict(orientation="h", y=-0.35))
    fig.update_xaxes(tickangle=-30)
    return paper_style(fig, "Unlearning: forgetting vs collateral damage", width=980, height=480)


def figure_restoration(result: RestorationResult) -> go.Figure:
    """Experiment x layer-window heatmaps: fraction of forgotten EM, of the NLL increase, and KRS recovered."""
    x = [f"{l} ({lo}..{hi})" for l, (lo, hi) in enumerate(result.windows)]
    y = list(result.experiments)
    panels = (("EM recovered", result.em_recovered), ("NLL recovered", result.nll_recovered), ("KRS", result.krs))
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[t for t, _ in panels], horizontal_spacing=0.08, shared_yaxes=True
    )
    for col, (title, z) in enumerate(panels, start=1):
        fig.add_trace(
            go.Heatmap(
                z=z.tolist(),
                x=x,
                y=y,
                zmin=0.0,
                zmax=1.0,
                colorscale=SEQUENTIAL,
                showscale=col == 3,
                colorbar=dict(thickness=12, title="fraction"),
                hovertemplate=title + "<br>%{y}, layer %{x}: %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="centre layer (window)")
    fig.update_yaxes(autorange="reversed")
    return paper_style(
        fig,
        f"Restoring the original model into the unlearned one ({len(result.ids)} paragraphs)",
        width=1100,
        height=360,
    )
