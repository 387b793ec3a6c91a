"""EM from one teacher-forced pass equals EM from real greedy decoding; NLL; MEM / NMEM split."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

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
    """A tiny GPT-Neo built through interp (either backend); with soft-capped logits, which a GPT-Neo has not, a
    HookedTransformer (the hooked backend only)."""
    from factories import tiny_model

    from interp import backend

    def make(dtype=torch.float32, softcap=-1.0):
        sizes = dict(n_layers=3, d_vocab=40, n_ctx=24, attn_types=["global", "local", "global"], window_size=4, seed=3)
        if softcap <= 0:
            return tiny_model(dtype=dtype, **sizes)
        if backend.NAME != "hooked":
            pytest.skip("needs soft-capped logits, built as a HookedTransformer (the hooked backend only)")
        from transformer_lens import HookedTransformer

        return HookedTransformer(tiny_config(dtype=dtype, output_logits_soft_cap=softcap, **sizes)).eval()

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


def _by_hand_log10_p(logits: torch.Tensor, tokens: torch.Tensor, p: int, top_k: int | None) -> torch.Tensor:
    """log10 of the product of the continuation tokens' sampling probabilities, from the full logits:
    softmax over the vocabulary, or over the top k logits only (0 for a token outside them)."""
    out = []
    for row in range(tokens.shape[0]):
        prob = 1.0
        for pos in range(p, tokens.shape[1]):
            scores = logits[row, pos - 1].double()
            keep = torch.ones_like(scores, dtype=torch.bool)
            if top_k is not None:
                keep = scores >= scores.sort(descending=True).values[top_k - 1]
            probs = torch.where(keep, scores.exp(), torch.zeros_like(scores))
            prob *= float(probs[tokens[row, pos]] / probs.sum())
        out.append(math.log10(prob) if prob > 0 else -math.inf)
    return torch.tensor(out, dtype=torch.float64)


def test_extraction_probability_is_the_product_of_the_softmax_probabilities(tiny_neo):
    """log10 p equals the product computed by hand from the model's softmax; with top-k, from the
    top k renormalised, and -inf for a continuation with a token outside the top k."""
    from interp.metrics import greedy_continuations

    model = tiny_neo(torch.float32, -1.0)
    p, cont = 10, 8
    prefixes = torch.randint(0, 40, (6, p), generator=torch.Generator().manual_seed(2))
    own = greedy_continuations(model, prefixes[:3], cont)  # the argmax at every step: inside any top k
    rand = torch.randint(0, 40, (3, cont), generator=torch.Generator().manual_seed(3))
    paragraphs = Paragraphs(torch.cat([prefixes, torch.cat([own, rand])], 1), p, tuple("abcdef"))
    logits = model(paragraphs.tokens)
    full = score_paragraphs(model, paragraphs, batch_size=4)
    torch.testing.assert_close(full.log10_p, _by_hand_log10_p(logits, paragraphs.tokens, p, None), rtol=0, atol=1e-5)
    assert full.top_k is None and full.log10_p.dtype == torch.float64
    assert full.log10_p[:3].min() > full.log10_p[3:].max()  # greedy text is the likeliest sample here
    top = score_paragraphs(model, paragraphs, top_k=3)
    by_hand = _by_hand_log10_p(logits, paragraphs.tokens, p, 3)
    assert torch.isfinite(top.log10_p[:3]).all() and torch.isinf(by_hand[3:]).all()
    assert torch.equal(torch.isinf(top.log10_p), torch.isinf(by_hand))
    fin = torch.isfinite(by_hand)
    torch.testing.assert_close(top.log10_p[fin], by_hand[fin], rtol=0, atol=1e-5)
    assert (top.log10_p[:3] > full.log10_p[:3]).all()  # renormalising over fewer tokens raises p
    assert torch.equal(top.em, full.em) and torch.allclose(top.nll, full.nll)  # NLL stays the full softmax's
    from interp.metrics import extraction_by_em_bin

    rows = extraction_by_em_bin(top, nmem_max=2)
    assert sum(sum(r["log10_p_histogram"].values()) for r in rows) == len(paragraphs)  # each paragraph once
    assert sum(r["log10_p_histogram"]["-inf (outside top-k)"] for r in rows) == int(torch.isinf(by_hand).sum())
    records = top.to_json()
    assert records[5]["log10_p"] is None and records[5]["p_extract"]["10000"] == 0.0
    assert records[0]["p_extract"]["1"] == pytest.approx(10 ** top.log10_p[0].item(), rel=1e-9)


def test_at_least_one_of_n_samples_is_stable():
    from interp.metrics import log10_at_least_one

    log10_p = torch.tensor([0.0, -0.5, -2.0, -20.0, -250.0, -400.0, -math.inf], dtype=torch.float64)
    p = 10**log10_p
    assert torch.equal(log10_at_least_one(log10_p, 1), log10_p)
    for n in (100, 10_000):
        got = log10_at_least_one(log10_p, n)
        naive = torch.log10(1 - (1 - p) ** n)  # fine while p is not tiny
        torch.testing.assert_close(got[:3], naive[:3], rtol=1e-12, atol=1e-12)
        assert naive[3] == -math.inf  # 1 - p rounds to 1: the naive formula loses everything
        torch.testing.assert_close(got[3:6], log10_p[3:6] + math.log10(n), rtol=0, atol=1e-9)  # n p, for n p << 1
        assert got[6] == -math.inf and got[0] == 0.0
    assert (log10_at_least_one(log10_p[2:4], 10_000) > log10_at_least_one(log10_p[2:4], 100)).all()
    with pytest.raises(ValueError):
        log10_at_least_one(log10_p, 0)


def test_a_recited_paragraph_has_the_highest_extraction_probability(tiny_model):
    """A model trained to recite one paragraph (EM = full under greedy) gives it the highest p of a
    set that also holds random text and the same prefix with other continuations."""
    model = tiny_model(d_vocab=50, n_ctx=24)
    g = torch.Generator().manual_seed(5)
    target = torch.randint(0, 50, (1, 20), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(model(target)[0, 9:-1], target[0, 10:])
        if loss.item() < 0.05:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    others = torch.randint(0, 50, (20, 20), generator=g)
    others[:5, :10] = target[0, :10]  # the same prefix, another continuation
    paragraphs = Paragraphs(torch.cat([others[:10], target, others[10:]]), 10, tuple(str(i) for i in range(21)))
    scores = score_paragraphs(model, paragraphs)
    assert scores.em[10] == 10 and (scores.em[torch.arange(21) != 10] < 10).all()
    assert int(scores.log10_p.argmax()) == 10
    assert scores.extraction_probability(1)[10] > 0.5


def test_memorization_section_shows_extraction_probability_by_em_bin(tiny_model):
    """The report's memorization section carries the log10 p histogram by EM bin: its table counts
    every paragraph once, in the bin of its EM and the log10 p range of its own score."""
    from interp.memorization import memorization_split
    from interp.metrics import LOG10_P_BINS, em_bins, extraction_by_em_bin
    from interp.views.sections.memorization import memorization_section

    model = tiny_model(d_vocab=50, n_ctx=24)
    tokens = torch.randint(0, 50, (30, 20), generator=torch.Generator().manual_seed(1))
    split = memorization_split(model, Paragraphs(tokens, 10, tuple(str(i) for i in range(30))), nmem_max=2)
    rows = extraction_by_em_bin(split.scores, 2)
    assert [r["em_bin"] for r in rows] == [b[0] for b in em_bins(10, 2)]
    assert sum(r["n"] for r in rows) == 30 and sum(sum(r["log10_p_histogram"].values()) for r in rows) == 30
    lp = split.scores.log10_p
    lo, hi = LOG10_P_BINS[2]
    in_nmem = split.scores.em <= 2
    assert rows[0]["log10_p_histogram"]["[-30, -10)"] == int(((lp >= lo) & (lp < hi) & in_nmem).sum())
    assert rows[0]["median_log10_p"] == pytest.approx(float(lp[in_nmem].median()))
    section = memorization_section(split, {})
    assert "log10_p_by_em_bin" in section.figures
    table = next(t for t in section.tables if t.caption.startswith("Extraction probability"))
    assert [row[1] for row in table.rows] == [r["n"] for r in rows]
