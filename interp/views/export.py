"""Paper-style defaults for Plotly figures, and saving them as self-contained HTML, PNG and SVG."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

PAPER_FONT = dict(family="Helvetica, Arial, sans-serif", size=13, color="#222")
DIVERGING = "RdBu_r"  # MEM - NMEM and effects: red = more for MEM, blue = less
SEQUENTIAL = "Viridis"
MEM_COLOR, NMEM_COLOR = "#d62728", "#1f77b4"


def paper_style(fig: go.Figure, title: str | None = None, width: int = 720, height: int = 440) -> go.Figure:
    """White background, thin axes, readable fonts: the look of a paper figure."""
    fig.update_layout(
        template="simple_white",
        font=PAPER_FONT,
        width=width,
        height=height,
        margin=dict(l=70, r=30, t=60 if title else 30, b=60),
        title=dict(text=title, x=0.5, xanchor="center") if title else None,
    )
    return fig


def heatmap_style(
    fig: go.Figure, title: str | None = None, width: int = 720, height: int = 440, *, x_title: str | None = None
) -> go.Figure:
    """`paper_style` for heatmaps: the first row on top, as in the matrix (and in the tables beside the figures);
    the x axes titled `x_title` when given."""
    fig.update_yaxes(autorange="reversed")
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    return paper_style(fig, title, width, height)


def labelled_heatmap(
    z: list[list],
    x: list[str],
    y: list[str],
    *,
    text: list[list[str]],
    hovertemplate: str,
    colorbar_title: str,
    title: str,
    height: int = 440,
    **style,
) -> go.Figure:
    """A figure of one heatmap whose cells show their `text` (ranks, scores); `style`: the trace's colours."""
    heatmap = go.Heatmap(
        z=z,
        x=x,
        y=y,
        text=text,
        texttemplate="%{text}",
        hovertemplate=hovertemplate,
        colorbar=dict(title=colorbar_title),
        **style,
    )
    return heatmap_style(go.Figure(heatmap), title, height=height)


def share_heatmap(
    z: list[list], x: list[str], y: list[str], *, hovertemplate: str, colorbar_title: str, show_scale: bool, **more
) -> go.Heatmap:
    """A panel of shares in [0, 1] (recovered fractions) on the sequential scale; of several panels, one shows the
    scale (`show_scale`)."""
    return go.Heatmap(
        z=z,
        x=x,
        y=y,
        zmin=0.0,
        zmax=1.0,
        colorscale=SEQUENTIAL,
        showscale=show_scale,
        colorbar=dict(thickness=12, title=colorbar_title),
        hovertemplate=hovertemplate,
        **more,
    )


def chromium_path() -> str | None:
    """Debian's Chromium, which kaleido needs for PNG / SVG export."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


FIGURE_HASHES = "figures.sha256.json"
"""Beside exported figures: each figure's hash (its plotly JSON and size), so an unchanged one is reused."""


def figure_hash(fig: go.Figure) -> str:
    return hashlib.sha256(f"{fig.to_json()}|{fig.layout.width}|{fig.layout.height}".encode()).hexdigest()


def save_figures(
    figures: dict[str, go.Figure],
    out_dir: str | Path,
    formats: Sequence[str] = ("html", "png", "svg"),
    previous: str | Path | None = None,
) -> list[Path]:
    """Write each figure as `<out_dir>/<name>.<fmt>`; HTML files are self-contained (offline).

    Static images go through kaleido in one batch (each call starts a browser). Without a
    Chromium the static formats are skipped with a warning naming the fix. `previous`: a folder this
    function wrote before; a figure whose hash (`FIGURE_HASHES`) and files are there is copied, not
    exported again. The hashes of the figures written go to `<out_dir>/FIGURE_HASHES`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    hashes = {name: figure_hash(fig) for name, fig in figures.items()}
    old = _hashes(Path(previous)) if previous is not None else {}
    reused = {
        name
        for name, h in hashes.items()
        if old.get(name) == h and all((Path(previous) / f"{name}.{fmt}").exists() for fmt in formats)
    }
    for name in reused:
        for fmt in formats:
            shutil.copy2(Path(previous) / f"{name}.{fmt}", out_dir / f"{name}.{fmt}")
            written.append(out_dir / f"{name}.{fmt}")
    figures = {name: fig for name, fig in figures.items() if name not in reused}
    if "html" in formats:
        for name, fig in figures.items():
            path = out_dir / f"{name}.html"
            fig.write_html(path, include_plotlyjs=True, full_html=True)
            written.append(path)
    static = [f for f in formats if f in ("png", "svg", "pdf")]
    if static and figures:
        if chromium_path() is None:
            import warnings

            warnings.warn("no Chromium found: PNG/SVG export skipped (install Debian's `chromium`)", stacklevel=2)
        else:
            figs, paths = [], []
            for name, fig in figures.items():
                for fmt in static:
                    figs.append(fig)
                    paths.append(out_dir / f"{name}.{fmt}")
            pio.write_images(
                figs,
                paths,
                scale=2,  # 2x for print-quality PNGs, at each figure's own layout size
                width=[f.layout.width or 720 for f in figs],
                height=[f.layout.height or 440 for f in figs],
            )
            written += paths
    done = {name for name in hashes if all((out_dir / f"{name}.{fmt}").exists() for fmt in formats)}
    (out_dir / FIGURE_HASHES).write_text(json.dumps({name: hashes[name] for name in sorted(done)}, indent=1))
    return written


def _hashes(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / FIGURE_HASHES).read_text())
    except (OSError, ValueError):
        return {}


def figures_html(figures: Iterable[go.Figure]) -> list[str]:
    """HTML <div>s for figures that share ONE plotly.js embedded elsewhere on the page."""
    return [fig.to_html(full_html=False, include_plotlyjs=False) for fig in figures]
