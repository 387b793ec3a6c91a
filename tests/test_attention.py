"""Rare-token attention: the paper's query position read by hand, tau-b against scipy, and the null:
a uniform head has no excess, a head built to attend to rare tokens has a large one."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from factories import tiny_model
from scipy.stats import kendalltau

from interp import backend
from interp.data import Paragraphs, rarity_ranks
from interp.errors import UserError
from interp.locator.rare_tokens import (
    RareTokenAttention,
    kendall_tau_b,
    mem_specific_head,
    rare_token_attention,
    tau_statistics,
)

VOCAB, PREFIX = 40, 12


def _model(normalization: str | None, seed: int):
    """A tiny GPT-Neo built through interp (either backend); without LayerNorm, which a GPT-Neo always has, a
    HookedTransformer (the hooked backend only)."""
    sizes = dict(d_model=16, n_heads=2, d_mlp=32, d_vocab=VOCAB, n_ctx=24, window_size=6, seed=seed)
    if normalization == "LN":
        return tiny_model(**sizes)
    if backend.NAME != "hooked":
        pytest.skip("needs a model without LayerNorm, built as a HookedTransformer (the hooked backend only)")
    from transformer_lens import HookedTransformer

    return HookedTransformer(tiny_config(**sizes, normalization_type=normalization)).eval()


@pytest.fixture(scope="module")
def counts():
    return torch.randint(1, 10_000, (VOCAB,), generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def paragraphs():
    tokens = torch.stack([torch.randperm(VOCAB, generator=torch.Generator().manual_seed(i))[:20] for i in range(24)])
    tokens[:, 3] = tokens[:, 5]  # repeated tokens give tied ranks, as real text does
    return Paragraphs(tokens, PREFIX, tuple(str(i) for i in range(24)))


def _rare_head_model(counts: torch.Tensor):
    """No LayerNorm; embedding dim 0 carries the token's rarity, dim 1 a constant. Head (1, 1) scores
    keys by rarity (q = 1 from dim 1, k = rarity from dim 0); head (1, 0) has zero scores: uniform."""
    model = _model(None, seed=0)
    rarity = -counts.float().log()
    rarity = (rarity - rarity.mean()) / rarity.std()
    with torch.no_grad():
        model.embed.W_E[:, :2] = torch.stack([rarity, torch.ones(VOCAB)], 1)
        model.pos_embed.W_pos[:, :2] = 0
        for layer in range(2):
            model.blocks[layer].attn.W_O[:, :, :2] = 0  # keep dims 0 and 1 clean for layer 1
            model.blocks[layer].mlp.W_out[:, :2] = 0
        attn = model.blocks[1].attn
        for head in (0, 1):
            attn.W_Q[head] = 0
            attn.W_K[head] = 0
            attn.b_Q[head] = 0
            attn.b_K[head] = 0
        attn.W_Q[1, 1, 0] = 4.0
        attn.W_K[1, 0, 0] = 4.0
    return model


@pytest.mark.parametrize("query, row", [("first_continuation", PREFIX), ("last_prefix", PREFIX - 1)])
def test_sums_per_rank_match_hand_indexed_patterns(counts, paragraphs, query, row):
    model = _model("LN", seed=0)
    res = rare_token_attention(model, paragraphs, counts, query=query, null_draws=20, batch_size=5)
    _, cache = model.run_with_cache(paragraphs.tokens)  # the whole paragraph: causal, so rows are the same
    ranks = rarity_ranks(paragraphs.prefixes, counts)
    expected = torch.zeros(2, 2, PREFIX)
    for i in range(len(paragraphs)):
        for layer in range(2):
            for pos in range(PREFIX):  # keys: the prefix only, never the first continuation token
                expected[layer, :, ranks[i, pos]] += cache["pattern", layer][i, :, row, pos]
    assert res.query_pos == row
    assert torch.allclose(res.attention_by_rank, expected, atol=1e-5)
    present = ranks.flatten().unique()
    ref = kendalltau(present.numpy(), expected[1, 0, present].numpy()).statistic
    assert res.tau[1, 0].item() == pytest.approx(ref, abs=1e-6)
    sub = res.select(torch.tensor([0, 3, 5, 9]))
    again = rare_token_attention(model, paragraphs.select([0, 3, 5, 9]), counts, query=query, null_draws=20)
    assert (
        sub.ids == ("0", "3", "5", "9")
        and torch.allclose(sub.tau, again.tau)
        and torch.allclose(sub.excess, again.excess)
    )


def test_the_two_query_positions_differ(counts, paragraphs):
    model = _model("LN", seed=1)
    first = rare_token_attention(model, paragraphs, counts, null_draws=10)
    last = rare_token_attention(model, paragraphs, counts, query="last_prefix", null_draws=10)
    assert first.query == "first_continuation" and not torch.allclose(first.key_attention, last.key_attention)


def test_kendall_tau_b_equals_scipy_with_ties():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 6, (50, 17), generator=gen).double()  # many ties
    ours = kendall_tau_b(y)
    for row in range(50):
        assert ours[row].item() == pytest.approx(kendalltau(range(17), y[row].numpy()).statistic, abs=1e-12)
    assert torch.isnan(kendall_tau_b(torch.ones(5)))


def test_uniform_head_has_no_excess_and_rare_head_has_a_large_one(counts, paragraphs):
    res = rare_token_attention(_rare_head_model(counts), paragraphs, counts, null_draws=200)
    uniform, rare = (1, 0), (1, 1)
    # The raw taus are NOT 0 for the uniform head (the bias the null removes) ...
    assert res.tau[uniform].item() == pytest.approx(res.sum.uniform_tau, abs=1e-6)
    for stats in (res.sum, res.mean):
        assert abs(stats.excess[uniform].item()) < 1e-6, stats.statistic
        assert stats.null_p[uniform].item() > 0.5, stats.statistic
        assert stats.excess[rare].item() < -0.3, stats.statistic
        assert stats.null_p[rare].item() <= 0.01, stats.statistic
    assert res.excess.argmin().item() == 1 * 2 + 1


def test_null_is_seeded_and_bad_inputs_fail(counts, paragraphs):
    model = _model("LN", seed=0)
    a = rare_token_attention(model, paragraphs, counts, null_draws=30, seed=3)
    b = rare_token_attention(model, paragraphs, counts, null_draws=30, seed=3)
    assert torch.equal(a.sum.null_mean, b.sum.null_mean)
    with pytest.raises(UserError, match="query position"):
        rare_token_attention(model, paragraphs, counts, query="middle")
    with pytest.raises(UserError, match="unigram counts"):
        rare_token_attention(model, paragraphs, counts[:10])
    with pytest.raises(UserError, match="null_draws"):
        rare_token_attention(model, paragraphs, counts, null_draws=0)


def _positional_set(n: int = 48, keys: int = 12, vocab: int = 60):
    """Paragraphs whose FIRST token is rare (one of the 2nd-4th rarest of the vocabulary; the rarest
    sits at a random later position in about a fifth of them), and three heads on them: a sink on
    position 0 (0.8-0.95 of the attention, varying per paragraph), a head that attends to the rarest
    tokens wherever they are, and a uniform head. Every paragraph has 12 distinct tokens, so the
    uniform head's per-rank curve is constant and its tau undefined."""
    counts = torch.arange(1, vocab + 1) ** 2  # token t has count (t + 1)^2: token 0 is the rarest
    gen = torch.Generator().manual_seed(0)
    rest = torch.tensor([0, *range(4, vocab)])
    tokens = torch.stack(
        [
            torch.cat(
                [torch.randint(1, 4, (1,), generator=gen), rest[torch.randperm(len(rest), generator=gen)[: keys - 1]]]
            )
            for _ in range(n)
        ]
    )
    ranks = rarity_ranks(tokens, counts)
    first = 0.8 + 0.15 * torch.rand(n, generator=gen)
    sink = ((1 - first) / (keys - 1))[:, None].expand(n, keys).clone()
    sink[:, 0] = first
    rare = torch.softmax(-0.7 * ranks.float(), -1)
    uniform = torch.full((n, keys), 1.0 / keys)
    return torch.stack([sink, rare, uniform], 1)[:, None], ranks  # [n, 1 layer, 3 heads, key]


def test_a_positional_head_is_not_rare_token_preferring_under_the_default_null():
    attention, ranks = _positional_set()
    assert ranks[:, 0].float().mean() < 0.5 < ranks[:, 1:].float().mean()  # rarity correlates with position
    old = tau_statistics(attention, ranks, draws=300, null="shuffle_positions")
    new = tau_statistics(attention, ranks, draws=300)
    assert new.null == "pair_paragraphs"
    sink, rare, uniform = (0, 0), (0, 1), (0, 2)
    # the old null calls the sink on position 0 a rare-token head; the position-keeping null does not
    assert old.null_p[sink] <= 0.01 and old.excess[sink] < -0.3
    assert new.null_p[sink] > 0.2 and abs(float(new.excess[sink])) < 0.1
    # a head that attends to the rarest tokens wherever they are is significant under both
    for stats in (old, new):
        assert stats.null_p[rare] <= 0.01 and stats.excess[rare] < -0.3
        # constant per-rank curve: tau undefined, so no p-value (not the smallest one possible)
        assert stats.undefined[uniform] and torch.isnan(stats.null_p[uniform]) and torch.isnan(stats.family_p[uniform])


def test_family_wise_p_corrects_for_the_number_of_heads():
    gen = torch.Generator().manual_seed(1)
    n, keys, heads = 30, 16, 40
    ranks = torch.stack([torch.randperm(keys, generator=gen) for _ in range(n)])
    noise = torch.softmax(2 * torch.randn(n, 1, heads, keys, generator=gen), -1)  # no preference
    one = tau_statistics(noise[:, :, :1], ranks, draws=300, seed=2)
    assert torch.equal(one.family_p, one.null_p)  # one head: the max-statistic is the head's own null
    many = tau_statistics(noise, ranks, draws=300, seed=2)
    assert (many.family_p >= many.null_p - 1e-6).all()
    best = int(many.null_p.flatten().argmin())
    # the luckiest of 40 heads without preference looks significant alone, not once corrected
    assert many.null_p.flatten()[best] < 0.05 and many.family_p.flatten()[best] > 0.1
    rare = noise.clone()
    rare[:, 0, 0] = torch.softmax(-1.5 * ranks.float(), -1)
    assert tau_statistics(rare, ranks, draws=300, seed=2).family_p[0, 0] <= 0.01


def test_mem_specific_head_is_chosen_on_one_half_and_tested_on_the_other():
    gen = torch.Generator().manual_seed(3)
    n, keys = 24, 10
    ranks = torch.stack([torch.randperm(keys, generator=gen) for _ in range(2 * n)])
    att = torch.softmax(torch.randn(2 * n, 2, 2, keys, generator=gen), -1)
    att[:, 1, 1] = torch.softmax(-1.0 * ranks.float(), -1)  # rare-token head on MEM and NMEM alike
    att[:n, 0, 1] = torch.softmax(-1.0 * ranks[:n].float(), -1)  # rare-token head on MEM only
    ids = tuple(str(i) for i in range(2 * n))
    mem = RareTokenAttention(ids[:n], "first_continuation", keys, att[:n], ranks[:n], null_draws=100)
    nmem = RareTokenAttention(ids[n:], "first_continuation", keys, att[n:], ranks[n:], null_draws=100)
    spec = mem_specific_head(mem, nmem, draws=100, inner_draws=20, seed=0)
    assert (spec.layer, spec.head) == (0, 1)
    assert not set(spec.choice_ids) & set(spec.test_ids) and len(spec.choice_ids) + len(spec.test_ids) == 2 * n
    assert spec.n_test_mem == n - n // 2 and spec.difference < -0.3 and spec.p <= 0.02
    assert spec.difference == pytest.approx(spec.mem_excess - spec.nmem_excess)
    # when no head is MEM-specific, the held-out test says so
    plain = att[:n].clone()
    plain[:, 0, 1] = torch.softmax(torch.randn(n, keys, generator=gen), -1)
    unspecific = RareTokenAttention(ids[:n], "first_continuation", keys, plain, ranks[:n], null_draws=100)
    assert mem_specific_head(unspecific, nmem, draws=100, inner_draws=20).p > 0.05
    with pytest.raises(UserError, match="--n-mem"):
        mem_specific_head(mem.select(torch.arange(3)), nmem, draws=10, inner_draws=5)
