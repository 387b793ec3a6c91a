"""Results read back as well as they are written: `from_json` of what `to_json` wrote (through JSON, NaN as null)
gives a result that writes the same JSON again, with its tensors in their dtypes and shapes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from factories import random_text, recitation_model, recited, tiny_model

from interp.data import Paragraphs
from interp.errors import UserError
from interp.io import float_from_json, tensor_from_json, to_jsonable
from interp.locator.ablation import unit_ablation
from interp.locator.ranking import NeuronRanking, locate_neurons
from interp.locator.rare_tokens import RareTokenAttention, SpecificHead, TauStatistics, mem_specific_head
from interp.locator.units import UnitScores
from interp.unlearning.evaluation import evaluate, probe_sets

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _written(result, *args) -> dict:
    """What `result.to_json(*args)` gives once written as JSON and read again."""
    return json.loads(json.dumps(to_jsonable(result.to_json(*args))))


def _read_back(result, **readers):
    """`from_json` of the written result, checked to write the same JSON again."""
    data = _written(result)
    back = type(result).from_json(data, **readers)
    assert type(back) is type(result)
    assert _written(back) == data
    return back


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.isnan(), b.isnan())
    assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)) if a.is_floating_point() else torch.equal(a, b)


def test_json_nulls_come_back_as_nan():
    assert math.isnan(float_from_json(None)) and float_from_json(2) == 2.0
    t = tensor_from_json([[1.5, None], [None, -2.0]], torch.float32)
    assert t.dtype == torch.float32 and t.shape == (2, 2) and t.isnan().tolist() == [[False, True], [True, False]]
    assert tensor_from_json([], torch.long).shape == (0,)


@pytest.fixture(scope="module")
def attention():
    """MEM and NMEM rare-token attention as test_attention builds it; head (0, 0) attends nowhere (undefined tau)."""
    gen = torch.Generator().manual_seed(3)
    n, keys = 24, 10
    ranks = torch.stack([torch.randperm(keys, generator=gen) for _ in range(2 * n)])
    att = torch.softmax(torch.randn(2 * n, 2, 2, keys, generator=gen), -1)
    att[:n, 0, 1] = torch.softmax(-1.0 * ranks[:n].float(), -1)
    att[:, 0, 0] = 0.0
    ids = tuple(str(i) for i in range(2 * n))
    mem = RareTokenAttention(ids[:n], "first_continuation", keys, att[:n], ranks[:n], null_draws=50)
    nmem = RareTokenAttention(ids[n:], "first_continuation", keys, att[n:], ranks[n:], null_draws=50)
    return mem, nmem


@pytest.mark.parametrize("statistic", ["sum", "mean"])
def test_tau_statistics_read_back(attention, statistic):
    tau = getattr(attention[0], statistic)
    back = _read_back(tau)
    for name in ("tau", "null_mean", "null_std", "null_p", "family_p"):
        _same(getattr(back, name), getattr(tau, name))
    assert bool(back.tau[0, 0].isnan()) and bool(back.null_p[0, 0].isnan()) and not bool(back.tau[0, 1].isnan())
    assert back.tau.dtype == torch.float32 and back.tau.shape == (2, 2)
    assert (back.statistic, back.draws, back.null) == (statistic, 50, tau.null)
    _same(
        torch.tensor(back.uniform_tau), torch.tensor(tau.uniform_tau)
    )  # NaN here: each rank occurs once per paragraph


def test_specific_head_read_back(attention):
    spec = mem_specific_head(*attention, draws=50, inner_draws=10, seed=0)
    back = _read_back(spec)
    assert back == spec and isinstance(back, SpecificHead)
    assert (back.layer, back.head, back.p) == (0, 1, spec.p) and back.test_ids == spec.test_ids


def test_undefined_p_of_a_specific_head_comes_back_as_nan():
    data = _written(SpecificHead(0, 1, ("a",), ("b",), 1, 1, 0.0, math.nan, math.nan, math.nan, math.nan, 5, 5, "n"))
    assert data["p"] is None
    back = SpecificHead.from_json(data)
    assert math.isnan(back.p) and math.isnan(back.difference) and back.chosen_difference == 0.0


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model(d_mlp=16, d_vocab=48, n_ctx=16, seed=1, initializer_range=0.3)
    tokens = torch.randint(0, 48, (6, 8), generator=torch.Generator().manual_seed(1))
    p = Paragraphs(tokens, 4, tuple(f"q{i}" for i in range(6)))
    return model, p.select(range(3)), p.select(range(3, 6))


def test_unit_scores_read_back(tiny, attention):
    model, mem, nmem = tiny
    scores = unit_ablation(model, mem, nmem, unit="head", units=torch.tensor([[0, 1], [1, 0]]))
    back = _read_back(scores)
    _same(back.score, scores.score)
    assert int((~back.score.isnan()).sum()) == 2 and back.options == scores.options and back.detail is None
    assert (back.method, back.unit, back.seconds) == ("zero_out", "head", scores.seconds)
    # a detail is read by the reader given for it, and refused without one
    detailed = UnitScores("rare_token", "head", scores.score, 1.0, {"query": "q"}, ("a note",), attention[0].sum)
    back = _read_back(detailed, detail=TauStatistics.from_json)
    assert isinstance(back.detail, TauStatistics) and back.notes == ("a note",)
    _same(back.detail.tau, attention[0].sum.tau)
    with pytest.raises(UserError, match="detail"):
        UnitScores.from_json(_written(detailed))


def test_neuron_ranking_read_back(tiny):
    model, mem, nmem = tiny
    ranking = locate_neurons(model, mem, nmem, methods=("activation", "zero_out"), rank_by=("activation", "zero_out"))
    back = _read_back(ranking)
    assert isinstance(back, NeuronRanking) and list(back.results) == ["activation", "zero_out"]
    _same(back.mean_rank, ranking.mean_rank)
    _same(back.order, ranking.order)  # the whole order, though only its top is written
    assert back.order.shape == (32, 2) and back.rank_by == ranking.rank_by and back.agreement == ranking.agreement
    _same(back.results["zero_out"].score, ranking.results["zero_out"].score)


@pytest.fixture(scope="module")
def recitation():
    model = recitation_model()
    mem = recited(model, 6, seed=1, tag="m")
    probe = probe_sets(model, mem.select([2, 3, 4, 5]), random_text(6, seed=2, tag="n"), random_text(4, 3, "h"))
    return model, mem, probe


def test_evaluation_read_back(recitation):
    model, mem, probe = recitation
    ev = evaluate(model, mem.select([0, 2]), probe, edit_targets=random_text(2, seed=4, tag="e"))
    back = _read_back(ev)
    for name in ("target_em", "target_nll", "target_log10p", "edit_em", "mem_em", "nmem_em"):
        _same(getattr(back, name), getattr(ev, name))
    assert back.target_em.dtype == torch.long and back.target_nll.dtype == torch.float32
    assert back.target_ids == ("m0", "m2") and back.mem_ids == ev.mem_ids and back.heldout_ppl == ev.heldout_ppl
    assert back.summary() == ev.summary()


def test_evaluation_without_probe_reads_back_nan_and_empty_tensors(recitation):
    model, mem, _ = recitation
    ev = evaluate(model, mem.select([1]))
    back = _read_back(ev)
    assert math.isnan(back.heldout_ppl) and back.mem_ids == ()
    for name in ("edit_em", "mem_em", "nmem_em"):
        _same(getattr(back, name), getattr(ev, name))
    assert back.edit_em.shape == (0,) and back.edit_em.dtype == torch.long
