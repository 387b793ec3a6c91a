"""Notebook display: every main result type renders as an HTML table of its headline numbers
(`_repr_html_`) and draws its main figure (`figure()`), on small runs of the testbed."""

from __future__ import annotations

import html
import re

import plotly.graph_objects as go
import pytest
import torch

import interp
from interp.audit import AuditConfig, audit
from interp.display import Displayed, summary_rows
from interp.io import to_jsonable
from interp.memorization import mem_nmem_thresholds
from interp.unlearning import RelearnConfig, UnlearnConfig, probe_sets, unlearning_table

PREFIX, CONT, VOCAB = 8, 8, 48


@pytest.fixture(scope="module")
def runs():
    """One small run of each analysis on a tiny random model: 6 paragraphs it recites (random prefixes and
    its own greedy continuations) and 40 of random text it does not."""
    from factories import tiny_model

    from interp.data import Paragraphs
    from interp.metrics import greedy_continuations

    torch.set_num_threads(1)
    model = tiny_model(n_layers=4, d_vocab=VOCAB, n_ctx=PREFIX + CONT, window_size=4, seed=3, initializer_range=0.3)
    gen = torch.Generator().manual_seed(0)
    prefixes = torch.randint(0, VOCAB, (6, PREFIX), generator=gen)
    recited = torch.cat([prefixes, greedy_continuations(model, prefixes, CONT)], 1)
    tokens = torch.cat([recited, torch.randint(0, VOCAB, (80, PREFIX + CONT), generator=gen)])
    paragraphs = Paragraphs(tokens, PREFIX, tuple(f"p{i}" for i in range(len(tokens))))
    split = interp.memorization_split(model, paragraphs)
    mem, nmem = paragraphs.select(split.mem_idx[:6]), paragraphs.select(split.nmem_idx[:20])
    config = UnlearnConfig(lr=3e-2, steps=2)
    probe = probe_sets(model, mem.select([2, 3]), nmem.select(range(12, 16)), nmem.select(range(16, 20)))
    unlearned = interp.unlearn(model, mem.select([0]), nmem.select(range(4)), config, probe=probe)
    ranking = interp.locate_memorization_head(
        model, mem=mem, nmem=nmem.select(range(4)), reference=nmem.select(range(4, 8)),
        methods=("attribution", "patching"), candidates=3,
    )
    return {
        "MemorizationSplit": split,
        "GradientMap": interp.gradient_map(model, mem.select(range(4)), nmem.select(range(4))),
        "HeadRanking": ranking,
        "UnitScores": ranking.results["attribution"],
        "PerturbationResult": interp.prefix_perturbation(
            model, paragraphs.select([0, 1, 50, 51]), samples_per_position=1, reference="true"
        ),
        "UnlearnResult": unlearned,
        "UnlearningTable": unlearning_table(
            model, mem.select([0]), nmem.select(range(8)), [config], probe, retain_per_run=4,
            relearn_config=RelearnConfig(steps=1),
        ),
        "RestorationResult": interp.restoration(model, unlearned.model, mem.select([0])),
        "AuditResult": audit(
            model, {"unlearn": unlearned.model}, mem.select([0]), nmem.select(range(2)),
            config=AuditConfig(attacks=("int8",)),
        ),
        "LocatorValidation": interp.validate_locator(
            model, paragraphs, heads=[(1, 0)], n_inject=1, methods=("attribution", "patching"), candidates=3,
            max_steps=2, nmem_max=CONT - 1,
        ),
    }


# per type: a headline field of to_json() and how to compute it from the result's own attributes
HEADLINES = {
    "MemorizationSplit": ("n_mem", lambda r: len(r.mem_idx)),
    "GradientMap": ("n_mem", lambda r: r.n_mem),
    "HeadRanking": ("top.layer", lambda r: r.top[0]),
    "UnitScores": ("method", lambda r: r.method),
    "PerturbationResult": ("mean_em_drop", lambda r: float(r.mean_em_drop.mean())),
    "UnlearnResult": ("after.target_em", lambda r: r.after.summary()["target_em"]),
    "UnlearningTable": ("before.target_em", lambda r: r.before["target_em"]),
    "RestorationResult": ("em_original", lambda r: r.em_original),
    "AuditResult": ("targets", lambda r: list(r.ids)),
    "LocatorValidation": ("n_heads_with_evidence", lambda r: len(r.usable_heads())),
}


def _text(value) -> str:
    from interp.display import _cell

    return _cell(to_jsonable(value))


@pytest.mark.parametrize("name", sorted(HEADLINES))
def test_result_renders_a_table_and_a_figure(runs, name):
    result = runs[name]
    assert isinstance(result, Displayed) and type(result).__name__ == name
    page = result._repr_html_()
    assert page.startswith("<table>") and f"<caption>{name}</caption>" in page
    key, expected = HEADLINES[name]
    row = f"<th style='text-align:left'>{html.escape(key)}</th><td>{html.escape(_text(expected(result)))}</td>"
    assert row in page
    fig = result.figure()
    assert isinstance(fig, go.Figure) and len(fig.data) > 0


def test_summary_rows_keep_scalars_and_short_lists_and_drop_the_rest():
    data = {"n": 3, "x": 0.123456, "ids": ["a", "b"], "per_paragraph": list(range(20)), "share": {"mem": 0.5, "rows": [[1]]}}
    assert summary_rows(data) == [("n", "3"), ("x", "0.1235"), ("ids", "a, b"), ("share.mem", "0.5")]


def test_every_view_a_result_names_is_a_function_of_interp_views():
    import importlib

    for cls in Displayed.__subclasses__():
        module, _, name = cls._view.partition(":")
        assert module.startswith("interp.views.") and callable(getattr(importlib.import_module(module), name)), cls


def test_perturbation_figure_splits_mem_and_nmem_by_base_em(runs):
    result = runs["PerturbationResult"]
    mem, nmem = result._figure_args()
    mem_min, nmem_max = mem_nmem_thresholds(CONT)
    assert bool((mem.base_em >= mem_min).all()) and bool((nmem.base_em <= nmem_max).all()) and len(mem.ids) == 2
    assert len(mem.ids) + len(nmem.ids) == int(((result.base_em >= mem_min) | (result.base_em <= nmem_max)).sum())


def test_method_ranks_figure_labels_unranked_heads_by_their_status(runs):
    fig = runs["HeadRanking"].figure(top=6)  # 3 heads screened: the other 3 rows have no combined rank
    labels = list(fig.data[0].y)
    assert [bool(re.match(r"#\d+ L\d+H\d+$", s)) for s in labels] == [True] * 3 + [False] * 3
    assert all(s.endswith("(outside the screen)") for s in labels[3:])
    assert not any("None" in s for s in labels)
    assert all(v != "None" and v != "null" for row in fig.data[0].text for v in row)
    assert "-" in fig.data[0].text[3]  # patching never ran on a head outside the screen
