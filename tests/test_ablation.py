"""Head ablation: batched variants equal one hooked forward per head; MEM vs NMEM bookkeeping."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_model

from interp.backend import weight
from interp.data import Paragraphs
from interp.errors import UserError
from interp.locator.ablation import head_ablation
from interp.metrics import continuation_log_probs, em_from_hits

PREFIX, CONT, VOCAB = 5, 4, 20


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model(d_model=24, n_heads=3, d_head=8, d_vocab=VOCAB, n_ctx=16, window_size=4, seed=3)
    with torch.no_grad():
        weight(model, 1, "W_O")[2] = 0  # head 1.2 writes nothing: ablating its z changes nothing
    return model


def _sets():
    g = torch.Generator().manual_seed(8)
    tokens = torch.randint(0, VOCAB, (9, PREFIX + CONT), generator=g)
    return (
        Paragraphs(tokens[:2], PREFIX, ("m0", "m1")),
        Paragraphs(tokens[2:5], PREFIX, ("n0", "n1", "n2")),
        Paragraphs(tokens[5:], PREFIX, ("r0", "r1", "r2", "r3")),
    )


def _reference(model, tokens, layer, head, value):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = value[:, :, head]
        return z

    logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])
    hits = logits[:, PREFIX - 1 : -1].argmax(-1) == tokens[:, PREFIX:]
    return em_from_hits(hits), -continuation_log_probs(logits, tokens, PREFIX).mean(1)


def test_batched_ablation_equals_one_forward_per_head(tiny):
    mem, nmem, reference = _sets()
    res = head_ablation(tiny, mem, nmem, reference=reference, batch_size=4)
    tokens = torch.cat([mem.tokens, nmem.tokens])
    _, ref_cache = tiny.run_with_cache(reference.tokens)
    for m, mode in enumerate(res.modes):
        for layer in range(2):
            z = ref_cache["z", layer]  # the mean comes from the reference set, never from the scored paragraphs
            value = (
                torch.zeros(len(tokens), *z.shape[1:])
                if mode == "zero"
                else z.mean(0, keepdim=True).expand(len(tokens), *z.shape[1:])
            )
            for head in range(3):
                em, nll = _reference(tiny, tokens, layer, head, value)
                assert torch.equal(res.em[m, layer, head], em)
                assert torch.allclose(res.nll[m, layer, head], nll, atol=1e-5)
    assert res.is_mem.tolist() == [True, True, False, False, False]
    assert torch.allclose(res.nll_increase()[:, 1, 2], torch.zeros(2), atol=1e-6)
    assert res.nll_increase().abs().max() > 1e-3
    expected = (res.nll[1, ..., :2] - res.base_nll[:2]).mean(-1) - (res.nll[1, ..., 2:] - res.base_nll[2:]).mean(-1)
    assert torch.allclose(res.effect("mean"), expected, atol=1e-6)
    assert set(res.to_json()) >= {"mem_em_drop", "nmem_nll_increase", "effect"}
    assert res.reference_ids == reference.ids


def test_a_paragraphs_effect_does_not_depend_on_what_else_is_scored(tiny):
    mem, nmem, reference = _sets()
    alone = head_ablation(tiny, mem.select([0]), reference=reference, modes=("mean",))
    crowded = head_ablation(tiny, mem, nmem, reference=reference, modes=("mean",))
    assert torch.allclose(alone.nll[..., 0], crowded.nll[..., 0], atol=1e-6)
    assert torch.equal(alone.em[..., 0], crowded.em[..., 0])


def test_bad_input(tiny):
    mem, nmem, reference = _sets()
    with pytest.raises(UserError, match="mode"):
        head_ablation(tiny, mem, nmem, modes=("resample",))
    with pytest.raises(UserError, match="same prefix"):
        head_ablation(tiny, mem, Paragraphs(nmem.tokens, PREFIX + 1, nmem.ids), reference=reference)
    with pytest.raises(UserError, match="reference"):
        head_ablation(tiny, mem, nmem, modes=("mean",))
    with pytest.raises(UserError, match="must not be scored"):
        head_ablation(tiny, mem, nmem, reference=nmem, modes=("mean",))
    assert head_ablation(tiny, mem, nmem, modes=("zero",)).reference_ids == ()
    assert not any(hp.fwd_hooks for hp in tiny.hook_dict.values())
