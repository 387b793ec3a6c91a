"""Masked fine-tuning on a copy: the mask is respected bit for bit, the input model never changes,
the objectives move what they should, the table averages runs, and the CLI's saved model reloads."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

import pytest
import torch
from conftest import hook_count, state_hash
from factories import CONT, PREFIX, VOCAB, random_text, recited
from factories import recitation_model as tiny_model

from interp.backend import named_weights, weight
from interp.data import Paragraphs
from interp.errors import UserError
from interp.gradients import parameter_gradients, selected_parameters
from interp.io import to_jsonable
from interp.masks import top_k_mask
from interp.metrics import score_paragraphs
from interp.unlearning import (
    COLUMNS,
    Diverged,
    MatchedForgetting,
    RelearnConfig,
    UnlearnConfig,
    calibrate,
    calibrated_configs,
    evaluate,
    optimise,
    probe_sets,
    relearn,
    select_weights,
    unlearn,
    unlearning_table,
)
from interp.views.unlearning import CURVE_PANELS, figure_forgetting_curves, figure_unlearning_table

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    mem = recited(model, 6, seed=1, tag="m")
    nmem = random_text(30, seed=2, tag="n")
    probe = probe_sets(model, mem.select([2, 3, 4, 5]), nmem.select(range(20, 30)), random_text(6, 3, "h"))
    return model, mem, nmem, probe


def test_mask_respected_bit_for_bit_and_input_model_untouched(setup):
    model, mem, nmem, probe = setup
    before_hash, hooks = state_hash(model), hook_count(model)  # hooks: 0, or the TransformerBridge's own norm hooks
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    mask = {
        name: torch.rand(w.tensor.shape, generator=gen) < 0.05
        for name, w in named_weights(model).items()
        if name in ("blocks.1.attn.W_V", "blocks.2.mlp.W_in", "blocks.0.ln1.w")
    }
    cfg = UnlearnConfig(method="unlearn", lr=1e-2, steps=3, weight_decay=1.0)
    result = unlearn(model, mem.select([0]), nmem.select(range(10)), cfg, mask=mask, probe=probe)
    assert state_hash(model) == before_hash
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters()) and hook_count(model) == hooks
    original = {name: w.tensor for name, w in named_weights(model).items()}  # TransformerLens names, either backend
    changed = 0
    for name, w in named_weights(result.model).items():
        diff = w.tensor.detach() != original[name].detach()
        outside = ~mask[name] if name in mask else torch.ones_like(diff)
        assert not bool((diff & outside).any()), f"{name}: a weight outside the mask moved"
        changed += int(diff.sum())
    n_mask = sum(int(m.sum()) for m in mask.values())
    assert result.trained == n_mask and result.weights_changed == changed
    assert changed > 0.9 * n_mask  # Adam moves every selected weight that has a gradient
    assert result.model is not model and result.losses.shape == (3,)


def test_paper_code_masks_the_gradient_and_lets_decay_shrink_the_rest(setup):
    """decay_outside_mask = the public code: gradient zeroed outside the mask before each step. With
    weight decay 0 exactly the masked weights move; with decay > 0 the other weights of the masked
    tensor only shrink toward 0 (same sign, smaller magnitude), and untouched tensors never move."""
    model, mem, nmem, _ = setup
    name = "blocks.1.attn.W_V"
    original = weight(model, 1, "W_V").detach()
    mask = {name: torch.zeros(original.shape, dtype=torch.bool)}
    mask[name][0, 0, 0] = True
    mask[name][2, 5, 3] = True
    no_decay = unlearn(
        model,
        mem.select([0]),
        nmem.select(range(10)),
        UnlearnConfig(lr=1e-3, steps=3, weight_decay=0.0, decay_outside_mask=True),
        mask=mask,
    )
    moved = weight(no_decay.model, 1, "W_V").detach() != original
    assert torch.equal(moved, mask[name]) and no_decay.weights_changed == 2

    decay = unlearn(
        model,
        mem.select([0]),
        nmem.select(range(10)),
        UnlearnConfig(lr=1e-3, steps=3, weight_decay=1.0, decay_outside_mask=True),
        mask=mask,
    )
    after = weight(decay.model, 1, "W_V").detach()
    # Adam's normalised step is ~lr per step, so weights within 3 steps of 0 may cross it: test the rest
    rest = ~mask[name] & (original.abs() > 0.01)
    assert bool((after[rest].abs() < original[rest].abs()).all()), "decay must shrink every unmasked weight"
    assert bool((after[rest].sign() == original[rest].sign()).all())
    assert decay.weights_changed == int((~mask[name] & (original != 0)).sum()) + 2
    others = {n: w.tensor for n, w in named_weights(decay.model).items() if n != name}
    weights = named_weights(model)
    assert all(torch.equal(t, weights[n].tensor) for n, t in others.items())

    strict = unlearn(model, mem.select([0]), nmem.select(range(10)), UnlearnConfig(lr=1e-3, steps=3), mask=mask)
    assert strict.weights_changed == 2


def test_selections_and_restrictions(setup):
    model, mem, nmem, _ = setup
    target, retain = mem.select([0]), nmem.select(range(10))
    grads = parameter_gradients(model, target, retain, objective="contrastive")
    top = select_weights(model, target, retain, UnlearnConfig(fraction=0.01))
    expected = top_k_mask(grads, fraction=0.01)
    assert all(torch.equal(top[k], expected[k]) for k in expected)
    total = sum(p.numel() for p in selected_parameters(model).values())
    assert sum(int(m.sum()) for m in top.values()) == round(0.01 * total)
    rand = select_weights(model, target, retain, UnlearnConfig(select="random", fraction=0.01))
    assert sum(int(m.sum()) for m in rand.values()) == round(0.01 * total)  # uniform over all candidates
    matched = select_weights(model, target, retain, UnlearnConfig(select="random_matched", fraction=0.01))
    assert all(int(matched[k].sum()) == int(top[k].sum()) for k in top)
    assert any(not torch.equal(matched[k], top[k]) for k in top)
    everything = select_weights(model, target, retain, UnlearnConfig(select="all"))
    assert set(everything) == set(selected_parameters(model)) and all(bool(m.all()) for m in everything.values())
    mlp1 = select_weights(model, target, retain, UnlearnConfig(select="all", layers=(1,), components=("mlp",)))
    assert {k for k, m in mlp1.items() if m.any()} == {"blocks.1.mlp.W_in", "blocks.1.mlp.W_out"}
    head = select_weights(model, target, retain, UnlearnConfig(select="all", layers=(2,), head=3))
    assert {k for k, m in head.items() if m.any()} == {f"blocks.2.attn.W_{x}" for x in "QKVO"}
    assert bool(head["blocks.2.attn.W_V"][3].all()) and not bool(head["blocks.2.attn.W_V"][:3].any())


def test_top_fraction_is_taken_within_the_restriction(setup):
    """'top 1% within head 2.3' = 1% of that head's weights, ranked among themselves (restrict, then select)."""
    model, mem, nmem, _ = setup
    target, retain = mem.select([0]), nmem.select(range(10))
    grads = parameter_gradients(model, target, retain, objective="contrastive")
    within = select_weights(model, target, retain, UnlearnConfig(fraction=0.01, layers=(2,), head=3))
    head_weights = {k: g[3] for k, g in grads.items() if k.startswith("blocks.2.attn.W_")}
    n = sum(g.numel() for g in head_weights.values())
    assert sum(int(m.sum()) for m in within.values()) == round(0.01 * n)
    chosen = torch.cat([grads[k][within[k]].abs() for k in within if within[k].any()])
    rest = torch.cat([g.abs().flatten() for g in head_weights.values()])
    assert chosen.min() >= rest.sort(descending=True).values[len(chosen) - 1]
    rand = select_weights(model, target, retain, UnlearnConfig(select="random", fraction=0.01, layers=(2,), head=3))
    assert sum(int(m.sum()) for m in rand.values()) == round(0.01 * n)
    assert all(not m.any() for k, m in rand.items() if not k.startswith("blocks.2.attn."))
    assert all(not m[:3].any() and not m[4:].any() for k, m in rand.items() if k.startswith("blocks.2.attn."))


@pytest.mark.parametrize("method", ["ga", "npo", "graddiff"])
def test_forgetting_objectives_lower_the_target(setup, method):
    model, mem, nmem, probe = setup
    cfg = UnlearnConfig(method=method, select="all", lr=1e-2, steps=5, weight_decay=0.0)
    result = unlearn(model, mem.select([0, 1]), nmem.select(range(10)), cfg, probe=probe)
    assert result.before.target_em.tolist() == [CONT, CONT]
    assert float(result.after.target_em.float().mean()) < CONT / 2
    assert bool((result.after.target_nll > result.before.target_nll + 0.5).all())
    for scores in (result.before, result.after):  # log10 p of the continuation = -(sum of token NLLs) / ln 10
        expected = -scores.target_nll.double() * CONT / math.log(10)
        assert torch.allclose(scores.target_log10p.double(), expected, rtol=1e-4)
    assert result.after.summary()["target_log10p"] < result.before.summary()["target_log10p"] - 0.5 * CONT / 2.3


def test_edit_learns_the_new_continuation(setup):
    model, mem, nmem, probe = setup
    target = mem.select([0])
    new = torch.randint(0, VOCAB, (1, CONT), generator=torch.Generator().manual_seed(9))
    edit = target.with_continuations(new)
    cfg = UnlearnConfig(method="edit", select="all", lr=1e-2, steps=10, weight_decay=0.0)
    result = unlearn(model, target, nmem.select(range(10)), cfg, edit_targets=edit, probe=probe)
    assert int(result.before.edit_em[0]) <= 1
    assert int(result.after.edit_em[0]) >= CONT // 2 and int(result.after.target_em[0]) < CONT
    with pytest.raises(UserError, match="edit target"):
        unlearn(model, target, nmem.select(range(10)), cfg)


def test_probes_and_evaluation(setup):
    model, mem, nmem, probe = setup
    ev = evaluate(model, mem.select([0, 2]), probe)
    assert ev.nmem_em.tolist() == [CONT] * len(probe.nmem)  # own greedy continuation: unchanged = full length
    assert ev.mem_em.tolist() == [CONT] * len(probe.mem)
    assert ev.other_mem_em() == CONT and len(probe.mem) == 4  # m2 is a target: excluded, the mean is over m3..m5
    ref = score_paragraphs(model, probe.heldout).nll.mean().exp()
    assert ev.heldout_ppl == pytest.approx(float(ref), rel=1e-5)
    random_nmem = score_paragraphs(model, nmem.select(range(20, 30))).em
    assert float(random_nmem.float().mean()) < CONT  # the true random continuation is NOT what the model recites


def test_nonfinite_loss_and_bad_settings_stop_clearly(setup):
    model, mem, nmem, _ = setup
    w = torch.nn.Parameter(torch.ones(3))
    calls = []

    def loss() -> torch.Tensor:  # finite once, then NaN
        calls.append(1)
        return w.sum() * (1.0 if len(calls) == 1 else float("nan"))

    with pytest.raises(UserError, match="step 2 of 4"):
        optimise(loss, [w], steps=4, lr=1e-3, weight_decay=0.0)
    for bad in (dict(method="forget"), dict(select="best"), dict(fraction=0.0), dict(lr=-1.0), dict(steps=0)):
        with pytest.raises(UserError):
            UnlearnConfig(**bad)
    empty = {"blocks.0.mlp.W_in": torch.zeros(weight(model, 0, "W_in").shape, dtype=torch.bool)}
    with pytest.raises(UserError, match="selects no weights"):
        unlearn(model, mem.select([0]), nmem.select(range(10)), UnlearnConfig(), mask=empty)


def test_relearn_and_table(setup):
    model, mem, nmem, probe = setup
    before_hash = state_hash(model)
    attacked = relearn(model, mem.select([0]), nmem.select(range(10)), RelearnConfig(steps=3, lr=1e-2))
    assert state_hash(model) == before_hash and state_hash(attacked) != before_hash
    configs = [
        UnlearnConfig(method="ga", select="all", lr=1e-2, steps=3, weight_decay=0.0),
        UnlearnConfig(method="ga", select="topk", fraction=0.01, lr=1e-2, steps=3, weight_decay=0.0),
    ]
    table = unlearning_table(
        model,
        mem.select([0, 1]),
        nmem.select(range(20)),
        configs,
        probe,
        retain_per_run=10,
        relearn_config=RelearnConfig(steps=2, lr=1e-3),
    )
    assert state_hash(model) == before_hash
    assert len(table.per_run) == 4 and table.labels == ("ga all", "ga top-1%")
    for row, label in enumerate(table.labels):
        runs = [r for r in table.per_run if r["label"] == label]
        assert table.after[row]["target_em"] == pytest.approx(sum(r["after"]["target_em"] for r in runs) / 2)
        assert table.relearned[row]["target_em"] == pytest.approx(sum(r["relearned"]["target_em"] for r in runs) / 2)
    assert table.before["target_em"] == CONT and table.after[0]["target_em"] < CONT
    assert table.weights_changed[1] <= table.trained[1] < table.weights_changed[0]
    assert json.dumps(table.to_json(), default=float) and "ga all" in table.format()
    fig = figure_unlearning_table(table)
    assert list(fig.data[0].y) == [a["target_em"] for a in table.after] and list(fig.data[0].x) == list(table.labels)
    assert list(fig.data[3].y) == [r["target_em"] for r in table.relearned]
    with pytest.raises(UserError, match="retain"):
        unlearning_table(model, mem.select([0, 1]), nmem.select(range(15)), configs, probe, retain_per_run=10)


@pytest.mark.slow
def test_cli_save_reloads_with_the_measured_em(testbed, tmp_path):
    """`interp unlearn --save DIR` writes a model whose EM `interp memorized --model DIR` reproduces."""
    from interp import testbed_paragraphs
    from interp.cli import main

    every = testbed_paragraphs()
    split = every.meta["split"]
    pick = (
        [i for i in range(len(every)) if split[i] == "planted"][:6]
        + [i for i in range(len(every)) if split[i] == "once"][:14]
        + [i for i in range(len(every)) if split[i] == "heldout"][:3]
    )
    small = tmp_path / "small.jsonl"
    every.select(pick).save_jsonl(small)
    out, saved = tmp_path / "run.json", tmp_path / "edited"
    assert (
        main(
            [
                "unlearn",
                "--model",
                "testbed",
                "--paragraphs",
                str(small),
                "--method",
                "ga",
                "--select",
                "all",
                "--lr",
                "1e-3",
                "--steps",
                "3",
                "--weight-decay",
                "0",
                "--retain",
                "4",
                "--probe",
                "3",
                "--relearn-steps",
                "0",
                "--device",
                "cpu",
                "--json",
                str(out),
                "--save",
                str(saved),
            ]
        )
        == 0
    )
    run = json.loads(out.read_text())
    target = run["per_run"][0]["target"]
    em_after = run["rows"][0]["after"]["target_em"]
    assert run["before"]["target_em"] == 50 and em_after < 50
    again = tmp_path / "again.json"
    assert (
        main(["memorized", "--model", str(saved), "--paragraphs", str(small), "--device", "cpu", "--json", str(again)])
        == 0
    )
    reloaded = {r["id"]: r["em"] for r in json.loads(again.read_text())["paragraphs"]}
    assert reloaded[target] == em_after
    restored = tmp_path / "restore.json"
    assert (
        main(
            [
                "restore",
                "--model",
                "testbed",
                "--edited",
                str(saved),
                "--paragraphs",
                str(small),
                "--device",
                "cpu",
                "--json",
                str(restored),
                "--experiments",
                "coefficients,values",
            ]
        )
        == 0
    )
    res = json.loads(restored.read_text())
    assert res["ids"] == [target] and res["em_original"] == [50] and res["em_edited"] == [em_after]
    assert main(["unlearn", "--model", "testbed", "--paragraphs", str(small), "--table", "--save", str(saved)]) == 2


def test_relearning_control_a_is_the_attack_applied_to_the_original_model(setup):
    """Control (a) = relearn(original) on each target, computed exactly as the attack, averaged over targets."""
    model, mem, nmem, probe = setup
    cfg = RelearnConfig(steps=2, lr=1e-2)
    table = unlearning_table(
        model,
        mem.select([0, 1]),
        nmem.select(range(20)),
        [UnlearnConfig(method="ga", select="all", lr=1e-2, steps=2, weight_decay=0.0)],
        probe,
        retain_per_run=10,
        relearn_config=cfg,
    )
    c = table.relearn_controls
    expected = []
    for i in range(2):
        target = mem.select([i])
        attacked = relearn(model, target, nmem.select(range(10 * i, 10 * i + 10)), cfg)
        expected.append(float(score_paragraphs(attacked, target).em[0]))
    assert c["original_before"] == CONT
    assert c["original_after"] == pytest.approx(sum(expected) / 2)
    assert "relearning control (a)" in table.format() and table.to_json()["relearn_controls"] == c
    none = unlearning_table(
        model,
        mem.select([0]),
        nmem.select(range(10)),
        [UnlearnConfig(method="ga", select="all")],
        probe,
        relearn_config=None,
    )
    assert none.relearn_controls == {} and none.heldout_control == ()


def test_relearning_control_b_is_the_rows_pipeline_on_never_seen_text_and_can_rise(setup):
    """Control (b) = each row's unlearn-then-relearn pipeline applied to paragraphs the model was never trained
    on (paragraph j with run j's retain set). It is not run, and the table says so, without such paragraphs
    (the probe's held-out text is not silently used). It can rise: when the relearning text holds the held-out
    paragraph, its EM climbs far above what the model knew, the failure it exists to catch."""
    model, mem, nmem, probe = setup
    never = random_text(2, seed=11, tag="h")
    retain = nmem.select(range(20))
    config = UnlearnConfig(method="ga", select="all", lr=1e-2, steps=2, weight_decay=0.0)
    relearn_cfg = RelearnConfig(steps=2, lr=1e-2)
    table = unlearning_table(
        model, mem.select([0, 1]), retain, [config], probe, relearn_config=relearn_cfg, heldout=never
    )
    control = table.heldout_control[0]
    expected = {"before": [], "unlearned": [], "relearned": []}
    for j in range(2):
        text, kept = never.select([j]), retain.select(range(10 * j, 10 * j + 10))
        result = unlearn(model, text, kept, config)
        attacked = relearn(result.model, text, kept, relearn_cfg)
        expected["before"].append(float(score_paragraphs(model, text).em[0]))
        expected["unlearned"].append(float(result.after.target_em[0]))
        expected["relearned"].append(float(score_paragraphs(attacked, text).em[0]))
    for key, values in expected.items():
        assert control[key] == pytest.approx(sum(values) / 2), key
    assert control["n"] == 2 and table.relearn_controls["heldout_paragraphs"] == 2
    assert "relearning control (b)" in table.format() and table.settings["heldout_control"] == ["h0", "h1"]

    missing = unlearning_table(model, mem.select([0]), retain, [config], probe, relearn_config=relearn_cfg)
    assert "not_run" in missing.heldout_control[0] and missing.relearn_controls["heldout_paragraphs"] == 0
    assert "control (b) could not be run" in missing.format()
    edit = unlearning_table(
        model,
        mem.select([0]),
        retain,
        [replace(config, method="edit")],
        probe,
        relearn_config=relearn_cfg,
        edit_targets=mem.select([0]).with_continuations(never.select([0]).continuations),
        heldout=never,
    )
    assert "edit targets" in edit.heldout_control[0]["not_run"]

    # relearning on text that holds the held-out paragraphs: the control rises (it can fail)
    holding = Paragraphs(
        torch.cat([never.tokens[:1], retain.tokens[1:10], never.tokens[1:2], retain.tokens[11:20]]),
        PREFIX,
        tuple(f"r{i}" for i in range(20)),
    )
    teach = unlearning_table(
        model,
        mem.select([0, 1]),
        holding,
        [config],
        probe,
        relearn_config=RelearnConfig(steps=20, lr=1e-2, data="retain"),
        heldout=never,
    )
    rose = teach.heldout_control[0]
    assert rose["before"] <= 2 and rose["relearned"] >= rose["before"] + 3


@dataclass(frozen=True)
class ScriptedConfig:
    """A stand-in for an unlearning config whose target EMs are a given function of the rate (per target id),
    so the search can be tested on shapes a tiny model will not produce on demand; `diverge_at`: rates at or
    above it raise Diverged, as a non-finite loss does."""

    em: dict  # target id -> callable(lr) -> EM
    lr: float = 1e-3
    diverge_at: float = float("inf")
    label: str = "scripted"
    log10p: dict | None = None  # target id -> callable(lr) -> log10 p (None: the model's own)

    def run(self, model, targets, retain, *, edit_targets=None, probe=None, before=None):
        if self.lr >= self.diverge_at:
            raise Diverged(float("nan"), 1, 1, self.lr)
        after = evaluate(model, targets, probe)
        after = replace(after, target_em=torch.tensor([int(self.em[i](self.lr)) for i in targets.ids]))
        if self.log10p is not None:
            after = replace(after, target_log10p=torch.tensor([float(self.log10p[i](self.lr)) for i in targets.ids]))
        return type("Run", (), {"after": after})()

    def to_dict(self) -> dict:
        return {"kind": "scripted", "lr": self.lr}


def test_matched_forgetting_on_log10p_needs_every_targets_probability_at_the_level(setup):
    """EM falls to 0 from lr 1e-4 while the continuations stay likely (log10 p -5) until 1e-3 (-30): matching on
    EM stops near 1e-4; matching on log10 p <= -20 must go on to ~1e-3, with its bracket on log10 p."""
    model, mem, nmem, _ = setup
    em = {"m0": lambda lr: 50 if lr < 1e-4 else 0, "m1": lambda lr: 50 if lr < 1e-4 else 0}
    log10p = {"m0": lambda lr: -1 if lr < 1e-4 else -5 if lr < 1e-3 else -30, "m1": lambda lr: -1 if lr < 1e-4 else -40}
    config = ScriptedConfig(em, log10p=log10p)
    targets, retain = mem.select([0, 1]), nmem.select(range(20))
    by_em = calibrate(model, targets, retain, config, level=10)
    by_p = calibrate(model, targets, retain, config, level=-20, metric="log10p")
    assert by_em.lr < 1.5e-4 and by_p.metric == "log10p" and by_p.reached
    low, high = by_p.bracket
    assert by_p.lr == high and low < 1e-3 <= high and high / low <= 1 + by_p.tolerance
    assert by_p.chosen.target_log10p == (-30.0, -40.0) and by_p.chosen.target_em == (0, 0)
    assert "log10 p <= -20" in by_p.describe() and by_p.to_json()["metric"] == "log10p"
    with pytest.raises(UserError, match="needs a level"):
        calibrate(model, targets, retain, config, metric="log10p")
    with pytest.raises(UserError, match="metric"):
        MatchedForgetting(metric="nll")
    assert MatchedForgetting(level=-20, metric="log10p").search(model, targets, retain, config).lr == by_p.lr


def test_calibration_needs_every_target_and_searches_the_rate_continuously(setup):
    """Target m0 forgets from lr 3.5e-4, m1 from 1.7e-4, and at 1e-4 m0 still recites 20 tokens while m1
    recites 0 (mean 10): the old mean criterion stopped there, on the grid. The search must need EVERY target
    at <= level and narrow the rate to within 1 + tolerance of the true threshold, 3.5e-4."""
    model, mem, nmem, _ = setup
    step = {
        "m0": lambda lr: 50 if lr < 1e-4 else 20 if lr < 3.5e-4 else 0,
        "m1": lambda lr: 50 if lr < 1e-4 else 0,
    }
    cal = calibrate(model, mem.select([0, 1]), nmem.select(range(20)), ScriptedConfig(step), level=10)
    low, high = cal.bracket
    assert cal.reached and cal.lr == high and low < 3.5e-4 <= high and high / low <= 1 + cal.tolerance
    assert all(max(p.target_em) > 10 for p in cal.points if p.lr < 3.5e-4)
    assert cal.chosen.target_em == (0, 0) and not cal.non_monotone
    assert [p.lr for p in cal.points] == sorted(p.lr for p in cal.points) and len(cal.points) <= 7
    loose = calibrate(model, mem.select([0, 1]), nmem.select(range(20)), ScriptedConfig(step), level=10, tolerance=3.0)
    assert loose.lr == 1e-3 and len(loose.points) < len(cal.points)  # the grid bracket alone (3e-4 .. 1e-3)
    with pytest.raises(UserError, match="tolerance"):
        calibrate(model, mem.select([0]), nmem.select(range(10)), ScriptedConfig(step), tolerance=0.0)


def test_calibration_shows_a_non_monotone_trace(setup):
    """EM that rises with the rate (30 at 1e-4, 40 at 3e-4) is flagged among the rates tried, and said."""
    model, mem, nmem, _ = setup
    bumpy = {"m0": lambda lr: 50 if lr < 1e-4 else 30 if lr < 3e-4 else 40 if lr < 1e-3 else 0}
    cal = calibrate(model, mem.select([0]), nmem.select(range(10)), ScriptedConfig(bumpy), level=10)
    assert {p.lr for p in cal.points} >= {1e-4, 3e-4}
    assert {"target": 0, "lr_low": 1e-4, "em_low": 30, "lr_high": 3e-4, "em_high": 40} in cal.non_monotone
    assert "NON-MONOTONE" in cal.describe() and cal.to_json()["non_monotone"]
    smooth = {"m0": lambda lr: 50 if lr < 1e-4 else 30 if lr < 3e-4 else 20 if lr < 1e-3 else 0}
    assert not calibrate(model, mem.select([0]), nmem.select(range(10)), ScriptedConfig(smooth), level=10).non_monotone


def test_a_diverging_rate_bounds_the_search_instead_of_stopping_it(setup, assert_untouched):
    """Rates from 3e-3 up diverge: recorded as diverged, searched below; a level only reachable beyond the
    divergence is 'not reached' at the largest rate that trained. The table records a diverged run and goes on."""
    model, mem, nmem, probe = setup
    late = {"m0": lambda lr: 50 if lr < 1e-2 else 0}
    with assert_untouched(model):
        cal = calibrate(model, mem.select([0]), nmem.select(range(10)), ScriptedConfig(late, diverge_at=3e-3), level=10)
    assert not cal.reached and cal.diverged_lrs and min(cal.diverged_lrs) >= 3e-3
    assert cal.lr < 3e-3 and 3e-3 / cal.lr <= 1 + cal.tolerance and "diverged" in cal.describe()
    early = {"m0": lambda lr: 50 if lr < 1e-3 else 0}
    ok = calibrate(model, mem.select([0]), nmem.select(range(10)), ScriptedConfig(early, diverge_at=3e-2), level=10)
    assert ok.reached and 1e-3 <= ok.lr < 3e-2
    table = unlearning_table(
        model,
        mem.select([0, 1]),
        nmem.select(range(20)),
        [ScriptedConfig(early, lr=5e-2, diverge_at=3e-2)],
        probe,
        relearn_config=None,
    )
    assert table.diverged == (2,) and all(r.get("diverged") for r in table.per_run)
    assert "diverged 2" in table.format()
    w = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(Diverged) as info:  # one run alone still stops with the message (a UserError)
        optimise(lambda: w.sum() * float("nan"), [w], steps=2, lr=1e-3, weight_decay=0.0)
    assert isinstance(info.value, UserError) and info.value.step == 1


def test_calibration_on_a_real_model_and_its_forgetting_curves(setup, assert_untouched):
    """A real search (GA, tiny model): every target at <= level at the chosen rate, some target above it at the
    bracket's lower end within the tolerance; every rate tried was scored on the probes exactly as a run at that
    rate scores; the table's row is the chosen point of that curve, and the figure draws each curve."""
    model, mem, nmem, probe = setup
    targets, retain = mem.select([0, 1]), nmem.select(range(20))
    cfg = UnlearnConfig(method="ga", select="all", steps=3, weight_decay=0.0)
    grid = (1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    with assert_untouched(model):
        cal = calibrate(model, targets, retain, cfg, lrs=grid, level=2, probe=probe, probe_points="every")
    low, high = cal.bracket
    assert cal.reached and cal.lr == high and low is not None and high / low <= 1 + cal.tolerance
    assert max(cal.chosen.target_em) <= 2 and max(next(p for p in cal.points if p.lr == low).target_em) > 2
    for point in cal.points[:2]:
        runs = [
            unlearn(
                model,
                targets.select([i]),
                retain.select(range(10 * i, 10 * i + 10)),
                replace(cfg, lr=point.lr),
                probe=probe,
            ).after.summary()
            for i in range(2)
        ]
        assert point.target_em == tuple(r["target_em"] for r in runs)
        for key in COLUMNS:
            assert point.scores[key] == pytest.approx(sum(r[key] for r in runs) / 2, nan_ok=True), key
    table = unlearning_table(
        model, targets, retain, [replace(cfg, lr=cal.lr)], probe, relearn_config=None, calibrations=[cal]
    )
    for key in ("target_em", "other_mem_em", "nmem_em", "heldout_ppl"):
        assert table.after[0][key] == pytest.approx(cal.chosen.scores[key]), key
    assert table.after[0]["target_em_max"] == max(cal.chosen.target_em)
    fig = figure_forgetting_curves(table)
    assert len(fig.data) == len(CURVE_PANELS)
    scored = [p for p in cal.points if p.scores]
    assert list(fig.data[0].x) == [table.before["target_em"]] + [p.mean_em for p in scored]
    for trace, (key, _) in zip(fig.data, CURVE_PANELS):
        assert list(trace.y) == pytest.approx([table.before[key]] + [p.scores[key] for p in scored])
    configs, searches = calibrated_configs(model, targets, retain, [cfg], lrs=grid, level=2)
    assert configs[0].lr == cal.lr and searches[0].trace == cal.trace and not searches[0].points[0].scores
    with pytest.raises(UserError, match="retain"):
        calibrate(model, targets, nmem.select(range(5)), cfg)


@pytest.mark.parametrize("method", ["ga", "edit"])
def test_probes_scored_at_the_bracket_give_the_table_that_scoring_every_rate_gives(setup, method):
    """`probe_points="bracket"` (the default) searches the same rates as scoring every rate, scores the probes at
    two of them only (the rate chosen and the highest that did not reach the level), with the values scoring every
    rate gives there, and the table built from either search is the same to the last digit."""
    from interp.perturbation import prefix_perturbation

    model, mem, nmem, probe = setup
    targets, retain = mem.select([0, 1]), nmem.select(range(20))
    edit_targets = prefix_perturbation(model, targets, seed=0).editing_targets if method == "edit" else None
    cfg = UnlearnConfig(method=method, select="all", steps=3, weight_decay=0.0)
    grid = (1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    options = dict(lrs=grid, level=2, probe=probe, edit_targets=edit_targets)
    every = calibrate(model, targets, retain, cfg, probe_points="every", **options)
    bracket = calibrate(model, targets, retain, cfg, **options)
    assert [p.lr for p in bracket.points] == [p.lr for p in every.points] and bracket.lr == every.lr
    assert [p.target_em for p in bracket.points] == [p.target_em for p in every.points]
    low, high = bracket.bracket
    assert all(p.scores for p in every.points)
    assert {p.lr for p in bracket.points if p.scores} == {low, high} - {None} and high == bracket.lr
    for b, e in zip(bracket.points, every.points):
        if b.scores:
            assert json.dumps(b.scores) == json.dumps(e.scores)
    tables = [
        unlearning_table(
            model,
            targets,
            retain,
            [replace(cfg, lr=c.lr)],
            probe,
            edit_targets=edit_targets,
            relearn_config=None,
            calibrations=[c],
        )
        for c in (every, bracket)
    ]
    assert json.dumps(to_jsonable(tables[0].after), sort_keys=True) == json.dumps(
        to_jsonable(tables[1].after), sort_keys=True
    )
    with pytest.raises(UserError, match="probe points"):
        calibrate(model, targets, retain, cfg, probe_points="some", **options)


def test_table_reuses_the_calibrations_chosen_runs(setup, monkeypatch):
    """With `calibrate`, each row's runs are the calibration's runs at the chosen rate, not trained again, and the
    table equals the one that retrains them (unlearn, edit and LoReFT rows, relearning and both controls)."""
    from interp.perturbation import prefix_perturbation
    from interp.unlearning.reft import ReftConfig

    model, mem, nmem, probe = setup
    targets, retain = mem.select([0, 1]), nmem.select(range(20))
    edit_targets = prefix_perturbation(model, targets, seed=0).editing_targets
    heldout = random_text(2, 7, "never")
    heldout_edit = prefix_perturbation(model, heldout, seed=0).editing_targets
    configs = [
        UnlearnConfig(method="unlearn", select="topk", steps=2),
        UnlearnConfig(method="edit", select="all", steps=2),
        ReftConfig(steps=2),
    ]
    grid = (1e-4, 1e-3, 1e-2, 1e-1)

    def search(config):
        return calibrate(model, targets, retain, config, lrs=grid, level=5, edit_targets=edit_targets, probe=probe)

    options = dict(
        edit_targets=edit_targets,
        relearn_config=RelearnConfig(steps=1),
        heldout=heldout,
        heldout_edit_targets=heldout_edit,
    )
    searches = [search(c) for c in configs]
    assert all(len(s.runs) == 2 and s.runs[0].config.lr == s.lr for s in searches)
    retrained = unlearning_table(
        model,
        targets,
        retain,
        [replace(c, lr=s.lr) for c, s in zip(configs, searches)],
        probe,
        calibrations=[s.without_runs() for s in searches],  # runs dropped: this table trains them again
        **options,
    )
    trained, calibrating = [], []
    for cls in (UnlearnConfig, ReftConfig):
        real = cls.run

        def counting(self, model, paragraphs, *args, _real=real, **kwargs):
            if not calibrating:
                trained.append(paragraphs.ids)
            return _real(self, model, paragraphs, *args, **kwargs)

        monkeypatch.setattr(cls, "run", counting)

    def searching(config):
        calibrating.append(config)
        try:
            return search(config)
        finally:
            calibrating.clear()

    reused = unlearning_table(model, targets, retain, configs, probe, calibrate=searching, **options)
    # the only runs trained after the calibrations are control (b)'s, on the never-seen paragraphs
    assert trained and all(ids[0] in heldout.ids for ids in trained)
    assert json.dumps(to_jsonable(retrained.to_json()), sort_keys=True) == json.dumps(
        to_jsonable(reused.to_json()), sort_keys=True
    )  # (nan != nan, so compared as text)
    assert [c.runs for c in reused.calibrations] == [(), (), ()]  # the table keeps no edited models
    with pytest.raises(UserError, match="not both"):
        unlearning_table(model, targets, retain, configs, probe, calibrations=searches, calibrate=search)


def test_table_calibrates_with_matched_forgetting_as_the_closures_did(setup, monkeypatch):
    """`calibrate=MatchedForgetting(...)` calls `calibrate` with exactly the arguments the closures of `interp
    unlearn` and the report passed (the table's own targets, retain sets, edit targets and probes), reports each
    try with its row, and builds the same table as the closure form."""
    import inspect

    from interp.perturbation import prefix_perturbation
    from interp.unlearning import Calibration, MatchedForgetting, calibration

    model, mem, nmem, probe = setup
    targets, retain = mem.select([0, 1]), nmem.select(range(8))
    edit_targets = prefix_perturbation(model, targets, seed=0).editing_targets
    configs = [UnlearnConfig(method="unlearn", select="all", steps=1), UnlearnConfig(method="edit", steps=1)]
    signature, calls, tries, searches = inspect.signature(calibration.calibrate), [], [], []

    def fake(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        called = dict(bound.arguments)
        if called.pop("on_try") is not None:
            kwargs["on_try"](1e-3, 7.0)
        calls.append(called)
        return Calibration(called["config"].label, 5.0, ((1e-3, 7.0),), 1e-3, True)

    monkeypatch.setattr(calibration, "calibrate", fake)

    def cli_closure(config):  # what `interp unlearn --calibrate --level 5 --tolerance 0.1 --retain 4` passed
        def show(lr, em):
            tries.append((config.label, lr, em))

        return calibration.calibrate(
            model,
            targets,
            retain,
            config,
            level=5,
            edit_targets=edit_targets,
            retain_per_run=4,
            on_try=show,
            tolerance=0.1,
            probe=probe,
        )

    def report_closure(config):  # what the report's unlearning step passed
        return calibration.calibrate(
            model, targets, retain, config, level=None, edit_targets=edit_targets, retain_per_run=4, probe=probe
        )

    def show_try(config, lr, em):
        tries.append((config.label, lr, em))

    options = dict(edit_targets=edit_targets, retain_per_run=4, relearn_config=None)
    for closure, matched, on_try in [
        (cli_closure, MatchedForgetting(level=5, tolerance=0.1), show_try),
        (report_closure, MatchedForgetting(level=None), None),
    ]:
        old = unlearning_table(model, targets, retain, configs, probe, calibrate=closure, **options)
        old_calls, old_tries, calls[:], tries[:] = list(calls), list(tries), [], []
        new = unlearning_table(
            model,
            targets,
            retain,
            configs,
            probe,
            calibrate=matched,
            on_try=on_try,
            on_calibrated=searches.append,
            **options,
        )
        assert len(calls) == len(configs) and all(a.keys() == b.keys() for a, b in zip(calls, old_calls))
        assert all(a[k] is b[k] or a[k] == b[k] for a, b in zip(calls, old_calls) for k in a)
        assert tries == old_tries == ([(c.label, 1e-3, 7.0) for c in configs] if on_try else [])
        assert json.dumps(to_jsonable(old.to_json()), sort_keys=True) == json.dumps(
            to_jsonable(new.to_json()), sort_keys=True
        )
        calls[:], tries[:] = [], []
    assert [s.label for s in searches] == [c.label for c in configs] * 2
    with pytest.raises(UserError, match="on_try"):
        unlearning_table(model, targets, retain, configs, probe, calibrate=cli_closure, on_try=print, **options)


def test_decay_only_control_row_isolates_what_weight_decay_does(setup):
    """The decay-only row copies the all-weights row with the highest rate and trains it with no loss:
    with weight decay 0 nothing moves (scores equal the original's); with the paper's coupled decay 1.0
    every trained weight moves and the target's NLL changes though no loss was ever minimised."""
    model, mem, nmem, probe = setup
    targets, retain = mem.select([0, 1]), nmem.select(range(20))
    for decay in (0.0, 1.0):
        configs = [
            UnlearnConfig(method="ga", select="all", lr=3e-3, steps=3, weight_decay=decay),
            UnlearnConfig(method="unlearn", select="all", lr=1e-2, steps=3, weight_decay=decay),
            UnlearnConfig(method="ga", select="topk", fraction=0.01, lr=5e-2, steps=3, weight_decay=decay),
        ]
        table = unlearning_table(
            model, targets, retain, configs, probe, relearn_config=RelearnConfig(steps=1), decay_control=True
        )
        assert table.labels[-1] == "decay only all (no loss)" and len(table.labels) == 4
        assert table.settings["decay_control_of"] == "unlearn all"  # the all-weights row with the highest rate
        assert table.configs[-1]["lr"] == 1e-2 and table.configs[-1]["weight_decay"] == decay
        assert table.relearned[-1] == {} and "not_run" in table.heldout_control[-1]
        row = table.after[-1]
        if decay == 0.0:
            assert table.weights_changed[-1] == 0
            assert row["target_em"] == table.before["target_em"]
            assert row["target_nll"] == pytest.approx(table.before["target_nll"], abs=1e-6)
            assert row["target_log10p"] == pytest.approx(table.before["target_log10p"], abs=1e-4)
        else:
            assert table.weights_changed[-1] == pytest.approx(table.trained[-1], rel=1e-3)
            assert abs(row["target_nll"] - table.before["target_nll"]) > 1e-3
        from interp.report.types import Bundle
        from interp.views.sections import unlearning_section

        notes = " ".join(unlearning_section(Bundle({"table": table}), {}).notes)
        assert f"Weight decay (Adam, coupled) in every weight-editing row: {decay:g} " in notes
        assert "'unlearn all' (the all-weights row with the highest rate)" in notes
        assert f"Its target EM {row['target_em']:.1f} against the original's {table.before['target_em']:.1f}" in notes
    with pytest.raises(UserError, match="all-weights row"):
        unlearning_table(model, targets, retain, configs[2:], probe, relearn_config=None, decay_control=True)


def test_one_weight_decay_setting_toolkit_zero_paper_one():
    """The toolkit trains without weight decay everywhere (UnlearnConfig's default); the paper's preset
    keeps the authors' coupled decay 1.0."""
    from interp.conventions import conventions

    assert UnlearnConfig().weight_decay == conventions("toolkit").weight_decay == 0.0
    assert conventions("paper").weight_decay == 1.0


@pytest.mark.parametrize("method", ["ga", "unlearn"])
def test_predicting_calibration_certifies_the_level_on_every_target_in_fewer_runs(setup, method):
    """The predicting search (rates from the step each run reached the level) ends under the bisection's
    rule: retrained at the chosen rate every target is at or below the level, and a rate within a factor
    1 + tolerance below it was tried and did not reach it. It tries fewer rates than the bisection, and its
    chosen rate is within the tolerance of the bisection's, both ways."""
    model, mem, nmem, probe = setup
    targets, retain = mem.select([0, 1]), nmem.select(range(20))
    config = UnlearnConfig(method=method, select="all", steps=6)
    fast = calibrate(model, targets, retain, config, level=0, probe=probe)
    slow = calibrate(model, targets, retain, config, level=0, probe=probe, strategy="bisect")
    assert fast.strategy == "predict" and slow.strategy == "bisect"
    for cal in (fast, slow):
        low, high = cal.bracket
        assert cal.reached and cal.lr == high and high / low <= (1 + cal.tolerance) * (1 + 1e-6)
    for i in range(len(targets)):  # the chosen rate, trained again, meets the level on every target
        kept = retain.select(range(10 * i, 10 * i + 10))
        run = unlearn(model, targets.select([i]), kept, replace(config, lr=fast.lr))
        assert int(run.after.target_em[0]) <= 0
    assert len(fast.points) < len(slow.points)
    assert slow.lr / (1 + slow.tolerance) ** 2 <= fast.lr <= slow.lr * (1 + slow.tolerance) ** 2
    reached = [p for p in fast.points if not p.diverged and p.max_em <= 0]
    assert all(p.settled and all(1 <= s <= config.steps for s in p.settled) for p in reached)
    assert all(None in p.settled for p in fast.points if p.max_em > 0)
    assert fast.to_json()["trace"][0]["settled_step"] == list(fast.points[0].settled)
    with pytest.raises(UserError, match="strategy"):
        calibrate(model, targets, retain, config, strategy="grid")
