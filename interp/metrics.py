"""Memorization metrics: exact match (EM), continuation NLL, per-token accuracy (the MEM / NMEM split on them: interp.memorization).

EM counts greedily decoded continuation tokens equal to the true ones, up to the first
mismatch. Greedy decoding reproduces the continuation up to position k exactly when the
teacher-forced argmax equals the true token at every earlier position, so EM comes from ONE
teacher-forced forward pass over the whole paragraph, batched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.utilities.activation_functions import apply_softcap

from interp.data import Paragraphs

NMEM_MAX_EM = 10
LOGITS_CHUNK_BYTES = 64 * 2**20  # logits held at once by `continuation_logits` (300 positions at a 50k vocabulary)


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
def continuation_logits(
    model: HookedTransformer,
    tokens: Int[Tensor, "n seq"],
    prefix_len: int,
    *,
    residual: Float[Tensor, "n seq d_model"] | None = None,
    start_at_layer: int = 0,
) -> Iterator[tuple[slice, Float[Tensor, "rows cont vocab"]]]:
    """The logits that predict the continuation (positions prefix_len-1 .. seq-2) only, in row chunks.

    The blocks run through TransformerLens, so hooks on them fire; the final LayerNorm and the
    unembedding then see only the continuation's positions. That skips the prefix positions'
    unembedding (for 50 + 50 tokens at GPT-Neo-125M's shape as much work as 2.7 of its 12 blocks)
    and never holds all [n, seq, vocab] logits: chunks of rows fill one reused buffer of at most
    LOGITS_CHUNK_BYTES, so each chunk is overwritten by the next and must be reduced first.
    `residual` (the residual stream entering block `start_at_layer`) starts there instead of at
    the embedding. Logits of half-precision models come in float32.
    """
    n_layers = model.cfg.n_layers
    if residual is None:
        final = model(tokens.to(model.cfg.device), stop_at_layer=n_layers)
    else:
        final = model(residual, start_at_layer=start_at_layer, stop_at_layer=n_layers)
    x = final[:, prefix_len - 1 : -1]
    if model.cfg.normalization_type is not None:
        x = model.ln_final(x)
    unembed = model.unembed
    x = unembed.hook_in(x)
    n, cont = x.shape[:2]
    vocab = unembed.W_U.shape[1]
    rows_per_chunk = max(1, LOGITS_CHUNK_BYTES // (cont * vocab * x.element_size()))
    buffer = torch.empty(min(n, rows_per_chunk) * cont, vocab, dtype=x.dtype, device=x.device)
    for start in range(0, n, rows_per_chunk):
        rows = slice(start, min(n, start + rows_per_chunk))
        flat = x[rows].reshape(-1, x.shape[-1])
        out = torch.addmm(unembed.b_U, flat, unembed.W_U, out=buffer[: flat.shape[0]])
        logits = unembed.hook_out(out.view(-1, cont, vocab))
        logits = apply_softcap(logits, model.cfg.output_logits_soft_cap)
        yield rows, (logits if logits.dtype in (torch.float32, torch.float64) else logits.float())


@torch.no_grad()
def continuation_scores(
    model: HookedTransformer,
    tokens: Int[Tensor, "n seq"],
    prefix_len: int,
    *,
    residual: Float[Tensor, "n seq d_model"] | None = None,
    start_at_layer: int = 0,
) -> tuple[Float[Tensor, "n cont"], Bool[Tensor, "n cont"]]:
    """log p(true continuation token) and whether the argmax is that token, at each continuation position.

    One forward (from `residual` at block `start_at_layer` if given), unembedding only the
    continuation positions (see `continuation_logits`); results stay on the model's device.
    """
    tokens = tokens.to(model.cfg.device)
    targets = tokens[:, prefix_len:]
    dtype = torch.promote_types(model.cfg.dtype, torch.float32)
    log_probs = torch.empty(targets.shape, dtype=dtype, device=tokens.device)
    hits = torch.empty(targets.shape, dtype=torch.bool, device=tokens.device)
    for rows, logits in continuation_logits(
        model, tokens, prefix_len, residual=residual, start_at_layer=start_at_layer
    ):
        target = targets[rows, :, None]
        log_probs[rows] = (logits.gather(-1, target) - logits.logsumexp(-1, keepdim=True)).squeeze(-1)
        hits[rows] = (logits.argmax(-1, keepdim=True) == target).squeeze(-1)
    return log_probs, hits


@torch.no_grad()
def continuation_hits(
    model: HookedTransformer, tokens: Int[Tensor, "n seq"], prefix_len: int
) -> Bool[Tensor, "n cont"]:
    """Whether the argmax at each continuation position is the true token (no log-probs: the scan's screen)."""
    tokens = tokens.to(model.cfg.device)
    targets = tokens[:, prefix_len:]
    hits = torch.empty(targets.shape, dtype=torch.bool, device=tokens.device)
    for rows, logits in continuation_logits(model, tokens, prefix_len):
        hits[rows] = logits.argmax(-1) == targets[rows]
    return hits


@torch.no_grad()
def teacher_forced_hits(
    model: HookedTransformer, tokens: Int[Tensor, "n seq"], prefix_len: int, batch_size: int = 64
) -> tuple[Bool[Tensor, "n cont"], Float[Tensor, "n"]]:
    """Argmax hits per continuation position and mean continuation NLL, in batched forwards."""
    all_hits, nlls = [], []
    for start in range(0, tokens.shape[0], batch_size):
        log_probs, hits = continuation_scores(model, tokens[start : start + batch_size], prefix_len)
        all_hits.append(hits.cpu())
        nlls.append((-log_probs).mean(dim=1).float().cpu())
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
            step = model(step[:, None], past_kv_cache=cache, attention_mask=torch.ones_like(step[:, None]))[
                :, -1
            ].argmax(-1)
            new.append(step)
        outs.append(torch.stack(new, 1).cpu())
    return torch.cat(outs)


def greedy_exact_match(model: HookedTransformer, paragraphs: Paragraphs, batch_size: int = 64) -> Int[Tensor, "n"]:
    """EM from real greedy decoding (one token at a time); equals `exact_match` and is many times slower."""
    decoded = greedy_continuations(model, paragraphs.prefixes, paragraphs.continuation_len, batch_size)
    return em_from_hits(decoded == paragraphs.continuations.cpu())
