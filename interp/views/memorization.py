"""Figures of the memorization split: the EM distribution, memorization by training repeat count,
the extraction probability by EM bin, and per-token views of example paragraphs. Results in,
figures out."""

from __future__ import annotations

import circuitsvis
import plotly.graph_objects as go
import torch

from interp.metrics import em_bins
from interp.views.export import MEM_COLOR, NMEM_COLOR, paper_style


def figure_em_histogram(split) -> go.Figure:
    """How many paragraphs reach each EM (log count): MEM at the right edge, NMEM at the left."""
    cont = split.continuation_len
    counts = split.scores.em.bincount(minlength=cont + 1).tolist()
    colors = [
        NMEM_COLOR if e <= split.nmem_max else MEM_COLOR if e >= split.mem_min else "#999999" for e in range(cont + 1)
    ]
    fig = go.Figure(
        go.Bar(
            x=list(range(cont + 1)),
            y=counts,
            marker_color=colors,
            hovertemplate="EM %{x}: %{y} paragraphs<extra></extra>",
        )
    )
    fig.update_yaxes(type="log", title="paragraphs (log scale)")
    fig.update_xaxes(title=f"exact match EM (greedy continuation tokens correct, of {cont})")
    return paper_style(fig, f"EM distribution: {len(split.mem_idx)} MEM (red), {len(split.nmem_idx)} NMEM (blue)")


def figure_memorization_by_count(split) -> go.Figure:
    """Fraction fully memorized and mean EM / continuation length per training repeat count."""
    rows = split.by_count()
    labels = [str(r["count"]) for r in rows]
    fig = go.Figure(
        [
            go.Bar(
                name="fraction MEM (EM = full)", x=labels, y=[r["fraction_mem"] for r in rows], marker_color=MEM_COLOR
            ),
            go.Bar(
                name="mean EM / continuation length",
                x=labels,
                y=[r["mean_em"] / split.continuation_len for r in rows],
                marker_color=NMEM_COLOR,
            ),
        ]
    )
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title="copies of the paragraph in the training data", type="category")
    fig.update_yaxes(title="fraction", range=[0, 1.05])
    return paper_style(fig, "Memorization by training repeat count")


def figure_log10_p_by_em_bin(scores, nmem_max: int) -> go.Figure:
    """Histogram of log10 p (the probability that sampling reproduces the whole continuation), one
    overlaid series per EM bin: text greedy decoding misses (low EM) can still be likely to sample.
    Paragraphs with p = 0 (a token outside the top k) are counted in the legend, not drawn."""
    bins = em_bins(scores.continuation_len, nmem_max)
    colors = [NMEM_COLOR, "#7fa7d0", "#d08f7f", MEM_COLOR]
    fig = go.Figure()
    for (label, lo, hi), color in zip(bins, colors):
        lp = scores.log10_p[(scores.em >= lo) & (scores.em <= hi)]
        finite = lp[torch.isfinite(lp)]
        zero = f", {len(lp) - len(finite)} with p = 0" if len(finite) < len(lp) else ""
        fig.add_trace(
            go.Histogram(
                x=finite.tolist(),
                name=f"EM {label} (n={len(lp)}{zero})",
                marker_color=color,
                opacity=0.6,
                hovertemplate="log10 p %{x}: %{y} paragraphs<extra></extra>",
            )
        )
    sampling = f"top-{scores.top_k} sampling" if scores.top_k else "sampling at temperature 1"
    fig.update_layout(barmode="overlay", legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title=f"log10 p: probability that {sampling} reproduces the whole continuation")
    fig.update_yaxes(type="log", title="paragraphs (log scale)")
    return paper_style(fig, "Extraction probability by EM bin")


def figure_nll_vs_em(split) -> go.Figure:
    """Continuation NLL against EM for every paragraph: memorized text has near-zero loss."""
    em, nll = split.scores.em.tolist(), split.scores.nll.tolist()
    hover = [f"{pid}<br>copies {c}" for pid, c in zip(split.scores.ids, split.counts or ["?"] * len(em))]
    fig = go.Figure(
        go.Scatter(
            x=em,
            y=nll,
            mode="markers",
            text=hover,
            marker=dict(size=5, opacity=0.5, color=NMEM_COLOR),
            hovertemplate="%{text}<br>EM %{x}, NLL %{y:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(title="EM")
    fig.update_yaxes(title="continuation NLL (nats / token)")
    return paper_style(fig, "Continuation loss against exact match")


def view_example_tokens(split) -> dict[str, circuitsvis.utils.render.RenderedHTML]:
    """Per-token loss of the true token on example MEM and NMEM paragraphs (circuitsvis, offline form)."""
    views = {}
    for ex in split.examples:
        caption = (
            f"{ex['kind'].upper()} paragraph {ex['id']} (EM {ex['em']}): per-token loss; the first "
            f"{ex['prefix_len']} tokens are the prefix"
        )
        views[caption] = circuitsvis.tokens.colored_tokens(
            tokens=ex["str_tokens"],
            values=ex["token_nll"],
            min_value=0.0,
            max_value=8.0,
            negative_color="white",
            positive_color="red",
        )
    return views


def figure_perturbation_by_position(mem, nmem) -> go.Figure:
    """Mean EM lost when one prefix position is replaced by a random token, MEM vs NMEM (paper section 4)."""
    fig = go.Figure()
    for name, result, color in (("MEM", mem, MEM_COLOR), ("NMEM", nmem, NMEM_COLOR)):
        if len(result.ids):
            drop = result.em_drop.mean(0)
            fig.add_trace(
                go.Scatter(
                    x=list(range(len(drop))),
                    y=drop.tolist(),
                    mode="lines+markers",
                    marker_color=color,
                    name=f"{name} (n={len(result.ids)}, mean {float(drop.mean()):.2f})",
                    hovertemplate="position %{x}: EM drop %{y:.2f}<extra></extra>",
                )
            )
    fig.update_xaxes(title="perturbed prefix position")
    fig.update_yaxes(title="mean EM drop (tokens)")
    fig.update_layout(legend=dict(orientation="h", y=-0.25))
    return paper_style(fig, "EM lost per perturbed prefix token")
