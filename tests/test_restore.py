"""Restoration: windows clip at the edges; the batched patching equals one plain forward per window;
restoring exactly what an edit changed brings the original back; neither model changes."""

from __future__ import annotations

import pytest
import torch
from conftest import hook_count, state_hash
from factories import CONT, random_text, recited
from factories import recitation_model as tiny_model

from interp.backend import act_name
from interp.errors import UserError
from interp.metrics import score_paragraphs
from interp.restore import RestorationResult, default_window, layer_windows, restoration
from interp.unlearning import UnlearnConfig, unlearn
from interp.unlearning.reft import ReftConfig, reft_unlearn
from interp.views.unlearning import figure_restoration


def edited_where(model, mem, nmem, components):
    cfg = UnlearnConfig(method="ga", select="all", components=components, lr=2e-2, steps=5, weight_decay=0.0)
    return unlearn(model, mem, nmem.select(range(10)), cfg).model


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    mem = recited(model, 3, seed=1, tag="m")
    nmem = random_text(10, seed=2, tag="n")
    return model, mem, nmem


def test_windows_clip_at_the_edges():
    assert layer_windows(4, 5) == [(0, 2), (0, 3), (0, 3), (1, 3)]
    assert (
        layer_windows(12, 5)[0] == (0, 2) and layer_windows(12, 5)[6] == (4, 8) and layer_windows(12, 5)[11] == (9, 11)
    )
    assert layer_windows(3, 1) == [(0, 0), (1, 1), (2, 2)]
    with pytest.raises(UserError):
        layer_windows(4, 0)
    with pytest.raises(UserError, match="odd"):  # a width of 4 cannot be centred on a layer
        layer_windows(12, 4)


def test_default_window_scales_with_depth():
    assert default_window(32) == 5  # Hong et al.'s 5 of 32 layers
    assert [default_window(n) for n in (4, 6, 8, 12)] == [1, 1, 1, 1]
    assert default_window(24) == 3 and default_window(48) == 7 and default_window(1) == 1


def test_krs_is_averaged_per_paragraph_with_the_ratio_of_means_kept():
    ones, em = torch.ones(2), torch.ones(2, dtype=torch.long)
    r = RestorationResult(
        ids=("a", "b"),
        experiments=("coefficients",),
        windows=((0, 0),),
        em_original=em,
        em_edited=em,
        em_restored=em.view(1, 1, 2),
        nll_original=ones,
        nll_edited=ones,
        nll_restored=ones.view(1, 1, 2),
        logit_loss_edited=torch.tensor([1.0, 100.0]),
        logit_loss_restored=torch.tensor([[[0.5, 10.0]]]),
    )
    assert r.krs.item() == pytest.approx((0.5 + 0.9) / 2)  # each paragraph's KRS, then the mean
    assert r.krs_ratio_of_means.item() == pytest.approx(1 - 10.5 / 101)


def test_restoring_what_changed_restores_the_original(setup):
    model, mem, nmem = setup
    for components, experiment in ((("W_in",), "coefficients"), (("attn",), "attention"), (("W_out",), "values")):
        edited = edited_where(model, mem, nmem, components)
        result = restoration(model, edited, mem, width=9)  # every window covers all 4 layers
        assert float(result.em_edited.float().mean()) < CONT - 1, (
            "the edit must forget something for this test to mean anything"
        )
        e = result.experiments.index(experiment)
        assert torch.equal(result.em_restored[e, 0], result.em_original)
        assert result.krs[e, 0] == pytest.approx(1.0, abs=1e-4) and result.em_recovered[e, 0] == pytest.approx(1.0)
        assert result.nll_recovered[e, 0] == pytest.approx(1.0, abs=1e-3)
        assert figure_restoration(result).data[0].z[e][0] == pytest.approx(float(result.em_recovered[e, 0]))
        both = result.experiments.index("both")
        if experiment != "values":
            assert result.krs[both, 0] == pytest.approx(1.0, abs=1e-4)
        else:  # the edited value vectors still act on restored coefficients: not a full restore
            assert result.krs[result.experiments.index("coefficients"), 0] < 0.999


def test_batched_patching_equals_one_forward_per_window(setup):
    model, mem, nmem = setup
    edited = edited_where(model, mem, nmem, None)
    # hooks: 0, or the TransformerBridge's own (its norms' pre-hooks, from the first forward on)
    hashes, hooks = (state_hash(model), state_hash(edited)), (hook_count(model), hook_count(edited))
    result = restoration(model, edited, mem, width=3, experiments=("coefficients", "both", "values"), batch_size=4)
    assert hashes == (state_hash(model), state_hash(edited)) and hooks == (hook_count(model), hook_count(edited))
    names = [act_name(k, l) for k in ("post", "attn_out") for l in range(4)]
    _, cache = model.run_with_cache(mem.tokens, names_filter=names)
    p = mem.prefix_len
    ref_logits = model(mem.tokens)[:, p - 1 : -1]
    for l, (lo, hi) in enumerate(layer_windows(4, 3)):
        for e, kinds in ((0, ("post",)), (1, ("post", "attn_out"))):
            hooks = [
                (act_name(k, j), lambda act, hook: cache[hook.name]) for k in kinds for j in range(lo, hi + 1)
            ]
            logits = edited.run_with_hooks(mem.tokens, fwd_hooks=hooks)
            with edited.hooks(fwd_hooks=hooks):
                scores = score_paragraphs(edited, mem)
            assert torch.equal(result.em_restored[e, l], scores.em)
            assert torch.allclose(result.nll_restored[e, l], scores.nll, atol=1e-5)
            loss = (logits[:, p - 1 : -1] - ref_logits).pow(2).mean((1, 2))
            assert torch.allclose(result.logit_loss_restored[e, l], loss, rtol=1e-4)
    assert result.em_restored.shape == (3, 4, 3)


def test_restoration_with_reft_hooks_and_failure_cleanup(setup):
    model, mem, nmem = setup
    hooks = hook_count(model)  # 0, or the TransformerBridge's own
    reft = reft_unlearn(model, mem, nmem, ReftConfig(method="ga", layer=2, lr=0.05, steps=10))
    result = restoration(model, model, mem, width=1, edited_hooks=reft.hooks(), experiments=("coefficients", "values"))
    assert torch.equal(result.em_edited, reft.after.target_em)
    assert result.krs[1].abs().max() < 1e-6  # ReFT changes no weights: copying W_out back changes nothing
    # Coefficients up to the intervention (after layer 2) are untouched by it: restoring them does nothing;
    # those of layer 3 carry part of its effect.
    assert result.krs[0, :3].abs().max() < 1e-6 and result.krs[0, 3] > 0.01

    def broken(act, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        restoration(model, model, mem, edited_hooks=[("blocks.1.hook_resid_post", broken)])
    assert hook_count(model) == hooks
    with pytest.raises(UserError, match="experiments"):
        restoration(model, model, mem, experiments=("weights",))


def test_report_restores_each_target_from_its_own_calibrated_run(setup):
    """The report's restoration dissects the runs section 5 calibrated: each target unlearned ALONE with its
    own 10 retain paragraphs (not all targets jointly with nmem[:10]) at the row's calibrated rate, restored
    per target and pooled; the result says so."""
    from types import SimpleNamespace

    from interp.conventions import conventions
    from interp.data import Paragraphs
    from interp.memorization import choose_sets, memorization_split
    from interp.report.options import ReportOptions
    from interp.report.steps.restoration import _restoration
    from interp.report.types import Bundle, StepInputs

    model, mem, _ = setup
    nmem = random_text(30, seed=5, tag="n")
    paragraphs = Paragraphs(torch.cat([mem.tokens, nmem.tokens]), mem.prefix_len, mem.ids + nmem.ids)
    split = memorization_split(model, paragraphs)
    options = ReportOptions(unlearn_steps=3, restore_selects=("topk",), progress=False)
    targets, chosen_nmem = choose_sets(split, paragraphs, n_mem=options.n_mem, n_nmem=options.n_nmem, seed=0)
    targets = targets.select([0, 1])
    section5 = SimpleNamespace(
        configs=({"kind": "weights", "method": "unlearn", "select": "topk", "lr": 3e-2},),
        settings={"targets": list(targets.ids)},
    )
    inputs = StepInputs(model, paragraphs, options, {"memorization": split, "unlearning": Bundle({"table": section5})})
    parts = _restoration(inputs).parts
    result = parts["topk"]
    assert parts["mode"] == "per target" and parts["topk_lr"] == 3e-2 and "section 5" in parts["topk_lr_source"]
    assert result.ids == targets.ids
    paper = conventions(options.conventions)
    config = UnlearnConfig(
        method="unlearn",
        select="topk",
        lr=3e-2,
        steps=3,
        weight_decay=paper.weight_decay,
        decay_outside_mask=paper.decay_outside_mask,
    )
    for i in range(2):
        run = unlearn(model, targets.select([i]), chosen_nmem.select(range(10 * i, 10 * i + 10)), config)
        assert int(result.em_edited[i]) == int(run.after.target_em[0])
        assert float(result.nll_edited[i]) == pytest.approx(float(run.after.target_nll[0]), rel=1e-4)
    alone = restoration(model, run.model, targets.select([1]), width=paper.restore_width)
    assert torch.allclose(result.logit_loss_restored[..., 1], alone.logit_loss_restored[..., 0], rtol=1e-4)
