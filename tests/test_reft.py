"""LoReFT: the identity at start, orthonormal rows, forgetting through hooks on a frozen model that
never changes, and its results reproducible by re-applying the hooks."""

from __future__ import annotations

import pytest
import torch
from conftest import hook_count, state_hash
from factories import CONT, random_text, recited
from factories import recitation_model as tiny_model

from interp.errors import UserError
from interp.unlearning import evaluate, probe_sets, unlearning_table
from interp.unlearning.reft import LoReFT, ReftConfig, reft_unlearn

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    mem = recited(model, 4, seed=1, tag="m")
    nmem = random_text(20, seed=2, tag="n")
    probe = probe_sets(model, mem.select([2, 3]), nmem.select(range(10, 20)), random_text(4, 3, "h"))
    return model, mem, nmem, probe


def test_loreft_starts_as_identity_and_keeps_orthonormal_rows():
    torch.manual_seed(0)
    reft = LoReFT(16, 3)
    h = torch.randn(2, 5, 16)
    assert torch.allclose(reft(h), h, atol=1e-6)
    with torch.no_grad():
        reft.source.bias.fill_(1.0)
    r = reft.rotate.weight
    moved = reft(h) - h
    assert torch.allclose(moved, torch.ones(3) @ r.expand(2, 5, 3, 16), atol=1e-5)  # R^T b, inside the row space of R
    opt = torch.optim.Adam(reft.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        reft(h).pow(2).sum().backward()
        opt.step()
    r = reft.rotate.weight
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-5)


def test_reft_forgets_without_changing_the_model(setup):
    model, mem, nmem, probe = setup
    before_hash, hooks = state_hash(model), hook_count(model)  # 0, or the TransformerBridge's own norm hooks
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    result = reft_unlearn(
        model,
        mem.select([0, 1]),
        nmem.select(range(10)),
        ReftConfig(method="ga", layer=2, rank=4, lr=0.05, steps=15),
        probe=probe,
    )
    assert state_hash(model) == before_hash and result.weights_changed == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters()) and hook_count(model) == hooks
    assert result.before.target_em.tolist() == [CONT, CONT]
    assert float(result.after.target_em.float().mean()) < CONT / 2
    assert result.trained == sum(p.numel() for p in result.intervention.parameters())
    again = evaluate(model, mem.select([0, 1]), probe, hooks=result.hooks())
    assert torch.equal(again.target_em, result.after.target_em) and torch.equal(again.nmem_em, result.after.nmem_em)
    assert hook_count(model) == hooks
    plain = evaluate(model, mem.select([0, 1]), probe)
    assert plain.target_em.tolist() == [CONT, CONT]  # without the hooks, the model still recites


def test_reft_in_the_table_and_bad_settings(setup):
    model, mem, nmem, probe = setup
    table = unlearning_table(
        model,
        mem.select([0]),
        nmem.select(range(10)),
        [ReftConfig(method="unlearn", layer=1, lr=0.05, steps=5)],
        probe,
        relearn_config=None,
    )
    assert table.labels == ("unlearn LoReFT r4 L1",) and table.weights_changed == (0.0,)
    with pytest.raises(UserError, match="layer"):
        reft_unlearn(model, mem.select([0]), nmem.select(range(10)), ReftConfig(layer=9))
    with pytest.raises(UserError, match="rank"):
        ReftConfig(rank=0)
