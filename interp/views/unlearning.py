"""Figures of unlearning: the paper's Figure 5 bars, the forgetting curves behind them (collateral damage
against target EM along each method's calibration trace) and the layer-by-layer restoration heatmap."""

from __future__ import annotations

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.restore import RestorationResult
from interp.unlearning import UnlearningTable, UnlearnResult
from interp.views.export import MEM_COLOR, NMEM_COLOR, heatmap_style, paper_style, share_heatmap


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


def figure_unlearn_run(result: UnlearnResult) -> go.Figure:
    """One unlearning run: mean target, other MEM and NMEM EM before and after (forgetting vs collateral)."""
    before, after = result.before.summary(), result.after.summary()
    names = {"target_em": "target MEM", "other_mem_em": "other MEM", "nmem_em": "NMEM (vs own greedy)"}
    fig = go.Figure()
    for label, scores, color in (("before", before, NMEM_COLOR), ("after", after, MEM_COLOR)):
        fig.add_bar(x=list(names.values()), y=[scores[k] for k in names], name=label, marker_color=color)
    fig.update_layout(barmode="group", yaxis_title="mean exact match (tokens)")
    return paper_style(fig, f"Unlearning: {result.config.label}")


CURVE_PANELS = (
    ("other_mem_em", "other MEM EM (tokens)"),
    ("nmem_em", "NMEM EM vs own greedy (tokens)"),
    ("heldout_ppl", "held-out perplexity"),
)


def figure_forgetting_curves(table: UnlearningTable) -> go.Figure:
    """Collateral damage (other MEM EM, NMEM EM, held-out perplexity) against forgetting (mean target EM)
    along each method's calibration trace (the rates whose probes were scored): one line per method, points in order
    of the learning rate
    starting from the original model. A ring marks the rate the table ran at (its slice at matched
    forgetting), a cross a point whose target EM rose with the rate (non-monotone trace); diverged rates
    have no scores and are listed in the legend. The dotted line is the calibration's level."""
    fig = make_subplots(rows=1, cols=len(CURVE_PANELS), subplot_titles=[t for _, t in CURVE_PANELS])
    colors = plotly.colors.qualitative.D3
    b = table.before
    for k, cal in enumerate(table.calibrations):
        color = colors[k % len(colors)]
        points = [p for p in cal.points if not p.diverged and p.scores]
        rising = {(d["lr_high"]) for d in cal.non_monotone}
        name = cal.label + (f" (diverged at lr {min(cal.diverged_lrs):.2g})" if cal.diverged_lrs else "")
        x = [b["target_em"]] + [p.mean_em for p in points]
        lrs = ["original"] + [f"{p.lr:.2g}" for p in points]
        symbols = ["circle"] + [
            "circle-open" if p.lr == cal.lr else "x" if p.lr in rising else "circle" for p in points
        ]
        sizes = [6] + [13 if p.lr == cal.lr else 7 for p in points]
        for col, (key, title) in enumerate(CURVE_PANELS, start=1):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[b[key]] + [p.scores[key] for p in points],
                    mode="lines+markers",
                    name=name,
                    legendgroup=cal.label,
                    showlegend=col == 1,
                    line=dict(color=color),
                    marker=dict(symbol=symbols, size=sizes, color=color),
                    customdata=lrs,
                    hovertemplate=f"{cal.label}<br>lr %{{customdata}}<br>target EM %{{x:.1f}}<br>{title}: %{{y:.2f}}"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
    if table.calibrations:
        for col in range(1, len(CURVE_PANELS) + 1):
            fig.add_vline(x=table.calibrations[0].level, line_dash="dot", line_color="#7f7f7f", row=1, col=col)
    fig.update_xaxes(title_text="mean target EM (more forgetting to the right)", autorange="reversed")
    fig.update_layout(legend=dict(orientation="h", y=-0.3))
    return paper_style(
        fig, "Forgetting curves: collateral damage along each method's rate trace", width=1150, height=460
    )


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
            share_heatmap(
                z.tolist(),
                x,
                y,
                hovertemplate=title + "<br>%{y}, layer %{x}: %{z:.2f}<extra></extra>",
                colorbar_title="fraction",
                show_scale=col == 3,
            ),
            row=1,
            col=col,
        )
    return heatmap_style(
        fig,
        f"Restoring the original model into the unlearned one ({len(result.ids)} paragraphs)",
        width=1100,
        height=360,
        x_title="centre layer (window)",
    )
