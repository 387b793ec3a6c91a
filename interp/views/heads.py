"""Figures of the head analyses: rare-token tau maps and curves, ablation and patching heatmaps, the
locator's table (Plotly), and circuitsvis views of attention patterns and perturbation sensitivity.

Results in, figures out. circuitsvis views are returned as `RenderedHTML`; files must use their
offline form, `offline_html(view)` (the JS bundle inlined). Token strings reach circuitsvis as
JSON inside a <script>; `_script_safe` escapes "</" and "<!--" there so a token such as
"</script>" cannot end the script early.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import circuitsvis as cv
import plotly.graph_objects as go
import torch
from circuitsvis.utils.render import RenderedHTML
from plotly.subplots import make_subplots

from interp.locator import registry
from interp.locator.ablation import HeadAblation
from interp.locator.patching import KINDS, PatchingResult
from interp.locator.ranking import HeadRanking
from interp.locator.rare_tokens import RareTokenAttention
from interp.locator.units import UnitScores
from interp.perturbation import PerturbationResult
from interp.views.export import DIVERGING, MEM_COLOR, NMEM_COLOR, labelled_heatmap, paper_style
from interp.views.report_html import escape_strings


def _heads_axes(n_layers: int, n_heads: int) -> tuple[list[str], list[str]]:
    return [f"H{h}" for h in range(n_heads)], [f"L{l}" for l in range(n_layers)]


def _heatmap(z: torch.Tensor, x: list[str], y: list[str], label: str, coloraxis: str = "coloraxis") -> go.Heatmap:
    return go.Heatmap(
        z=z.tolist(),
        x=x,
        y=y,
        coloraxis=coloraxis,
        text=[[f"{v:.2f}" for v in row] for row in z.tolist()],
        texttemplate="%{text}",
        hovertemplate=f"%{{y}} %{{x}}: {label} %{{z:.3f}}<extra></extra>",
    )


def figure_tau_heatmap(mem: RareTokenAttention, nmem: RareTokenAttention | None = None) -> go.Figure:
    """Layer x head EXCESS Kendall tau over the permutation null (negative = attends to rare tokens beyond
    chance); hover shows the raw tau, the null mean, the per-head and the family-wise p (nan: tau undefined)."""
    parts = [("MEM", mem)] + ([("NMEM", nmem)] if nmem is not None and len(nmem.ids) else [])
    fig = make_subplots(rows=1, cols=len(parts), subplot_titles=[f"{name} (n={len(r.ids)})" for name, r in parts])
    n_layers, n_heads = mem.key_attention.shape[1:3]
    x, y = _heads_axes(n_layers, n_heads)
    for col, (_, r) in enumerate(parts, start=1):
        s = r.sum
        custom = torch.stack([s.tau, s.null_mean, s.null_p, s.family_p], -1).tolist()
        fig.add_trace(
            go.Heatmap(
                z=s.excess.tolist(),
                x=x,
                y=y,
                coloraxis="coloraxis",
                customdata=custom,
                text=[[f"{v:.2f}" for v in row] for row in s.excess.tolist()],
                texttemplate="%{text}",
                hovertemplate="%{y} %{x}: excess tau %{z:.3f}<br>tau %{customdata[0]:.3f}, null mean "
                "%{customdata[1]:.3f}, p %{customdata[2]:.3g}, family-wise p %{customdata[3]:.3g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(coloraxis=dict(colorscale=DIVERGING, cmin=-1, cmax=1, cmid=0, colorbar=dict(title="excess tau")))
    return paper_style(
        fig,
        f"Attention vs token frequency rank, beyond chance ({mem.sum.null} null; excess tau < 0: prefers rare tokens)",
        width=420 * len(parts),
    )


def figure_attention_by_rank(
    mem: RareTokenAttention, heads: Sequence[tuple[int, int]], nmem: RareTokenAttention | None = None
) -> go.Figure:
    """Mean attention per frequency rank (0 = rarest in the paragraph) for the given heads."""
    fig = go.Figure()
    present = mem.has_rank.any(0)
    ranks = torch.arange(len(present))[present].tolist()
    for layer, head in heads:
        for name, r, color, dash in (("MEM", mem, MEM_COLOR, "solid"), ("NMEM", nmem, NMEM_COLOR, "dot")):
            if r is None or not len(r.ids):
                continue
            p = r.has_rank.any(0)
            fig.add_trace(
                go.Scatter(
                    x=torch.arange(len(p))[p].tolist(),
                    y=r.mean_by_rank[layer, head, p].tolist(),
                    mode="lines",
                    name=f"L{layer}H{head} {name}",
                    line=dict(color=color, dash=dash),
                    opacity=1.0 if (layer, head) == tuple(heads[0]) else 0.45,
                )
            )
    fig.update_xaxes(title="frequency rank within the prefix (0 = rarest)", range=[0, max(ranks) if ranks else 1])
    where = (
        f"first continuation position ({mem.query_pos})"
        if mem.query == "first_continuation"
        else f"last prefix position ({mem.query_pos})"
    )
    fig.update_yaxes(title=f"mean attention from the {where}")
    return paper_style(fig, "Attention by token rarity")


def figure_ablation(result: HeadAblation, mode: str = "mean") -> go.Figure:
    """Continuation NLL increase per ablated head, MEM and NMEM side by side, and MEM - NMEM."""
    m = result.modes.index(mode)
    n_layers, n_heads = result.nll.shape[1:3]
    x, y = _heads_axes(n_layers, n_heads)
    panels = [("MEM", result.nll_increase(True)[m])]
    if (~result.is_mem).any():
        panels += [("NMEM", result.nll_increase(False)[m]), ("MEM - NMEM", result.effect(mode))]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    bound = max(float(z.abs().max()) for _, z in panels) or 1.0
    for col, (_, z) in enumerate(panels, start=1):
        fig.add_trace(_heatmap(z, x, y, "NLL increase"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(
        coloraxis=dict(colorscale=DIVERGING, cmin=-bound, cmax=bound, cmid=0, colorbar=dict(title="NLL +"))
    )
    return paper_style(
        fig, f"{mode.capitalize()} ablation of each head: continuation NLL increase", width=380 * len(panels)
    )


def figure_patching(result: PatchingResult) -> go.Figure:
    """Normalised patching effect per cell (1 = clean recall restored, 0 = corrupted)."""
    index = KINDS[result.kind][1]
    n_layers, n_index = result.effect.shape
    x = [f"H{i}" for i in range(n_index)] if index == "head" else list(range(n_index))
    y = [f"L{l}" for l in range(n_layers)]
    fig = go.Figure(
        _heatmap(result.effect, x, y, "effect")
        if index == "head"
        else go.Heatmap(
            z=result.effect.tolist(),
            x=x,
            y=y,
            coloraxis="coloraxis",
            hovertemplate="%{y} pos %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="head" if index == "head" else "position")
    fig.update_layout(coloraxis=dict(colorscale=DIVERGING, cmin=-1, cmax=1, cmid=0, colorbar=dict(title="effect")))
    return paper_style(fig, f"{result.method.capitalize()} patching ({result.direction}) of {result.kind}")


def figure_unit_scores(result: UnitScores) -> go.Figure:
    """One method's score per head (layer x head; blank = not scored, e.g. outside the screen's candidates)."""
    n_layers, n_index = result.score.shape
    x, y = _heads_axes(n_layers, n_index)
    z = [[None if v != v else v for v in row] for row in result.score.tolist()]
    return labelled_heatmap(
        z,
        x,
        y,
        text=[[("" if v is None else f"{v:.2f}") for v in row] for row in z],
        hovertemplate=f"%{{y}} %{{x}}: {result.method} %{{z:.3f}}<extra></extra>",
        colorbar_title="score",
        title=f"{result.method.replace('_', ' ').capitalize()} score per head ({result.seconds:.1f} s)",
        colorscale="Viridis",
    )


def figure_method_ranks(ranking: HeadRanking, top: int = 10) -> go.Figure:
    """Each method's rank of the top heads (1 = best): where the methods agree and where not. A head with no
    combined rank (outside the screen) is labelled with its status; a method that did not rank it shows "-"."""
    rows = ranking.head_table()[:top]
    methods = list(ranking.ranks)
    z = [[row["method_ranks"][m] for m in methods] for row in rows]
    labels = [
        f"#{row['rank']} L{row['layer']}H{row['head']}"
        if row["rank"] is not None
        else f"L{row['layer']}H{row['head']} ({row['status']})"
        for row in rows
    ]
    return labelled_heatmap(
        z,
        methods,
        labels,
        text=[["-" if v is None else str(v) for v in row] for row in z],
        hovertemplate="%{y} by %{x}: rank %{z}<extra></extra>",
        colorbar_title="rank",
        title=f"Head ranks per method (table ordered by {', '.join(ranking.rank_by)})",
        height=60 + 34 * len(rows),
        colorscale="Greens",
        reversescale=True,
    )


def _script_safe(view: RenderedHTML, component: str) -> RenderedHTML:
    """Escape "</" and "<!--" in the props JSON that follows `CircuitsVis.<component>,` in both sources."""

    def fix(src: str) -> str:
        marker = f"CircuitsVis.{component},"
        at = src.rfind(marker) + len(marker)
        props = src[at:]
        end = props.rfind("</script>")
        body = props[:end].replace("</", "<\\/").replace("<!--", "<\\!--")
        return src[:at] + body + props[end:]

    return RenderedHTML(fix(view.local_src), fix(view.cdn_src))


def offline_html(view: RenderedHTML, title: str = "interp") -> str:
    """A standalone HTML page for a circuitsvis view, with its JS inlined (works offline)."""
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{view.local_src}</body></html>"


def attention_view(
    str_tokens: list[str], patterns: torch.Tensor, heads: Sequence[tuple[int, int]], rarity: Sequence[int] | None = None
) -> RenderedHTML:
    """circuitsvis attention patterns of the given heads on one paragraph; `patterns` is [layer, head, dest, src].

    Each token is labelled with its frequency rank in the paragraph ("[r0]" = the rarest).
    """
    labels = [f"{tok}[r{r}]" for tok, r in zip(str_tokens, rarity)] if rarity is not None else list(str_tokens)
    labels = escape_strings(labels)  # circuitsvis renders tokens as HTML: escaped, they show as text
    attention = torch.stack([patterns[layer, head] for layer, head in heads]).float()
    view = cv.attention.attention_heads(
        attention=attention, tokens=labels, attention_head_names=[f"L{l}H{h}" for l, h in heads]
    )
    return _script_safe(view, "AttentionHeads")


def perturbation_view(result: PerturbationResult, str_tokens: list[list[str]], max_paragraphs: int = 8) -> RenderedHTML:
    """Prefix tokens coloured by the mean EM lost when that token is replaced, one paragraph per line.

    `str_tokens[i]` are paragraph i's prefix tokens as strings; one view (one JS bundle) for all.
    """
    tokens: list[str] = []
    values: list[float] = []
    for i in range(min(len(result.ids), max_paragraphs)):
        tokens += [f"[{result.ids[i]}: mean drop {float(result.mean_em_drop[i]):.1f}] "] + list(str_tokens[i]) + ["\n"]
        values += [0.0] + result.em_drop[i].tolist() + [0.0]
    view = cv.tokens.colored_tokens(
        tokens=escape_strings(tokens), values=values, min_value=0.0, max_value=max(float(result.base_em.max()), 1.0)
    )
    return _script_safe(view, "ColoredTokens")


def ranking_figures(
    ranking: HeadRanking, rare: RareTokenAttention | None = None, rare_nmem: RareTokenAttention | None = None
) -> dict[str, go.Figure]:
    """Every Plotly figure the locator's evidence supports, keyed by a file-friendly name.

    `rare` / `rare_nmem` replace the ranking's rare-token results (e.g. the same attention under another null).
    """
    figs: dict[str, go.Figure] = {"head_method_ranks": figure_method_ranks(ranking)}
    rare = rare if rare is not None else ranking.rare_tokens
    rare_nmem = rare_nmem if rare_nmem is not None else ranking.rare_tokens_nmem
    if rare is not None:
        figs["head_rare_token_tau"] = figure_tau_heatmap(rare, rare_nmem)
        by_tau = rare.excess.nan_to_num(0).flatten().argsort()[:2].tolist()
        n_heads = rare.excess.shape[1]
        heads = [ranking.top] + [
            (i // n_heads, i % n_heads) for i in by_tau if (i // n_heads, i % n_heads) != ranking.top
        ]
        figs["head_attention_by_rank"] = figure_attention_by_rank(rare, heads[:3], rare_nmem)
    for entry in registry.methods("head"):
        if entry.figure and entry.name in ranking.results:
            figs[f"head_{entry.name}"] = figure_unit_scores(ranking.results[entry.name])
    if ranking.patching is not None:
        figs["head_patching"] = figure_patching(ranking.patching)
    if ranking.attribution is not None:
        figs["head_attribution"] = figure_patching(ranking.attribution)
    return figs


HEAD_COLUMNS = (
    "rank",
    "layer",
    "head",
    "patching_effect",
    "ablation_effect",
    "rare_token_tau",
    "rare_token_excess",
    "rare_token_p",
    "rare_token_family_p",
    "gradient_score",
)


def head_table(ranking: HeadRanking, rare: RareTokenAttention | None = None) -> tuple[list[str], list[dict]]:
    """The head table's columns and rows (best first), for the locator's page and the report's section.

    The columns: HEAD_COLUMNS, a column per registered method that declares one (interp.locator.registry),
    then the mean rank and status. The rare-token columns come from `rare` (default: the ranking's own)."""
    rows = ranking.head_table()
    cols = [*HEAD_COLUMNS, *(m.column for m in registry.methods("head") if m.column), "mean_rank", "status"]
    rare = rare if rare is not None else ranking.rare_tokens
    if rare is not None:
        s = rare.sum
        for row in rows:
            at = (row["layer"], row["head"])
            row.update(
                rare_token_excess=float(s.excess[at]),
                rare_token_p=float(s.null_p[at]),
                rare_token_family_p=float(s.family_p[at]),
            )
    return cols, rows


def ranking_page(ranking: HeadRanking, views: Sequence[RenderedHTML] = (), title: str = "Memorization head") -> str:
    """One offline HTML page: the ranked table, the Plotly figures (plotly.js embedded once), circuitsvis views."""
    from plotly.offline import get_plotlyjs

    from interp.views.export import figures_html

    cols, rows = head_table(ranking)

    def cell(v):
        return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    table = (
        "<table border=1 cellpadding=4 style='border-collapse:collapse'><tr>"
        + "".join(f"<th>{c}</th>" for c in cols)
        + "</tr>"
    )
    table += "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows) + "</table>"
    agreement = "".join(f"<li>{k}: {v:.2f}</li>" for k, v in ranking.agreement.items())
    notes = "".join(f"<li>{n}</li>" for n in ranking.notes)
    figs = "\n".join(figures_html(ranking_figures(ranking).values()))
    body = (
        f"<h1>{title}</h1><p>Top head: layer {ranking.top[0]}, head {ranking.top[1]} "
        f"({len(ranking.mem_ids)} MEM, {len(ranking.nmem_ids)} NMEM paragraphs). Ordered by "
        f"{', '.join(ranking.rank_by)} ({html.escape(ranking.combination_reason)}).</p><p>Seconds per method: "
        + ", ".join(f"{m} {v:.1f}" for m, v in ranking.seconds.items())
        + f".</p>{table}<h2>Agreement between methods (Kendall tau)</h2><ul>{agreement}</ul>"
        f"<ul>{notes}</ul>{figs}" + "".join(v.local_src for v in views)
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<script>{get_plotlyjs()}</script></head><body>{body}</body></html>"
    )
