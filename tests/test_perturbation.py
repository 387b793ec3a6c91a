"""Prefix perturbation: the variants, EM from teacher forcing vs real greedy decoding, editing targets."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_model

from interp.data import Paragraphs
from interp.errors import UserError
from interp.metrics import em_from_hits, greedy_continuations
from interp.perturbation import corrupt_prefixes, perturbed_prefixes, prefix_perturbation, random_replacements

PREFIX, CONT = 6, 5


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(d_vocab=23, n_ctx=16, window_size=4, seed=1, initializer_range=0.3)


@pytest.fixture(scope="module")
def paragraphs():
    g = torch.Generator().manual_seed(3)
    return Paragraphs(torch.randint(0, 23, (3, PREFIX + CONT), generator=g), PREFIX, ("a", "b", "c"))


def test_each_variant_changes_exactly_one_position():
    prefixes = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    repl = random_replacements(prefixes, 3, 10, torch.Generator().manual_seed(0))
    assert (repl != prefixes[..., None]).all() and repl.min() >= 0 and repl.max() < 10
    variants = perturbed_prefixes(prefixes, repl)
    for i in range(2):
        for pos in range(4):
            for s in range(3):
                diff = (variants[i, pos, s] != prefixes[i]).nonzero().flatten().tolist()
                assert diff == [pos]
                assert variants[i, pos, s, pos] == repl[i, pos, s]


def test_kv_cached_greedy_decode_equals_argmax_append_loop(tiny, paragraphs):
    tokens = paragraphs.prefixes
    for _ in range(CONT):
        tokens = torch.cat([tokens, tiny(tokens)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(greedy_continuations(tiny, paragraphs.prefixes, CONT, batch_size=2), tokens[:, PREFIX:])


def test_em_equals_real_greedy_decoding_and_targets_are_worst(tiny, paragraphs):
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    res = prefix_perturbation(tiny, paragraphs, samples_per_position=3, seed=5)
    assert res.em.shape == (3, PREFIX, 3)
    assert (res.base_em == CONT).all()  # own greedy continuation is the reference
    # Real greedy decoding of every variant reproduces the teacher-forced EM.
    variants = perturbed_prefixes(paragraphs.prefixes, res.replacements).reshape(-1, PREFIX)
    decoded = greedy_continuations(tiny, variants, CONT)
    ref = res.reference_continuations.repeat_interleave(PREFIX * 3, 0)
    assert torch.equal(em_from_hits(decoded == ref).view(3, PREFIX, 3), res.em)
    assert res.em.float().std() > 0  # a random model does get derailed sometimes
    # Editing targets: the original prefix + the greedy continuation of the most damaging variant.
    targets = res.editing_targets
    assert targets.ids == paragraphs.ids and torch.equal(targets.prefixes, paragraphs.prefixes)
    for i in range(3):
        pos, s = res.worst[i].tolist()
        assert res.em[i, pos, s] == res.em[i].min()
        assert torch.equal(targets.continuations[i], decoded.view(3, PREFIX, 3, CONT)[i, pos, s])
    assert torch.allclose(res.mean_em_drop, (CONT - res.em.float()).mean((1, 2)))
    assert all(v.equal(tiny.state_dict()[k]) for k, v in state.items())
    assert len(res.to_json()["paragraphs"]) == 3


def test_true_reference_scores_true_continuation(tiny, paragraphs):
    res = prefix_perturbation(tiny, paragraphs, samples_per_position=1, reference="true")
    logits = tiny(paragraphs.tokens)
    hits = logits[:, PREFIX - 1 : -1].argmax(-1) == paragraphs.continuations
    assert torch.equal(res.base_em, em_from_hits(hits))


def test_bad_options_are_user_errors(tiny, paragraphs):
    with pytest.raises(UserError, match="reference"):
        prefix_perturbation(tiny, paragraphs, reference="mine")
    with pytest.raises(UserError, match="samples"):
        prefix_perturbation(tiny, paragraphs, samples_per_position=0)


def test_corrupt_prefixes_changes_the_asked_fraction_of_the_prefix_only(paragraphs):
    corrupted = corrupt_prefixes(paragraphs, 0.5, 23, seed=1)
    changed = corrupted != paragraphs.tokens
    assert (changed[:, :PREFIX].sum(1) == 3).all() and not changed[:, PREFIX:].any()
    assert torch.equal(corrupted, corrupt_prefixes(paragraphs, 0.5, 23, seed=1))
    with pytest.raises(UserError, match="fraction"):
        corrupt_prefixes(paragraphs, 0.0, 23)
