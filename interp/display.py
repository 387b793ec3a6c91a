"""Notebook display for the result types: `_repr_html_` (a table of the result's headline numbers, so a
result shows as a table when it is the last line of a Jupyter cell) and `figure()` (its main Plotly figure).

A result names the view that draws it as "module:function" in `_view` and imports it only when `figure()`
is called: analyses never import views (views import the result types), so the name is resolved late.
`tests/test_display.py` checks that every `_view` names a function of `interp.views`.
"""

from __future__ import annotations

import html
import importlib
from typing import Any, ClassVar

from interp.io import to_jsonable

MAX_LIST = 8  # lists up to this long are shown inline; longer ones (per paragraph, per head) are left out


class Displayed:
    """Mixin for frozen result dataclasses that define `to_json()`."""

    _view: ClassVar[str]  # "interp.views.<module>:<function>" drawing this result

    def _figure_args(self) -> tuple:
        """The view's positional arguments (default: the result itself)."""
        return (self,)

    def figure(self, **kwargs: Any):
        """The result's main figure (a Plotly `go.Figure`); keyword arguments go to the view."""
        module, _, name = self._view.partition(":")
        return getattr(importlib.import_module(module), name)(*self._figure_args(), **kwargs)

    def _repr_html_(self) -> str:
        return html_table(type(self).__name__, to_jsonable(self.to_json()))  # type: ignore[attr-defined]


def _cell(value: Any) -> str | None:
    """A scalar, or a short list of scalars, as text; None for what does not fit in a cell."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (str, int, bool)):
        return str(value)
    if isinstance(value, list) and len(value) <= MAX_LIST and all(not isinstance(v, (list, dict)) for v in value):
        return ", ".join(_cell(v) or "" for v in value)
    return None


def summary_rows(data: dict) -> list[tuple[str, str]]:
    """(name, value) for every top-level field that fits in a cell, and one level into nested dicts."""
    rows = []
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            if (text := _cell(v)) is not None:
                rows.append((key if sub is None else f"{key}.{sub}", text))
    return rows


def html_table(title: str, data: dict) -> str:
    """An HTML table of `summary_rows(data)` under the caption `title`."""
    esc = html.escape
    body = "".join(f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_rows(data))
    return f"<table><caption>{esc(title)}</caption>{body}</table>"
