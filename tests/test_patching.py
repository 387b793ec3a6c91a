"""Batched activation patching equals transformer_lens.patching; attribution patching tracks it."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_model
from transformer_lens import patching as tl_patching  # the reference implementation the batched patching must equal

from interp import backend
from interp.data import Paragraphs
from interp.errors import UserError
from interp.locator.patching import (
    DIRECTIONS,
    KINDS,
    PatchingResult,
    activation_patching,
    all_cells,
    attribution_patching,
    patch_variants,
    patching_agreement,
    resid_pre_all_layers,
)
from interp.metrics import continuation_log_probs

PREFIX, CONT, VOCAB = 5, 3, 30


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(
        n_layers=3, d_vocab=VOCAB, n_ctx=16, attn_types=["global", "local", "global"], window_size=4, seed=2
    )


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(4)
    clean = Paragraphs(torch.randint(0, VOCAB, (3, PREFIX + CONT), generator=g), PREFIX, ("a", "b", "c"))
    corrupted = clean.tokens.clone()
    corrupted[:, 1:PREFIX:2] = torch.randint(0, VOCAB, (3, len(range(1, PREFIX, 2))), generator=g)
    return clean, corrupted


def _tl_metric(clean: Paragraphs, clean_m: float, corrupt_m: float):
    def metric(logits):
        return (continuation_log_probs(logits, clean.tokens, PREFIX).mean() - corrupt_m) / (clean_m - corrupt_m)

    return metric


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_equals_transformer_lens_patching(tiny, pair, direction):
    clean, corrupted = pair
    ours = activation_patching(
        tiny,
        clean,
        corrupted,
        kinds=("head_out", "resid_pre", "attn_out", "mlp_out"),
        direction=direction,
        batch_size=7,
    )
    clean_m = continuation_log_probs(tiny(clean.tokens), clean.tokens, PREFIX).mean().item()
    corrupt_m = continuation_log_probs(tiny(corrupted), clean.tokens, PREFIX).mean().item()
    assert ours["head_out"].clean_metric == pytest.approx(clean_m, abs=1e-5)
    assert ours["head_out"].corrupted_metric == pytest.approx(corrupt_m, abs=1e-5)
    metric = _tl_metric(clean, clean_m, corrupt_m)
    run, source = (corrupted, clean.tokens) if direction == "denoise" else (clean.tokens, corrupted)
    _, source_cache = tiny.run_with_cache(source)
    heads = tl_patching.get_act_patch_attn_head_out_all_pos(tiny, run, source_cache, metric)
    assert torch.allclose(ours["head_out"].effect, heads.cpu(), atol=1e-4)
    if direction == "denoise":
        block = tl_patching.get_act_patch_block_every(tiny, run, source_cache, metric)
        for i, kind in enumerate(("resid_pre", "attn_out", "mlp_out")):
            assert torch.allclose(ours[kind].effect, block[i].cpu(), atol=1e-4), kind
    else:  # one per-position kind is enough to check the other direction (and keeps the test fast)
        resid = tl_patching.get_act_patch_resid_pre(tiny, run, source_cache, metric)
        assert torch.allclose(ours["resid_pre"].effect, resid.cpu(), atol=1e-4)
    # The maps are not degenerate: the residual stream entering layer 0 carries the whole difference.
    assert ours["resid_pre"].effect[0].abs().max() > 0.05
    assert ours["resid_pre"].per_paragraph.shape == (3, PREFIX + CONT, 3)


def test_attribution_is_the_derivative_of_exact_patching(pair):
    # Exact patching of a tiny step +-eps * (source - run) of every cell, the difference divided by 2 eps, is
    # the first-order estimate: it must equal attribution patching (float64 to see it). Hugging Face's GPT-Neo
    # computes attention scores in float32 whatever the model's dtype (the bridge runs its modules), so there a
    # step of 1e-5 drowns in float32 rounding (1e-7 / 1e-5): the step is 1e-3 and the tolerance 1e-3; the central
    # difference keeps the step's own error at eps^2.
    model = tiny_model(
        d_model=16, n_heads=2, d_mlp=32, d_vocab=VOCAB, n_ctx=16, window_size=4, seed=5, dtype=torch.float64
    )
    clean, corrupted = pair
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    eps, atol = (1e-5, 1e-4) if backend.NAME == "hooked" else (1e-3, 1e-3)
    for direction in DIRECTIONS:
        approx = attribution_patching(model, clean, corrupted, kinds=tuple(KINDS), direction=direction)
        run, source = (corrupted, clean.tokens) if direction == "denoise" else (clean.tokens, corrupted)
        _, resid = resid_pre_all_layers(model, run)
        total = approx["head_out"].clean_metric - approx["head_out"].corrupted_metric
        _, run_cache = model.run_with_cache(run)
        _, source_cache = model.run_with_cache(source)
        for kind, (act, _) in KINDS.items():
            cells = all_cells(model, kind, PREFIX + CONT)
            logp = []
            for sign in (1, -1):
                steps = [
                    run_cache[act, layer] + sign * eps * (source_cache[act, layer] - run_cache[act, layer])
                    for layer in range(2)
                ]
                logp.append(patch_variants(model, run, PREFIX, kind, cells, steps, resid, batch_size=16)[0])
            slope = ((logp[0] - logp[1]).mean(-1).mean(-1) / (2 * eps) / total).view(2, -1).float()
            expected = slope if direction == "denoise" else 1 + slope
            assert torch.allclose(approx[kind].effect, expected, atol=atol), (direction, kind)
            assert approx[kind].effect.abs().max() > 1e-3
    assert all(p.grad is None for p in model.parameters())
    assert all(v.equal(model.state_dict()[k]) for k, v in state.items())
    assert flags == {k: p.requires_grad for k, p in model.named_parameters()}
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())


def test_agreement_is_correlation():
    a = PatchingResult("head_out", "denoise", "exact", torch.tensor([[0.1, 0.5], [0.2, 0.9]]), 0.0, -1.0)
    b = PatchingResult("head_out", "denoise", "attribution", torch.tensor([[0.2, 1.0], [0.4, 1.8]]), 0.0, -1.0)
    c = PatchingResult("head_out", "denoise", "attribution", torch.tensor([[0.9, 0.2], [0.5, 0.1]]), 0.0, -1.0)
    assert patching_agreement(a, b) == pytest.approx({"pearson": 1.0, "spearman": 1.0})
    assert patching_agreement(a, c)["spearman"] == pytest.approx(-1.0)


def test_no_hooks_remain_after_an_error(tiny, pair):
    clean, corrupted = pair
    with pytest.raises(UserError, match="continuation"):
        activation_patching(tiny, clean, torch.zeros_like(corrupted))
    with pytest.raises(UserError, match="direction"):
        attribution_patching(tiny, clean, corrupted, direction="sideways")
    with pytest.raises(UserError, match="patch kind"):
        activation_patching(tiny, clean, corrupted, kinds=("neurons",))
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in tiny.hook_dict.values())


def test_no_hooks_remain_when_a_hook_fails_mid_forward(tiny, pair):
    clean, corrupted = pair
    _, resid = resid_pre_all_layers(tiny, corrupted)
    wrong = [torch.zeros(1, 2, 3) for _ in range(3)]  # a source of the wrong shape: the hook itself raises
    with pytest.raises((RuntimeError, IndexError)):
        patch_variants(tiny, corrupted, PREFIX, "head_out", all_cells(tiny, "head_out", PREFIX + CONT), wrong, resid)
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in tiny.hook_dict.values())
    assert not any(getattr(hp, "ctx", None) for hp in tiny.hook_dict.values())
