"""top_k_mask / the random masks / restrictions on hand-made gradient dicts."""

from __future__ import annotations

import pytest
import torch

from interp.errors import UserError
from interp.masks import (
    candidate_mask,
    count_by_parameter,
    mask_size,
    matched_random_mask,
    restrict_mask,
    top_k_mask,
    uniform_random_mask,
)


@pytest.fixture()
def grads():
    g = torch.Generator().manual_seed(0)
    out = {}
    for layer in range(2):
        for name, shape in (
            ("attn.W_Q", (4, 16, 8)),
            ("attn.W_V", (4, 16, 8)),
            ("attn.W_O", (4, 8, 16)),
            ("attn.b_Q", (4, 8)),
            ("mlp.W_in", (16, 32)),
            ("mlp.W_out", (32, 16)),
        ):
            out[f"blocks.{layer}.{name}"] = torch.randn(shape, generator=g) * (layer + 1)
    out["embed.W_E"] = torch.randn(20, 16, generator=g)
    return out


def test_global_top_k_selects_exactly_the_largest(grads):
    total = sum(g.numel() for g in grads.values())
    mask = top_k_mask(grads, fraction=0.01)
    assert set(mask) == set(grads) and all(
        mask[k].shape == grads[k].shape and mask[k].dtype == torch.bool for k in grads
    )
    assert mask_size(mask) == round(0.01 * total)
    chosen = torch.cat([grads[k].abs()[mask[k]] for k in grads])
    rest = torch.cat([grads[k].abs()[~mask[k]] for k in grads])
    assert chosen.min() >= rest.max()
    # layer 1 gradients were scaled x2, so the global ranking must prefer them
    per = count_by_parameter(mask)
    assert sum(v for k, v in per.items() if k.startswith("blocks.1")) > sum(
        v for k, v in per.items() if k.startswith("blocks.0")
    )


def test_component_scope_takes_the_fraction_of_each_parameter(grads):
    mask = top_k_mask(grads, fraction=0.05, scope="component")
    for k, g in grads.items():
        assert int(mask[k].sum()) == max(1, round(0.05 * g.numel()))
        assert g.abs()[mask[k]].min() >= g.abs()[~mask[k]].max()


def test_matched_random_mask_keeps_counts_and_changes_places(grads):
    top = top_k_mask(grads, fraction=0.02)
    rand = matched_random_mask(top, seed=3)
    assert count_by_parameter(rand) == count_by_parameter(top)
    assert all(rand[k].shape == top[k].shape for k in top)
    overlap = sum(int((rand[k] & top[k]).sum()) for k in top)
    assert overlap < mask_size(top) // 2
    again = matched_random_mask(top, seed=3)
    assert all(torch.equal(again[k], rand[k]) for k in top)
    other = matched_random_mask(top, seed=4)
    assert any(not torch.equal(other[k], rand[k]) for k in top)


def test_uniform_random_mask_draws_the_fraction_over_the_candidates(grads):
    candidates = candidate_mask(grads, layers=[1], components=["mlp"])
    n = mask_size(candidates)
    rand = uniform_random_mask(candidates, 0.1, seed=0)
    assert mask_size(rand) == round(0.1 * n)
    assert all(not (rand[k] & ~candidates[k]).any() for k in rand)
    # uniform: each candidate tensor gets about its share of the draw (W_in and W_out have equal sizes)
    counts = count_by_parameter(rand)
    assert abs(counts["blocks.1.mlp.W_in"] - counts["blocks.1.mlp.W_out"]) < 0.5 * mask_size(rand)
    assert all(torch.equal(uniform_random_mask(candidates, 0.1, seed=0)[k], rand[k]) for k in rand)


def test_top_k_within_candidates_ranks_only_the_candidates(grads):
    candidates = candidate_mask(grads, layers=[0], components=["W_V"], head=1)
    mask = top_k_mask(grads, fraction=0.05, candidates=candidates)
    pool = grads["blocks.0.attn.W_V"][1].abs().flatten()
    assert mask_size(mask) == round(0.05 * pool.numel())
    assert set(count_by_parameter(mask)) == {"blocks.0.attn.W_V"}
    chosen = grads["blocks.0.attn.W_V"].abs()[mask["blocks.0.attn.W_V"]]
    assert chosen.min() >= pool.sort(descending=True).values[len(chosen) - 1]
    # restricting AFTER a global top-k would keep only the few global winners that happen to lie there
    after = restrict_mask(top_k_mask(grads, fraction=0.05), layers=[0], components=["W_V"], head=1)
    assert mask_size(after) != mask_size(mask)


def test_restrict_by_layer_component_and_head(grads):
    full = {k: torch.ones_like(g, dtype=torch.bool) for k, g in grads.items()}
    only1 = restrict_mask(full, layers=[1])
    assert mask_size(only1) == sum(g.numel() for k, g in grads.items() if k.startswith("blocks.1."))
    mlp = restrict_mask(full, components=["mlp"])
    assert set(count_by_parameter(mlp)) == {f"blocks.{l}.mlp.{w}" for l in (0, 1) for w in ("W_in", "W_out")}
    wv = restrict_mask(full, layers=[0], components=["W_V"])
    assert set(count_by_parameter(wv)) == {"blocks.0.attn.W_V"}
    head = restrict_mask(full, layers=[1], components=["attn"], head=2)
    counts = count_by_parameter(head)
    assert set(counts) == {"blocks.1.attn.W_Q", "blocks.1.attn.W_V", "blocks.1.attn.W_O", "blocks.1.attn.b_Q"}
    assert head["blocks.1.attn.W_O"][2].all() and not head["blocks.1.attn.W_O"][[0, 1, 3]].any()
    assert counts["blocks.1.attn.W_Q"] == 16 * 8
    emb = restrict_mask(full, components=["embed"])
    assert set(count_by_parameter(emb)) == {"embed.W_E"}
    assert mask_size(full) == sum(g.numel() for g in grads.values())  # the input is not modified


def test_bad_inputs_raise_user_errors(grads):
    with pytest.raises(UserError, match="fraction"):
        top_k_mask(grads, fraction=0.0)
    with pytest.raises(UserError, match="scope"):
        top_k_mask(grads, scope="layer")
    with pytest.raises(UserError, match="empty"):
        top_k_mask({})
    mask = top_k_mask(grads)
    with pytest.raises(UserError, match="unknown components"):
        restrict_mask(mask, components=["W_X"])
    with pytest.raises(UserError, match="layers"):
        restrict_mask(mask, layers=[5])
    with pytest.raises(UserError, match="head 9"):
        restrict_mask(mask, head=9)
