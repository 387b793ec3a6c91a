"""The report's words match the options it ran with: rendered under the defaults and under --paper on a
small model, each section's text names the query position the code read, the statistic and null it used,
and the learning rates the unlearning runs ran at."""

from __future__ import annotations

import html
import json
import re

import pytest
import torch
from factories import tiny_model

from interp.data import Paragraphs
from interp.report import ReportOptions, run_report

pytestmark = pytest.mark.slow  # renders the pipeline twice: minutes on 2 shared cores

PREFIX = 20
SMALL = dict(
    n_mem=2,
    n_nmem=24,
    n_examples=0,
    grad_batch_size=8,
    n_perturb=1,
    perturb_samples=1,
    unlearn_targets=1,
    unlearn_steps=2,
    unlearn_methods=("unlearn",),
    reft=False,
    relearn_steps=0,
    probe=1,
    validate_locator=False,
    steps=("gradients", "heads", "unlearning"),
    progress=False,
)


@pytest.fixture(scope="module")
def small():
    """A tiny random GPT-Neo and 30 paragraphs of 20 + 20 tokens: 6 continue with the model's own greedy
    continuation (MEM), the rest are random (NMEM)."""
    model = tiny_model(n_ctx=48, d_vocab=64)
    tokens = torch.randint(0, 64, (30, 2 * PREFIX), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for pos in range(PREFIX, 2 * PREFIX):
            tokens[:6, pos] = model(tokens[:6, :pos])[:, -1].argmax(-1)
    return model, Paragraphs(tokens, PREFIX, tuple(f"p{i}" for i in range(30)))


def _render(small, options: ReportOptions, out) -> tuple[str, dict]:
    model, paragraphs = small
    run_report(model, paragraphs, out, options=options, image_formats=())
    page = html.unescape(re.sub(r"<[^>]+>", " ", (out / "report.html").read_text()))
    return re.sub(r"\s+", " ", page), json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def reports(small, tmp_path_factory):
    return {
        "toolkit": _render(small, ReportOptions(**SMALL), tmp_path_factory.mktemp("toolkit")),
        "paper": _render(small, ReportOptions.paper(**SMALL), tmp_path_factory.mktemp("paper")),
    }


@pytest.mark.parametrize("preset", ["toolkit", "paper"])
def test_heads_text_names_the_query_position_statistic_and_null_the_code_used(reports, preset):
    text, results = reports[preset]
    heads = results["steps"]["heads"]["result"]
    rare = heads["ranking"]["rare_tokens"]["mem"]
    assert rare["query"] == "first_continuation" and rare["query_pos"] == PREFIX
    # the position the code read, in words: it holds the first continuation token and predicts the second
    assert f"the first continuation position (index {PREFIX}, which holds the first continuation token and " in text
    assert "predicts the second" in text and "the position that predicts the first continuation token" not in text
    score = "minus the excess tau over the null" if preset == "toolkit" else "minus the raw summed tau"
    assert heads["options"]["rare_token_score"] == ("excess" if preset == "toolkit" else "tau")
    assert f"The locator's rare-token score is {score}" in text
    assert heads["options"]["rare_token_null"] == "pair_paragraphs"
    assert "paired with another paragraph's frequency ranks" in text and "draws of the pair_paragraphs null" in text
    assert re.search(r"family-wise p = [0-9.e-]+ over all 8 heads", text)
    specific = heads["mem_specific_head"]
    assert f"label-permutation p = {specific['p']:.3g}" in text


@pytest.mark.parametrize("preset", ["toolkit", "paper"])
def test_gradients_text_names_the_share_and_the_test(reports, preset):
    text, results = reports[preset]
    low = results["steps"]["gradients"]["result"]["comparison"]["lower_half_share"]
    assert f"Mann-Whitney p = {low['p']:.2g}" in text and low["verdict"] in text
    assert "share of the squared gradient norm (L2)" in text and "max-|grad| per-layer total" not in text


def test_unlearning_text_shows_the_rates_the_runs_ran_at(reports):
    for preset in ("toolkit", "paper"):
        text, results = reports[preset]
        table = results["steps"]["unlearning"]["result"]["table"]
        rates = [row["config"]["lr"] for row in table["rows"] if row["config"].get("kind") == "weights"]
        assert rates, preset
        baselines = [row["config"] for row in table["rows"] if row["config"].get("method") == "ga"]
        assert [c["select"] for c in baselines] == ["all"], preset  # the default baseline row, on all weights
        if preset == "paper":  # one rate for every run, the authors' 1e-5, printed as such
            assert set(rates) == {1e-5} and "same learning rate" in text and "1e-05" in text
        else:  # calibrated per run: the rates shown are the calibrated ones, not the paper's
            assert 1e-5 not in rates and "Matched forgetting" in text
            assert all(f"{lr:.4g}" in text for lr in rates)
