"""A locator method added through the registry alone runs in `unit_method` and the locator, and shows in the views."""

from __future__ import annotations

import pytest
import torch

from interp.data import Paragraphs
from interp.errors import UserError
from interp.locator import registry
from interp.locator.options import DEFAULT_METHODS, HEAD_METHODS, NEURON_METHODS, SCREENED
from interp.locator.ranking import locate_memorization_head, unit_method
from interp.locator.units import MethodCall, UnitScores
from interp.views.heads import head_table, ranking_figures, ranking_page

CALLS: list[MethodCall] = []


def toy(call: MethodCall) -> UnitScores:
    """Scores layer * 10 + head (+ an optional offset): the last head of the last layer first."""
    CALLS.append(call)
    n_layers, n_heads = call.model.cfg.n_layers, call.model.cfg.n_heads
    score = torch.arange(n_layers)[:, None] * 10.0 + torch.arange(n_heads)[None] + call.options.get("offset", 0.0)
    return UnitScores("toy", call.unit, score, 0.0, dict(call.options))


@pytest.fixture
def toy_method():
    CALLS.clear()
    registry.register(registry.Method("toy", ("head",), run=toy, figure=True, column="toy_score"))
    yield "toy"
    registry.unregister("toy")


def paragraphs(n: int, seed: int) -> Paragraphs:
    tokens = torch.randint(0, 50, (n, 8), generator=torch.Generator().manual_seed(seed))
    return Paragraphs(tokens, 4, tuple(f"s{seed}p{i}" for i in range(n)))


def test_the_shipped_methods_keep_their_names_order_and_defaults():
    assert HEAD_METHODS == (
        "rare_token", "gradient", "attribution", "patching", "gradient_l2", "grad_x_weight", "fisher",
        "perturbed_gradient", "ablation", "zero_out", "integrated_gradients", "hard_concrete", "slimming",
    )  # fmt: skip
    assert NEURON_METHODS == ("activation", *HEAD_METHODS[4:])
    assert DEFAULT_METHODS == ("rare_token", "gradient", "attribution", "patching", "ablation")
    neuron_defaults = ("activation", "zero_out", "integrated_gradients", "hard_concrete", "slimming")
    assert registry.defaults("neuron") == neuron_defaults
    assert SCREENED == ("patching", "ablation", "zero_out")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Method("ablation", ("head",)))


def test_a_registered_method_runs_through_unit_method(tiny_model, toy_method):
    model = tiny_model()
    mem, nmem = paragraphs(3, 0), paragraphs(3, 1)
    result = unit_method(model, toy_method, mem, nmem, unit="head", options={"offset": 5.0}, batch_size=2, seed=7)
    assert result.method == "toy" and result.rank_of(model.cfg.n_layers - 1, model.cfg.n_heads - 1) == 1
    call = CALLS[-1]
    assert (call.model, call.mem, call.nmem, call.options, call.batch_size, call.seed) == (
        model, mem, nmem, {"offset": 5.0}, 2, 7
    )  # fmt: skip
    with pytest.raises(UserError, match="no neuron-level form"):
        unit_method(model, toy_method, mem, nmem, unit="neuron")
    with pytest.raises(UserError, match="no head-level form"):
        unit_method(model, "not_registered", mem, nmem, unit="head")


def test_a_registered_method_runs_in_the_locator_and_shows_in_the_head_views(tiny_model, toy_method):
    model = tiny_model()
    ranking = locate_memorization_head(
        model, mem=paragraphs(3, 0), nmem=paragraphs(3, 1), methods=("toy",), method_options={"toy": {"offset": 1.0}}
    )
    last = (model.cfg.n_layers - 1, model.cfg.n_heads - 1)
    assert list(ranking.results) == ["toy"] and ranking.rank_by == ("toy",) and ranking.top == last
    assert CALLS[-1].options == {"offset": 1.0} and CALLS[-1].units is None  # not screened
    cols, rows = head_table(ranking)
    assert cols[-3:] == ["toy_score", "mean_rank", "status"]
    assert (rows[0]["layer"], rows[0]["head"], rows[0]["toy_score"]) == (*last, 10.0 * last[0] + last[1] + 1.0)
    assert "head_toy" in ranking_figures(ranking)
    assert "<th>toy_score</th>" in ranking_page(ranking)
    with pytest.raises(UserError, match="unknown method"):
        locate_memorization_head(model, mem=paragraphs(3, 0), nmem=paragraphs(3, 1), methods=("toy", "nope"))


def test_the_head_table_has_no_registered_column_without_one(tiny_model):
    model = tiny_model()
    ranking = locate_memorization_head(model, mem=paragraphs(3, 0), nmem=paragraphs(3, 1), methods=("zero_out",))
    cols, rows = head_table(ranking)
    assert cols == [
        "rank", "layer", "head", "patching_effect", "ablation_effect", "rare_token_tau", "rare_token_excess",
        "rare_token_p", "rare_token_family_p", "gradient_score", "mean_rank", "status",
    ]  # fmt: skip
    assert "toy_score" not in rows[0] and rows[0]["ablation_effect"] is None
