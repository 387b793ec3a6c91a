"""Figure export: an unchanged figure is copied from the previous export, never exported again."""

from __future__ import annotations

import json

import plotly.graph_objects as go

from interp.views import export


def test_only_changed_figures_are_exported_again(tmp_path, monkeypatch):
    calls: list[list[str]] = []

    def fake_write_images(figs, paths, **_):  # kaleido stand-in: one call per export batch
        calls.append([p.name for p in paths])
        for fig, path in zip(figs, paths):
            path.write_text(fig.to_json())

    monkeypatch.setattr(export.pio, "write_images", fake_write_images)
    monkeypatch.setattr(export, "chromium_path", lambda: "/usr/bin/chromium")
    a, b = go.Figure(go.Bar(y=[1, 2])), go.Figure(go.Bar(y=[3, 4]))
    first = tmp_path / "first"
    export.save_figures({"a": a, "b": b}, first, formats=("png", "svg"))
    assert calls == [["a.png", "a.svg", "b.png", "b.svg"]]
    hashes = json.loads((first / export.FIGURE_HASHES).read_text())
    assert hashes == {"a": export.figure_hash(a), "b": export.figure_hash(b)}

    changed = go.Figure(go.Bar(y=[3, 5]))
    second = tmp_path / "second"
    written = export.save_figures({"a": a, "b": changed}, second, formats=("png", "svg"), previous=first)
    assert calls[1] == ["b.png", "b.svg"]  # only the changed figure went through kaleido
    assert (second / "a.png").read_text() == (first / "a.png").read_text()
    assert json.loads((second / "b.svg").read_text())["data"][0]["y"] == [3, 5]
    assert sorted(p.name for p in written) == ["a.png", "a.svg", "b.png", "b.svg"]

    (second / "a.svg").unlink()  # a missing file is exported again, whatever its hash says
    export.save_figures({"a": a}, tmp_path / "third", formats=("png", "svg"), previous=second)
    assert calls[2] == ["a.png", "a.svg"]
    a.update_layout(width=300)  # the size is part of the hash
    assert export.figure_hash(a) != hashes["a"]
