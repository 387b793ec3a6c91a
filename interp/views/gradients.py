"""Figures of gradient maps (paper Fig. 3 style) and of per-paragraph gradient norms. Results in, figures out."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.gradient_norms import NormComparison, PerParagraphNorms
from interp.gradients import HEAD_COMPONENTS, GradientMap
from interp.views.export import DIVERGING, MEM_COLOR, NMEM_COLOR, SEQUENTIAL, heatmap_style, paper_style

_REDUCE_LABEL = {"max": "max |grad|", "l2": "||grad||", "mean": "mean |grad|"}


def _color_axes(fig: go.Figure, seq_max: float, diff_bound: float, title: str) -> None:
    """coloraxis: MEM and NMEM on one shared scale; coloraxis2: the signed difference around 0."""
    bound = diff_bound or 1.0
    fig.update_layout(
        coloraxis=dict(
            colorscale=SEQUENTIAL,
            cmin=0,
            cmax=seq_max,
            colorbar=dict(title=title, x=1.07, y=0.75, len=0.45, thickness=12),
        ),
        coloraxis2=dict(
            colorscale=DIVERGING,
            cmin=-bound,
            cmax=bound,
            cmid=0,
            colorbar=dict(title="MEM - NMEM", x=1.07, y=0.22, len=0.45, thickness=12),
        ),
    )


def _cell(z, x, y, axis: str, label: str) -> go.Heatmap:
    return go.Heatmap(
        z=z.tolist(), x=x, y=y, coloraxis=axis, hovertemplate=f"{label} %{{y}}, %{{x}}: %{{z:.3g}}<extra></extra>"
    )


def figure_component_map(result: GradientMap) -> go.Figure:
    """Layer x component heatmaps of the gradient score for MEM, NMEM and MEM - NMEM."""
    layers = [f"layer {l}" for l in range(result.mem.shape[0])]
    comps = list(result.components)
    fig = make_subplots(
        rows=1,
        cols=3,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=(f"MEM (n={result.n_mem})", f"NMEM (n={result.n_nmem})", "MEM - NMEM"),
    )
    fig.add_trace(_cell(result.mem, comps, layers, "coloraxis", "MEM"), row=1, col=1)
    fig.add_trace(_cell(result.nmem, comps, layers, "coloraxis", "NMEM"), row=1, col=2)
    fig.add_trace(_cell(result.diff, comps, layers, "coloraxis2", "MEM - NMEM"), row=1, col=3)
    _color_axes(
        fig,
        float(max(result.mem.max(), result.nmem.max())),
        float(result.diff.abs().max()),
        _REDUCE_LABEL[result.reduce],
    )
    return heatmap_style(
        fig,
        f"Gradient {_REDUCE_LABEL[result.reduce]} of the {result.objective} objective per layer and component",
        width=1000,
        height=120 + 45 * len(layers),
    )


def figure_head_map(result: GradientMap, relative: bool = False) -> go.Figure:
    """Layer x head heatmaps for each of W_Q, W_K, W_V, W_O: rows MEM, NMEM and MEM - NMEM.

    relative=True scales each map to sum 1 first, so the bottom row shows where MEM puts
    relatively more gradient than NMEM regardless of overall size.
    """
    mem, nmem = result.mem_heads, result.nmem_heads
    if relative:
        mem, nmem = mem / mem.sum(), nmem / nmem.sum()
    diff = mem - nmem
    n_layers, n_heads = mem.shape[:2]
    heads, layers = [str(h) for h in range(n_heads)], [f"layer {l}" for l in range(n_layers)]
    fig = make_subplots(
        rows=3,
        cols=4,
        shared_xaxes=True,
        shared_yaxes=True,
        column_titles=list(HEAD_COMPONENTS),
        row_titles=["MEM", "NMEM", "MEM - NMEM"],
        horizontal_spacing=0.02,
        vertical_spacing=0.05,
    )
    for j, comp in enumerate(HEAD_COMPONENTS):
        for row, (z, axis, label) in enumerate(
            ((mem, "coloraxis", "MEM"), (nmem, "coloraxis", "NMEM"), (diff, "coloraxis2", "MEM - NMEM")), start=1
        ):
            fig.add_trace(_cell(z[:, :, j], heads, layers, axis, f"{label} {comp}"), row=row, col=j + 1)
    what = "share of the map's total" if relative else _REDUCE_LABEL[result.reduce]
    _color_axes(
        fig,
        float(max(mem.max(), nmem.max())),
        float(diff.abs().max()),
        "share" if relative else _REDUCE_LABEL[result.reduce],
    )
    fig.update_xaxes(title="head", row=3)
    fig.update_annotations(selector=dict(textangle=90), xshift=10)
    return heatmap_style(
        fig, f"Per-head gradient ({what}), {result.objective} objective", width=1000, height=200 + 3 * 40 * n_layers
    )


def figure_layer_share(result: GradientMap) -> go.Figure:
    """Each layer's part of the total gradient, MEM next to NMEM: the paper's 'lower layers' claim."""
    layers = [str(l) for l in range(result.mem_layers.shape[0])]
    fig = go.Figure(
        [
            go.Bar(name=f"MEM (n={result.n_mem})", x=layers, y=result.mem_share.tolist(), marker_color=MEM_COLOR),
            go.Bar(name=f"NMEM (n={result.n_nmem})", x=layers, y=result.nmem_share.tolist(), marker_color=NMEM_COLOR),
        ]
    )
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(title="layer", type="category")
    part = "squared gradient norm" if result.reduce == "l2" else _REDUCE_LABEL[result.reduce]
    fig.update_yaxes(title=f"share of the {part} over layers")
    return paper_style(fig, "Where the gradient lands, per layer")


def figure_per_paragraph(
    mem: PerParagraphNorms, nmem: PerParagraphNorms, comparison: NormComparison | None = None, share: bool = False
) -> go.Figure:
    """Per-paragraph gradient norm (or its per-layer share) per layer: box + points, MEM vs NMEM.

    With a comparison, each layer's label carries the rank-biserial r and the Mann-Whitney p.
    """
    values_m = mem.layer_share if share else mem.layer_norms
    values_n = nmem.layer_share if share else nmem.layer_norms
    n_layers = values_m.shape[1]
    labels = [f"layer {l}" for l in range(n_layers)]
    if comparison is not None:
        r = comparison.share_rank_biserial if share else comparison.norm_rank_biserial
        p = comparison.share_p if share else comparison.norm_p
        labels = [f"layer {l}<br>r={float(r[l]):+.2f}, p={float(p[l]):.2g}" for l in range(n_layers)]
    fig = go.Figure()
    for name, values, color, ids in (("MEM", values_m, MEM_COLOR, mem.ids), ("NMEM", values_n, NMEM_COLOR, nmem.ids)):
        fig.add_trace(
            go.Box(
                name=f"{name} (n={values.shape[0]})",
                marker_color=color,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                x=[labels[l] for _ in range(values.shape[0]) for l in range(n_layers)],
                y=values.flatten().tolist(),
                text=[pid for pid in ids for _ in range(n_layers)],
                hovertemplate="%{text}: %{y:.3g}<extra></extra>",
            )
        )
    fig.update_layout(boxmode="group", legend=dict(orientation="h", y=-0.25))
    if share:
        fig.update_yaxes(title="share of the paragraph's squared gradient norm")
    else:
        fig.update_yaxes(title="per-paragraph gradient norm (log)", type="log")
    what = "share per layer" if share else "norm per layer"
    return paper_style(fig, f"Per-paragraph NLL gradient {what}: MEM vs NMEM")
