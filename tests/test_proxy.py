"""Decoding-time unlearning (proxy-tuning): the ensemble's logits are base + alpha * (unlearned -
original small model), every metric and greedy decoding score it through the LogitModel seam,
alpha = 0 is the base exactly, unlearning the small model lowers the ensemble's EM on the
targets, and neither model is modified."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from factories import tiny_model

from interp.data import Paragraphs
from interp.errors import UserError
from interp.metrics import greedy_continuations, score_paragraphs
from interp.unlearning import RelearnConfig, UnlearnConfig, calibrate, evaluate, probe_sets, relearn, unlearning_table
from interp.unlearning.proxy import ProxyConfig, ProxyMethod, ProxyModel, proxy_at_alphas, proxy_unlearn

PREFIX, CONT, VOCAB = 8, 8, 48


def tiny(seed: int, n_layers: int = 2, d_vocab: int = VOCAB):
    return tiny_model(
        n_layers=n_layers,
        d_vocab=d_vocab,
        n_ctx=PREFIX + CONT,
        attn_types=["global", "local"] * (n_layers // 2),
        window_size=4,
        seed=seed,
        initializer_range=0.3,
    )


def recited(model, n: int, seed: int, tag: str) -> Paragraphs:
    """Random prefixes followed by the model's OWN greedy continuation: EM = CONT by construction."""
    prefixes = torch.randint(0, VOCAB, (n, PREFIX), generator=torch.Generator().manual_seed(seed))
    tokens = torch.cat([prefixes, greedy_continuations(model, prefixes, CONT)], 1)
    return Paragraphs(tokens, PREFIX, tuple(f"{tag}{i}" for i in range(n)))


def random_text(n: int, seed: int, tag: str) -> Paragraphs:
    tokens = torch.randint(0, VOCAB, (n, PREFIX + CONT), generator=torch.Generator().manual_seed(seed))
    return Paragraphs(tokens, PREFIX, tuple(f"{tag}{i}" for i in range(n)))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def models():
    return tiny(3, n_layers=4), tiny(4), tiny(5)


def test_proxy_logits_are_base_plus_alpha_times_the_difference(models):
    base, small, other = models
    proxy = ProxyModel(base, small, other, alpha=0.7)
    tokens = random_text(5, 1, "t").tokens
    expected = base(tokens) + 0.7 * (other(tokens) - small(tokens))
    torch.testing.assert_close(proxy.logits(tokens), expected, rtol=0, atol=1e-5)
    # The metrics score it through the LogitModel seam: NLL, EM and log10 p from those logits.
    paragraphs = Paragraphs(tokens, PREFIX, tuple("abcde"))
    scores = score_paragraphs(proxy, paragraphs, batch_size=2)
    logp = expected[:, PREFIX - 1 : -1].log_softmax(-1).gather(-1, tokens[:, PREFIX:, None]).squeeze(-1)
    torch.testing.assert_close(scores.nll, -logp.mean(1), rtol=0, atol=1e-5)
    torch.testing.assert_close(scores.log10_p, logp.double().sum(1) / torch.log(torch.tensor(10.0)).double())
    hits = expected[:, PREFIX - 1 : -1].argmax(-1) == tokens[:, PREFIX:]
    assert torch.equal(scores.hits, hits)
    # Greedy decoding appends the argmax of the combined logits, one token at a time.
    loop = paragraphs.prefixes
    for _ in range(CONT):
        step = base(loop) + 0.7 * (other(loop) - small(loop))
        loop = torch.cat([loop, step[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(greedy_continuations(proxy, paragraphs.prefixes, CONT), loop[:, PREFIX:])


def test_alpha_zero_or_identical_small_models_give_the_base_exactly(models):
    base, small, other = models
    paragraphs = Paragraphs(
        torch.cat([recited(base, 6, 2, "m").tokens, random_text(6, 3, "r").tokens]), PREFIX, tuple("abcdefghijkl")
    )
    ref = score_paragraphs(base, paragraphs)
    assert (ref.em[:6] == CONT).all()
    for proxy in (ProxyModel(base, small, other, alpha=0.0), ProxyModel(base, small, small, alpha=3.0)):
        got = score_paragraphs(proxy, paragraphs)
        assert torch.equal(got.em, ref.em) and torch.equal(got.hits, ref.hits)
        torch.testing.assert_close(got.nll, ref.nll, rtol=0, atol=1e-6)


def test_unlearning_the_small_model_lowers_the_proxy_em_and_changes_no_weights(models, assert_untouched):
    base, small, _ = models
    mem = recited(base, 6, seed=1, tag="m")
    retain = random_text(10, seed=2, tag="n")
    probe = probe_sets(base, mem.select([3, 4, 5]), retain.select(range(5)), random_text(4, 4, "h"))
    targets = mem.select([0, 1, 2])
    config = ProxyConfig(unlearn=UnlearnConfig(select="all", lr=3e-2, steps=10, weight_decay=0.0), alpha=1.0)
    with assert_untouched(base), assert_untouched(small):
        result = proxy_unlearn(base, small, targets, retain, config, probe=probe)
    assert (result.before.target_em == CONT).all()
    assert result.after.target_em.float().mean() < result.before.target_em.float().mean() - 2
    assert result.small.after.target_nll.mean() > result.small.before.target_nll.mean()  # the small model forgot
    again = evaluate(base, targets, probe)
    assert torch.equal(result.before.target_em, again.target_em) and torch.equal(result.before.mem_em, again.mem_em)
    assert result.weights_changed == 0
    # The effect grows with alpha; alpha = 0 is the base again.
    sweep = proxy_at_alphas(result, targets, [0.0, 1.0, 4.0], probe=probe)
    ems = [float(r.after.target_em.float().mean()) for r in sweep]
    assert ems[0] == float(CONT) and ems[2] <= ems[1] < ems[0]
    assert torch.equal(sweep[0].after.mem_em, result.before.mem_em)
    json = result.to_json()
    assert json["config"]["kind"] == "proxy" and json["small_after"]["target_nll"] > json["small_before"]["target_nll"]


def test_hooks_act_on_the_base_and_are_removed(models):
    base, small, other = models
    proxy = ProxyModel(base, small, other, alpha=1.0)
    targets = recited(base, 3, 1, "m")

    def kill(resid, hook):
        return torch.zeros_like(resid)

    plain = evaluate(proxy, targets)
    hooked = evaluate(proxy, targets, hooks=[("blocks.3.hook_resid_post", kill)])
    assert not torch.equal(plain.target_nll, hooked.target_nll)
    assert torch.equal(evaluate(proxy, targets).target_nll, plain.target_nll)


def test_a_small_model_with_another_vocabulary_is_refused(models):
    base, small, _ = models
    with pytest.raises(UserError, match="vocabulary"):
        ProxyModel(base, small, tiny(6, d_vocab=VOCAB + 1))
    with pytest.raises(UserError, match="alpha"):
        ProxyConfig(alpha=-1.0)


def test_the_decoding_time_row_is_calibrated_to_the_level_like_the_others(models, assert_untouched):
    """ProxyMethod as a row of the unlearning table: `calibrate` searches the small model's rate until EVERY
    target's EM <= the level; at that rate each target's own run is at the level, the table's row changes
    no weight of the base, and the relearning attack (through the base) runs on it."""
    base, small, _ = models
    mem = recited(base, 4, seed=1, tag="m")
    retain = random_text(20, seed=2, tag="n")
    probe = probe_sets(base, mem.select([2, 3]), retain.select(range(5)), random_text(4, 4, "h"))
    targets = mem.select([0, 1])
    row = ProxyMethod(small, ProxyConfig(unlearn=UnlearnConfig(select="all", steps=10, weight_decay=0.0)))
    with assert_untouched(base), assert_untouched(small):
        search = calibrate(base, targets, retain, row, level=2, probe=probe)
        assert search.reached and search.label == row.label
        at = replace(row, lr=search.lr)
        ems = [
            int(at.run(base, targets.select([i]), retain.select(range(10 * i, 10 * i + 10))).after.target_em)
            for i in range(2)
        ]
        assert max(ems) <= 2 and list(search.chosen.target_em) == ems
        low, _ = search.bracket
        assert low is not None and search.lr / low <= 1.4 + 1e-9  # a rate within the tolerance did not reach it
        table = unlearning_table(base, targets, retain, [at], probe, calibrations=[search])
    assert table.weights_changed == (0,) and table.after[0]["target_em_max"] <= 2
    assert table.configs[0]["kind"] == "proxy" and table.configs[0]["lr"] == search.lr
    assert table.relearned[0]["target_em"] >= 0  # the relearning attack ran through the base


def test_relearning_a_proxy_relearns_its_base_and_keeps_the_difference(models, assert_untouched):
    base, small, other = models
    proxy = ProxyModel(base, small, other, alpha=1.0)
    targets = recited(base, 2, 1, "m")
    with assert_untouched(base), assert_untouched(small), assert_untouched(other):
        attacked = relearn(proxy, targets, targets, RelearnConfig(steps=2, lr=1e-3))
    assert isinstance(attacked, ProxyModel) and attacked.small_unlearned is other and attacked.alpha == 1.0
    assert not torch.equal(attacked.base.blocks[0].mlp.W_in, base.blocks[0].mlp.W_in)


def test_cli_proxy_refuses_save(tmp_path, capsys):
    from interp.cli import main

    assert main(["unlearn", "--model", "testbed", "--proxy", "--save", str(tmp_path / "x")]) == 2
    assert "--proxy change no weights" in capsys.readouterr().err
