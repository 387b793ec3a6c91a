"""Results read back as well as they are written: `from_json` of what `to_json` wrote (through JSON, NaN as null)
gives a result that writes the same JSON again, with its tensors in their dtypes and shapes."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from importlib import import_module

import pytest
import torch
from factories import random_text, recitation_model, recited, tiny_model

from interp.data import Paragraphs
from interp.errors import UserError
from interp.io import float_from_json, tensor_from_json, to_jsonable
from interp.locator.ablation import unit_ablation
from interp.locator.mask_learning import MaskRun, hard_concrete
from interp.locator.ranking import NeuronRanking, locate_neurons
from interp.locator.rare_tokens import RareTokenAttention, SpecificHead, TauStatistics, mem_specific_head
from interp.locator.units import UnitScores
from interp.unlearning.calibration import Calibration, TracePoint, calibrate
from interp.unlearning.evaluation import evaluate, probe_sets
from interp.unlearning.experiments import UnlearningTable, unlearning_table
from interp.unlearning.masked import UnlearnConfig
from interp.unlearning.relearning import RelearnConfig

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
    assert import_module("interp.metrics").float_from_json is float_from_json  # still importable from its former home
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


def test_mask_run_read_back(tiny):
    model, mem, _ = tiny
    run = hard_concrete(model, mem, unit="neuron", max_steps=4).detail
    back = _read_back(run)
    assert back == run and back.steps == 4 and back.stopped == "max_steps" and len(back.nll) == 4
    assert all(type(v) is float for v in back.nll + back.density)
    diverged = MaskRun.from_json(_written(MaskRun(2, "max_steps", (1.5, math.nan), (0.5, 0.25))))
    assert diverged.nll[0] == 1.5 and math.isnan(diverged.nll[1]) and diverged.density == (0.5, 0.25)


def test_default_neuron_ranking_reads_back_with_the_mask_runs(tiny):
    """Every default neuron method at once: the mask methods' runs are the only details, read by MaskRun.from_json."""
    model, mem, nmem = tiny
    capped = {"max_steps": 3}
    ranking = locate_neurons(model, mem, nmem, method_options={"hard_concrete": capped, "slimming": capped})
    back = _read_back(ranking, detail=MaskRun.from_json)
    assert list(back.results) == list(ranking.results) and {"hard_concrete", "slimming"} <= set(back.results)
    assert back.results["slimming"].detail == ranking.results["slimming"].detail
    assert isinstance(back.results["hard_concrete"].detail, MaskRun) and back.results["activation"].detail is None
    _same(back.mean_rank, ranking.mean_rank)
    _same(back.order, ranking.order)
    _same(back.results["integrated_gradients"].score, ranking.results["integrated_gradients"].score)


def test_trace_point_read_back():
    point = TracePoint(1e-3, (0.0, 2.0), scores={"edit_em": math.nan, "nmem_em": 7.5}, settled=(2, None))
    back = _read_back(replace(point, target_log10p=(-3.5, -math.inf)))
    assert back.target_em == (0.0, 2.0) and back.settled == (2, None) and back.scores["nmem_em"] == 7.5
    assert math.isnan(back.scores["edit_em"]) and back.target_log10p[0] == -3.5 and math.isnan(back.target_log10p[1])
    diverged = _read_back(TracePoint(1e-1, (), diverged=True))
    assert diverged == TracePoint(1e-1, (), diverged=True) and math.isnan(diverged.mean_em)


def test_a_diverged_and_non_monotone_calibration_reads_back():
    points = (
        TracePoint(1e-4, (4.0, 1.0), scores={"nmem_em": 8.0}),
        TracePoint(1e-3, (5.0, 0.0), scores={"nmem_em": 6.0}),
        TracePoint(1e-2, (), diverged=True),
    )
    cal = Calibration("ga all", 2.0, tuple((p.lr, p.mean_em) for p in points), 1e-3, False, (1e-4, 1e-2), points)
    back = _read_back(cal)
    assert back.points == points and back.lr == 1e-3 and not back.reached and back.grid == (1e-4, 1e-2)
    assert back.non_monotone == cal.non_monotone != () and back.diverged_lrs == (1e-2,)
    assert back.trace[:2] == cal.trace[:2] and math.isnan(back.trace[2][1]) and back.describe() == cal.describe()


@pytest.fixture(scope="module")
def calibrated(recitation):
    """A real search on the tiny recitation model (GA on all weights, 2 steps, a 2-rate grid, a loose tolerance),
    its probes scored at the bracket; and retain paragraphs for two targets."""
    model, mem, probe = recitation
    retain = random_text(20, seed=5, tag="r")
    config = UnlearnConfig(method="ga", select="all", steps=2, weight_decay=1e-2)
    cal = calibrate(model, mem.select([0, 1]), retain, config, lrs=(1e-3, 1e-1), level=4, tolerance=3.0, probe=probe)
    return cal, config, retain


def test_calibration_read_back(calibrated):
    cal, _, _ = calibrated
    back = _read_back(cal)
    assert back.runs == () and cal.runs != ()  # the runs are not written
    assert back.trace == cal.trace and back.bracket == cal.bracket and back.describe() == cal.describe()
    assert (back.strategy, back.metric, back.level, back.lr, back.grid) == ("predict", "em", 4.0, cal.lr, cal.grid)
    chosen = back.chosen
    assert chosen.target_em == cal.chosen.target_em and chosen.settled == cal.chosen.settled != ()
    assert all(type(v) is float for v in chosen.target_em + chosen.target_log10p)
    scores = torch.tensor(list(chosen.scores.values()), dtype=torch.float64)
    _same(scores, torch.tensor(list(cal.chosen.scores.values()), dtype=torch.float64))  # edit_em: NaN (no edits)
    assert list(chosen.scores) == list(cal.chosen.scores) and scores.isnan().any()


def test_unlearning_table_read_back(recitation, calibrated):
    """The row runs at its calibrated rate (the search's runs, not trained again), with relearning, control (b) and
    the decay-only row (no calibration, no attack): every field comes back, NaN means as NaN."""
    model, mem, probe = recitation
    cal, config, retain = calibrated
    table = unlearning_table(
        model,
        mem.select([0, 1]),
        retain,
        [replace(config, lr=cal.lr)],
        probe,
        calibrations=[cal],
        relearn_config=RelearnConfig(steps=1, lr=1e-3),
        heldout=random_text(2, seed=6, tag="x"),
        decay_control=True,
    )
    back = _read_back(table)
    assert isinstance(back, UnlearningTable) and back.labels == table.labels and len(back.labels) == 2
    assert len(back.calibrations) == 1 and _written(back.calibrations[0]) == _written(cal)
    assert back.heldout_control == table.heldout_control and "not_run" in back.heldout_control[1]
    assert back.diverged == (0, 0) and back.relearned[1] == {} and back.settings == table.settings
    assert back.trained == table.trained and all(type(t) is float for t in back.trained)
    assert math.isnan(back.after[0]["edit_em"]) and back.after[0]["target_em"] == table.after[0]["target_em"]
    assert back.configs[0]["lr"] == cal.lr and back.configs[1]["method"] == "decay"
    assert back.per_run[0]["losses"] == table.per_run[0]["losses"] and math.isnan(back.per_run[0]["after"]["edit_em"])
    assert back.format() == table.format()
