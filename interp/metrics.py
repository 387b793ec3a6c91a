"""Memorization metrics: exact match (EM), continuation NLL, per-token accuracy (the MEM / NMEM split on them: interp.memorization).

EM counts greedily decoded continuation tokens equal to the true ones, up to the first
mismatch. Greedy decoding reproduces the continuation up to position k exactly when the
teacher-forced argmax equals the true token at every earlier position, so EM comes from ONE
teacher-forced forward pass over the whole paragraph, batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from interp.data import Paragraphs

NMEM_MAX_EM = 10


@dataclass(frozen=True)
class ParagraphScores:
    """Per-paragraph memorization scores from one teacher-forced pass."""

    ids: tuple[str, ...]
    em: Int[Tensor, "n"]
    nll: Float[Tensor, "n"]
    token_accuracy: Float[Tensor, "n"]
    hits: Bool[Tensor, "n cont"]  # argmax == true token, per continuation position
    continuation_len: int

    def to_json(self) -> list[dict]:
        return [
            {"id": pid, "em": int(e), "nll": float(n), "token_accuracy": float(a)}
            for pid, e, n, a in zip(self.ids, self.em.tolist(), self.nll.tolist(), self.token_accuracy.tolist())
        ]


def em_from_hits(hits: Bool[Tensor, "n cont"]) -> Int[Tensor, "n"]:
    """Length of the leading run of True in each row."""
    return hits.long().cumprod(dim=1).sum(dim=1)


def continuation_log_probs(
    logits: Float[Tensor, "n seq vocab"], tokens: Int[Tensor, "n seq"], prefix_len: int
) -> Float[Tensor, "n cont"]:
    """log p(true continuation token) at each continuation position."""
    pred = logits[:, prefix_len - 1 : -1].log_softmax(dim=-1)
    return pred.gather(-1, tokens[:, prefix_len:, None]).squeeze(-1)


@torch.no_grad()
def teacher_forced_hits(
    model: HookedTransformer, tokens: Int[Tensor, "n seq"], prefix_len: int, batch_size: int = 64
) -> tuple[Bool[Tensor, "n cont"], Float[Tensor, "n"]]:
    """Argmax hits per continuation position and mean continuation NLL, in batched forwards."""
    all_hits, nlls = [], []
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start : start + batch_size].to(model.cfg.device)
        logits = model(chunk, return_type="logits").float()
        all_hits.append((logits[:, prefix_len - 1 : -1].argmax(dim=-1) == chunk[:, prefix_len:]).cpu())
        nlls.append((-continuation_log_probs(logits, chunk, prefix_len)).mean(dim=1).cpu())
    return torch.cat(all_hits), torch.cat(nlls)


def score_paragraphs(model: HookedTransformer, paragraphs: Paragraphs, batch_size: int = 64) -> ParagraphScores:
    """EM, continuation NLL and per-token accuracy for every paragraph, in batched forwards."""
    hits, nll_ = teacher_forced_hits(model, paragraphs.tokens, paragraphs.prefix_len, batch_size)
    return ParagraphScores(
        ids=paragraphs.ids,
        em=em_from_hits(hits),
        nll=nll_,
        token_accuracy=hits.float().mean(dim=1),
        hits=hits,
        continuation_len=paragraphs.continuation_len,
    )


def exact_match(model: HookedTransformer, paragraphs: Paragraphs, batch_size: int = 64) -> Int[Tensor, "n"]:
    """EM of each paragraph's continuation (0 .. continuation length)."""
    return score_paragraphs(model, paragraphs, batch_size).em


def nll(model: HookedTransformer, paragraphs: Paragraphs, batch_size: int = 64) -> Float[Tensor, "n"]:
    """Mean negative log-likelihood over each paragraph's continuation tokens only."""
    return score_paragraphs(model, paragraphs, batch_size).nll


@torch.no_grad()
def greedy_continuations(
    model: HookedTransformer, prefixes: Int[Tensor, "n prefix"], length: int, batch_size: int = 256
) -> Int[Tensor, "n length"]:
    """Greedy continuations of many prefixes at once: one KV-cached forward per new token per batch.

    Every token is attended to, including tokens equal to the tokenizer's pad id (EOS on GPT-Neo /
    Pythia): an explicit all-ones attention mask is passed, where `model.generate` would mask them."""
    outs = []
    for start in range(0, prefixes.shape[0], batch_size):
        chunk = prefixes[start : start + batch_size].to(model.cfg.device)
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, chunk.shape[0])
        step = model(chunk, past_kv_cache=cache, attention_mask=torch.ones_like(chunk))[:, -1].argmax(-1)
        new = [step]
        for _ in range(length - 1):
            step = model(step[:, None], past_kv_cache=cache, attention_mask=torch.ones_like(step[:, None]))[:, -1].argmax(-1)
            new.append(step)
        outs.append(torch.stack(new, 1).cpu())
    return torch.cat(outs)


def greedy_exact_match(model: HookedTransformer, paragraphs: Paragraphs, batch_size: int = 64) -> Int[Tensor, "n"]:
    """EM from real greedy decoding (one token at a time); equals `exact_match` and is many times slower."""
    decoded = greedy_continuations(model, paragraphs.prefixes, paragraphs.continuation_len, batch_size)
    return em_from_hits(decoded == paragraphs.continuations.cpu())
