"""Rare-token attention: per-rank sums match a hand loop; a head built to attend to rare tokens is found."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import kendalltau
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.attention import rare_token_attention
from interp.data import Paragraphs, rarity_ranks
from interp.errors import UserError

VOCAB, PREFIX = 40, 12


def _model(normalization: str | None, seed: int) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=VOCAB, n_ctx=24, act_fn="gelu_new",
        normalization_type=normalization, attn_types=["global", "local"], window_size=6, use_attn_scale=False,
        original_architecture="GPTNeoForCausalLM", seed=seed,
    )
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def counts():
    return torch.randint(1, 10_000, (VOCAB,), generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def paragraphs():
    tokens = torch.stack([torch.randperm(VOCAB, generator=torch.Generator().manual_seed(i))[:20] for i in range(16)])
    return Paragraphs(tokens, PREFIX, tuple(str(i) for i in range(16)))


def test_sums_per_rank_match_a_hand_loop(counts, paragraphs):
    model = _model("LN", seed=0)
    res = rare_token_attention(model, paragraphs, counts, batch_size=5)
    _, cache = model.run_with_cache(paragraphs.tokens)
    ranks = rarity_ranks(paragraphs.prefixes, counts)
    expected = torch.zeros(2, 2, PREFIX)
    for i in range(len(paragraphs)):
        for layer in range(2):
            for pos in range(PREFIX):
                expected[layer, :, ranks[i, pos]] += cache["pattern", layer][i, :, PREFIX - 1, pos]
    assert torch.allclose(res.attention_by_rank, expected, atol=1e-5)
    present = ranks.flatten().unique()
    ref = kendalltau(present.numpy(), expected[1, 0, present].numpy()).statistic
    assert res.tau[1, 0].item() == pytest.approx(ref, abs=1e-6)
    sub = res.select(torch.tensor([0, 3]))
    assert sub.ids == ("0", "3") and torch.allclose(sub.attention_by_rank, res.per_paragraph[[0, 3]].sum(0))
    assert set(res.to_json()) >= {"tau", "tau_mean", "attention_by_rank"}


def test_head_built_to_attend_to_rare_tokens_has_the_most_negative_tau(counts, paragraphs):
    # No LayerNorm; embedding dim 0 carries the token's rarity, dim 1 a constant. Head (1, 1)
    # scores keys by rarity: q = 1 (from dim 1), k = rarity (from dim 0). Its tau must be ~ -1.
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
        attn.W_Q[1] = 0
        attn.W_K[1] = 0
        attn.b_Q[1] = 0
        attn.b_K[1] = 0
        attn.W_Q[1, 1, 0] = 4.0
        attn.W_K[1, 0, 0] = 4.0
    res = rare_token_attention(model, paragraphs, counts)
    assert res.tau.argmin().item() == 1 * 2 + 1
    assert res.tau[1, 1] < -0.9 and res.tau_mean[1, 1] < -0.9
    assert (res.tau.flatten()[:3] > -0.7).all()


def test_bad_query_position_and_counts(counts, paragraphs):
    model = _model("LN", seed=0)
    with pytest.raises(UserError, match="query position"):
        rare_token_attention(model, paragraphs, counts, query_pos=PREFIX)
    with pytest.raises(UserError, match="unigram counts"):
        rare_token_attention(model, paragraphs, counts[:10])
