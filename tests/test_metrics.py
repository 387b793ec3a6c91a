"""EM from one teacher-forced pass equals EM from real greedy decoding; NLL; MEM / NMEM split."""

from __future__ import annotations

import pytest
import torch

from interp.data import Paragraphs
from interp.errors import UserError
from interp.memorization import split_mem_nmem
from interp.metrics import em_from_hits, greedy_continuations, greedy_exact_match, score_paragraphs


def test_em_counts_up_to_first_mismatch():
    hits = torch.tensor([[True, True, False, True], [False, True, True, True], [True] * 4])
    assert em_from_hits(hits).tolist() == [2, 0, 4]


@pytest.mark.slow
def test_teacher_forced_em_equals_greedy_decoding_on_testbed(testbed, testbed_scores):
    p, scores = testbed_scores
    mem, nmem = split_mem_nmem(scores.em, p.continuation_len)
    partial = ((scores.em > 10) & (scores.em < p.continuation_len)).nonzero().flatten()
    assert len(mem) >= 8 and len(nmem) >= 8
    pick = torch.cat([mem[:8], nmem[:8], partial[:8]])
    sub = p.select(pick)
    greedy = greedy_exact_match(testbed, sub)
    assert torch.equal(greedy, scores.em[pick])
    assert (scores.em[mem] == p.continuation_len).all()


def test_greedy_decoding_attends_to_tokens_equal_to_the_pad_id(testbed, testbed_scores):
    """GPT-Neo's pad id is EOS; a prefix may contain it, also at its end (a document boundary). Greedy
    decoding must not mask it (model.generate masks trailing pad ids): it must equal appending the argmax
    of plain full forwards, and its EM the teacher-forced EM over the same tokens."""
    p, scores = testbed_scores
    pad = testbed.tokenizer.pad_token_id
    assert pad is not None
    mem, nmem = split_mem_nmem(scores.em, p.continuation_len)
    sub = p.select(torch.cat([mem[:4], nmem[:4]]))
    tokens = sub.tokens.clone()
    tokens[:, [3, sub.prefix_len - 1]] = pad
    with_pad = Paragraphs(tokens, sub.prefix_len, sub.ids)
    decoded = greedy_continuations(testbed, with_pad.prefixes, 12)
    loop = with_pad.prefixes
    for _ in range(12):
        loop = torch.cat([loop, testbed(loop)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(decoded, loop[:, sub.prefix_len :])
    assert torch.equal(greedy_exact_match(testbed, with_pad), score_paragraphs(testbed, with_pad).em)


def test_nll_is_continuation_only(testbed, testbed_paragraph_set):
    p = testbed_paragraph_set.select(range(4))
    base = score_paragraphs(testbed, p)
    scrambled = p.tokens.clone()
    scrambled[:, :5] = 7  # change early prefix tokens: only conditioning changes, not what is scored
    other = score_paragraphs(testbed, Paragraphs(scrambled, p.prefix_len, p.ids))
    logits = testbed(p.tokens).log_softmax(-1)
    manual = -logits[:, p.prefix_len - 1 : -1].gather(-1, p.tokens[:, p.prefix_len :, None]).squeeze(-1).mean(1)
    assert torch.allclose(base.nll, manual, atol=1e-5)
    assert not torch.allclose(base.nll, other.nll)


def test_batch_size_does_not_change_results(testbed, testbed_paragraph_set):
    p = testbed_paragraph_set.select(range(10))
    a, b = score_paragraphs(testbed, p, batch_size=3), score_paragraphs(testbed, p, batch_size=10)
    assert torch.equal(a.em, b.em) and torch.allclose(a.nll, b.nll, atol=1e-5)


def test_split_thresholds():
    em = torch.tensor([50, 0, 10, 11, 49, 50])
    mem, nmem = split_mem_nmem(em, 50)
    assert mem.tolist() == [0, 5] and nmem.tolist() == [1, 2]
    mem, nmem = split_mem_nmem(em, 50, mem_min=40, nmem_max=0)
    assert mem.tolist() == [0, 4, 5] and nmem.tolist() == [1]
    with pytest.raises(UserError):
        split_mem_nmem(em, 50, mem_min=5, nmem_max=10)


@pytest.fixture(scope="module")
def tiny_neo():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    def make(dtype=torch.float32, softcap=-1.0):
        cfg = HookedTransformerConfig(
            n_layers=3,
            d_model=32,
            n_heads=4,
            d_head=8,
            d_mlp=64,
            d_vocab=40,
            n_ctx=24,
            act_fn="gelu_new",
            normalization_type="LN",
            attn_types=["global", "local", "global"],
            window_size=4,
            use_attn_scale=False,
            original_architecture="GPTNeoForCausalLM",
            seed=3,
            dtype=dtype,
            output_logits_soft_cap=softcap,
        )
        return HookedTransformer(cfg).eval()

    return make


@pytest.mark.parametrize("dtype, softcap", [(torch.float32, -1.0), (torch.float64, -1.0), (torch.float32, 2.0)])
def test_continuation_scores_equal_a_full_forward(tiny_neo, monkeypatch, dtype, softcap):
    import interp.metrics as metrics
    from interp.metrics import continuation_hits, continuation_log_probs, continuation_scores

    model = tiny_neo(dtype, softcap)
    tokens = torch.randint(0, 40, (7, 20), generator=torch.Generator().manual_seed(1))
    p = 12
    monkeypatch.setattr(metrics, "LOGITS_CHUNK_BYTES", 3 * 8 * 40 * 4)  # float32: 3 rows a chunk, the last chunk short
    logits = model(tokens)
    ref_logp = continuation_log_probs(logits, tokens, p)
    ref_hits = logits[:, p - 1 : -1].argmax(-1) == tokens[:, p:]
    logp, hits = continuation_scores(model, tokens, p)
    assert logp.dtype == dtype and logp.shape == (7, 8)
    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)
    assert torch.equal(hits, ref_hits) and torch.equal(continuation_hits(model, tokens, p), ref_hits)
    # Starting at block 2 from the cached residual stream gives the same; hooks on blocks still act.
    _, cache = model.run_with_cache(tokens)
    again, _ = continuation_scores(model, tokens, p, residual=cache["resid_pre", 2], start_at_layer=2)
    torch.testing.assert_close(again, logp, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)

    def zero_head(z, hook):
        z[:, :, 1] = 0
        return z

    hooked = model.run_with_hooks(tokens, fwd_hooks=[("blocks.2.attn.hook_z", zero_head)])
    with model.hooks(fwd_hooks=[("blocks.2.attn.hook_z", zero_head)]):
        patched, _ = continuation_scores(model, tokens, p, residual=cache["resid_pre", 2], start_at_layer=2)
    torch.testing.assert_close(
        patched, continuation_log_probs(hooked, tokens, p), rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12
    )
    assert (patched - logp).abs().max() > 1e-3
