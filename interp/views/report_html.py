"""Assemble ONE self-contained HTML report: text, tables, Plotly figures and circuitsvis views.

plotly.js and the circuitsvis bundle are embedded once each, so the file opens offline and stays
a few MB however many figures it holds. Every piece of text (titles, token strings, paragraph
text, provenance) is HTML-escaped; data handed to scripts is JSON with `<`, `>` and `&` escaped,
so a token such as `</script><script>` shows as text and never runs. circuitsvis itself writes
token strings into the page as HTML (innerHTML), so its props are HTML-escaped before they go in.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import circuitsvis
from plotly.offline import get_plotlyjs

from interp.report_types import Section, Table  # noqa: F401 (Table: imported from here too)
from interp.views.export import figures_html

CIRCUITSVIS_BUNDLE = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"


@dataclass(frozen=True)
class CircuitsVisView:
    """A circuitsvis view taken apart: which React component, and its props."""

    component: str
    props: Any


_RENDER_CALL = re.compile(
    r'^\s*CircuitsVis\.render\(\s*"(?P<uuid>[\w-]+)",\s*CircuitsVis\.(?P<component>\w+),\s*(?P<props>.*)\)\s*</script>\s*$',
    re.DOTALL,
)


@cache
def _circuitsvis_bundle() -> str:
    return CIRCUITSVIS_BUNDLE.read_text(encoding="utf-8")


def _circuitsvis_js() -> str:
    """The circuitsvis bundle as a classic script that defines the global `CircuitsVis`."""
    return _script_safe(_circuitsvis_bundle())


def parse_circuitsvis(rendered: Any) -> CircuitsVisView:
    """Recover the component name and props from a circuitsvis view's offline `.local_src`.

    circuitsvis writes its props into the page unescaped (a token `</script>` ends its script
    early), so the report never embeds `.local_src` as is: it re-emits the same call with safe JSON.
    """
    src = rendered.local_src
    bundle = _circuitsvis_bundle().replace("</script>", "")  # as circuitsvis inlines it
    at = src.find(bundle)
    match = _RENDER_CALL.match(src[at + len(bundle) :]) if at >= 0 else None
    if match is None:
        raise ValueError(
            "unrecognised circuitsvis output: this circuitsvis version renders differently; update interp.views.report_html"
        )
    return CircuitsVisView(component=match["component"], props=json.loads(match["props"]))


def _script_safe(js: str) -> str:
    """Keep a `</script` inside a script's text from ending it (JS reads `<\\/` in a string as `</`)."""
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)


def safe_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` characters at all."""
    return json.dumps(obj).replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(_fmt(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    return f'<table class="numbers"><caption>{_esc(table.caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _paragraphs_html(text: str) -> str:
    return "".join(f"<p>{_esc(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def escape_strings(obj: Any) -> Any:
    """Every string inside `obj` HTML-escaped. circuitsvis puts token strings into the page with
    innerHTML, so a token `<img src=x onerror=...>` would become a live element; escaped, it shows as text."""
    if isinstance(obj, str):
        return html.escape(obj, quote=False)
    if isinstance(obj, list):
        return [escape_strings(v) for v in obj]
    if isinstance(obj, dict):
        return {k: escape_strings(v) for k, v in obj.items()}
    return obj


def _view_html(div_id: str, caption: str, rendered: Any) -> str:
    view = parse_circuitsvis(rendered)
    return (
        f'<div class="cv-view"><p class="cv-caption">{_esc(caption)}</p><div id="{div_id}"></div>'
        f"<script>CircuitsVis.render({safe_json(div_id)}, CircuitsVis[{safe_json(view.component)}], "
        f"{safe_json(escape_strings(view.props))});</script></div>"
    )


def _provenance_html(provenance: Mapping[str, Any]) -> str:
    rows = []
    for group, values in provenance.items():
        if isinstance(values, Mapping):
            inner = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_fmt(v))}</td></tr>" for k, v in values.items())
            rows.append(f'<h3>{_esc(group)}</h3><table class="prov">{inner}</table>')
        else:
            rows.append(f"<p><b>{_esc(group)}</b>: {_esc(_fmt(values))}</p>")
    return "".join(rows)


STYLE = """
body { font-family: Helvetica, Arial, sans-serif; color: #222; max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
caption { text-align: left; font-weight: bold; padding: .3em 0; }
.note { background: #f4f7fb; border-left: 4px solid #1f77b4; padding: .4em .8em; margin: .6em 0; }
.figure { margin: 1.2em 0; } .cv-view { margin: 1.2em 0; min-height: 2em; } .cv-caption { font-weight: bold; margin: .2em 0; }
nav ul { columns: 2; } code { background: #f3f3f3; padding: 0 .2em; }
"""


def report_html(title: str, provenance: Mapping[str, Any], sections: Sequence[Section], intro: str = "") -> str:
    """The whole report as one HTML string that needs no network to display."""
    needs_cv = any(s.views for s in sections)
    toc = "".join(f'<li><a href="#{_esc(s.key)}">{_esc(s.title)}</a></li>' for s in sections)
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{STYLE}</style>",
        f"<script>{_script_safe(get_plotlyjs())}</script>",
        f"<script>{_circuitsvis_js()}</script>" if needs_cv else "",
        "</head><body>",
        f"<h1>{_esc(title)}</h1>",
        _paragraphs_html(intro),
        f'<nav><ul>{toc}<li><a href="#provenance">Model and data provenance</a></li></ul></nav>',
    ]
    for n_section, section in enumerate(sections):
        parts.append(f'<section id="{_esc(section.key)}"><h2>{_esc(section.title)}</h2>')
        parts.append(_paragraphs_html(section.text))
        parts += [f'<div class="note">{_esc(n)}</div>' for n in section.notes]
        parts += [_table_html(t) for t in section.tables]
        for (name, _), div in zip(section.figures.items(), figures_html(section.figures.values())):
            parts.append(f'<div class="figure" data-figure="{_esc(section.key)}_{_esc(name)}">{div}</div>')
        parts += [
            _view_html(f"cv-{n_section}-{i}", caption, view) for i, (caption, view) in enumerate(section.views.items())
        ]
        parts.append("</section>")
    parts.append(f'<section id="provenance"><h2>Model and data provenance</h2>{_provenance_html(provenance)}</section>')
    parts.append("</body></html>")
    return "\n".join(parts)
