"""Position robustness on hand-built models whose answer is known: one recites by absolute
position, one by content (a bigram table), so shifting the paragraph must break only the first. Each is a
one-layer GPT-Neo built through interp (tests/factories.py), so it runs under either backend."""

from __future__ import annotations

import json

import pytest
import torch
from factories import tiny_model

from interp import Paragraphs, UserError, position_robustness
from interp.backend import Model, named_weights
from interp.position import filler_spans

N_CTX, VOCAB, PREFIX, CONT = 64, 64, 10, 10
FILLER = torch.arange(48, 64).repeat(4).reshape(8, 8)  # 64 tokens, disjoint from every paragraph token (1..40)


def _blank_model() -> tuple[dict[str, torch.Tensor], Model]:
    """A one-layer GPT-Neo with every weight 0 but its LayerNorm scales (1): attention and MLP add nothing, so
    the logits are the final LayerNorm of the embeddings, unembedded. Its weights by TransformerLens name (views
    of the model's own, to edit in place) and the model."""
    model = tiny_model(
        n_layers=1, d_model=64, n_heads=1, n_ctx=N_CTX, d_vocab=VOCAB, act_fn="gelu", attn_types=["global"]
    )
    weights = {name: w.tensor for name, w in named_weights(model).items()}
    with torch.no_grad():
        for name, w in weights.items():
            w.fill_(1.0 if name.endswith(".w") else 0.0)
    return weights, model


def _position_model(paragraph: torch.Tensor, start: int) -> Model:
    """Predicts paragraph[p - start + 1] at position p from the position alone (tokens ignored): the final
    LayerNorm keeps a one-hot residual's largest entry where it was."""
    weights, model = _blank_model()
    with torch.no_grad():
        weights["pos_embed.W_pos"].copy_(torch.eye(N_CTX, 64))
        for i in range(len(paragraph) - 1):
            weights["unembed.W_U"][start + i, paragraph[i + 1]] = 10.0
    return model


def _bigram_model(paragraphs: torch.Tensor) -> Model:
    """Predicts the token that follows the current one in its paragraph, wherever it stands."""
    weights, model = _blank_model()
    with torch.no_grad():
        weights["embed.W_E"].copy_(torch.eye(VOCAB, 64))
        for row in paragraphs:
            for a, b in zip(row[:-1].tolist(), row[1:].tolist()):
                weights["unembed.W_U"][a, b] = 10.0
    return model


def _paragraphs() -> Paragraphs:
    tokens = torch.arange(1, 41).reshape(2, PREFIX + CONT)  # all distinct, so a bigram table recites both
    return Paragraphs(tokens=tokens, prefix_len=PREFIX, ids=("a", "b"), counts=(8, 2))


def test_content_keyed_model_recites_after_any_filler():
    paras = _paragraphs()
    result = position_robustness(_bigram_model(paras.tokens), paras, filler=FILLER, ks=(5, 17, 44))
    assert result.ks == (0, 5, 17, 44)
    assert result.em.tolist() == [[CONT, CONT]] * 4
    assert [r["share_kept"] for r in result.table()] == [1.0] * 4
    assert {(r["count"], r["k"]): r["n_em_full"] for r in result.by_count()}[(2, 44)] == 1


def test_position_keyed_model_loses_it_when_shifted():
    paras = _paragraphs().select([0])
    result = position_robustness(_position_model(paras.tokens[0], start=0), paras, filler=FILLER, ks=(1, 17))
    assert result.em[:, 0].tolist() == [CONT, 0, 0]
    assert result.share_kept(0) == 1.0 and result.share_kept(1) == 0.0


def test_k_filler_tokens_come_first_exactly():
    """A model keyed to a paragraph starting at position 6 recites it after exactly 6 filler tokens."""
    paras = _paragraphs().select([1])
    result = position_robustness(_position_model(paras.tokens[0], start=6), paras, filler=FILLER, ks=(5, 6, 7))
    assert dict(zip(result.ks, result.em[:, 0].tolist())) == {0: 0, 5: 0, 6: CONT, 7: 0}
    assert result.table()[0]["n_mem_at_0"] == 0 and result.share_kept(6) != result.share_kept(6)  # nan: none at k = 0


def test_filler_spans_are_seeded_and_drawn_from_the_filler():
    filler = torch.arange(100, 160).reshape(6, 10)
    a, b, c = (filler_spans(filler, 5, 12, seed) for seed in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.flatten().tolist()) <= set(filler.flatten().tolist())
    with pytest.raises(UserError, match="filler holds 60 tokens"):
        filler_spans(filler, 5, 61, 0)


def test_bad_requests_are_user_errors():
    paras = _paragraphs()
    model = _bigram_model(paras.tokens)
    with pytest.raises(UserError, match="exceed the model's context"):
        position_robustness(model, paras, filler=FILLER, ks=(45,))
    with pytest.raises(UserError, match="vocabulary"):
        position_robustness(model, paras, filler=torch.tensor([[VOCAB + 1] * 20]), ks=(3,))


def test_to_json_round_trips():
    paras = _paragraphs()
    result = position_robustness(_bigram_model(paras.tokens), paras, filler=FILLER, ks=(3,))
    data = json.loads(json.dumps(result.to_json()))
    assert data["ks"] == [0, 3] and data["em"]["b"] == [CONT, CONT]
    assert data["table"][1]["n_mem_at_0_kept"] == 2
