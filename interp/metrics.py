"""Memorization metrics: exact match (EM), continuation NLL, per-token accuracy (the MEM / NMEM split on them: interp.memorization).

EM counts greedily decoded continuation tokens equal to the true ones, up to the first
mismatch. Greedy decoding reproduces the continuation up to position k exactly when the
teacher-forced argmax equals the true token at every earlier position, so EM comes from ONE
teacher-forced forward pass over the whole paragraph, batched.

The same pass gives the extraction probability ((n, p)-discoverable extraction, Hayes et al.
2024): p, the probability that sampling (temperature 1, optionally from the top k tokens only)
reproduces the whole continuation, is the product of its tokens' probabilities; at least one of
n samples does with probability 1 - (1 - p)^n. Greedy EM misses text that sampling extracts.

Models: a HookedTransformer, or any `LogitModel` (an object with `logits(tokens)` and a `cfg`,
e.g. the decoding-time unlearning ensemble of interp.unlearning.proxy): the one seam through
which EM, NLL, extraction probability and greedy decoding accept a model that is not one network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.backend import Model, ModelConfig, final_norm, greedy_decode, run_from, run_to, softcap, unembed_parts
from interp.constants import NMEM_MAX_EM
from interp.data import BATCH_SIZE, Paragraphs
from interp.io import float_from_json, tensor_from_json  # noqa: F401 (their former home)

LOGITS_CHUNK_BYTES = 64 * 2**20  # logits held at once by `continuation_logits` (300 positions at a 50k vocabulary)
EXTRACTION_NS = (1, 100, 10_000)  # numbers of samples the extraction probability is reported for


@runtime_checkable
class LogitModel(Protocol):
    """A model the metrics can score that is not a single HookedTransformer: next-token logits at
    every position of a batch, and a TransformerLens-style `cfg` (its `device` and `dtype` are read)."""

    cfg: ModelConfig

    def logits(self, tokens: Int[Tensor, "n seq"]) -> Float[Tensor, "n seq vocab"]: ...


Scorable = Model | LogitModel


def log10_at_least_one(log10_p: Float[Tensor, "n"], n: int) -> Float[Tensor, "n"]:
    """log10 of 1 - (1 - p)^n, the chance that at least one of n independent samples reproduces a
    continuation of probability p, in float64: -expm1(n * log1p(-p)), which keeps its precision
    for tiny p; where n p < 1e-12 (or p underflows) it is n p, to a relative error below 1e-12."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    lp = log10_p.double()
    exact = torch.log10(-torch.expm1(n * torch.log1p(-torch.pow(10.0, lp))))
    tiny = lp + math.log10(n)
    return torch.where(tiny < -12, tiny, exact)


@dataclass(frozen=True)
class ParagraphScores:
    """Per-paragraph memorization scores from one teacher-forced pass.

    `log10_p` is log10 of the probability that sampling at temperature 1 (from the top `top_k`
    tokens, renormalised, when `top_k` is set) reproduces the whole continuation; -inf when a
    continuation token falls outside the top k (written as null in JSON)."""

    ids: tuple[str, ...]
    em: Int[Tensor, "n"]
    nll: Float[Tensor, "n"]
    token_accuracy: Float[Tensor, "n"]
    hits: Bool[Tensor, "n cont"]  # argmax == true token, per continuation position
    continuation_len: int
    log10_p: Float[Tensor, "n"]  # float64
    top_k: int | None = None

    def log10_extraction(self, n: int) -> Float[Tensor, "n"]:
        """log10 of the probability that at least one of n samples reproduces the continuation."""
        return log10_at_least_one(self.log10_p, n)

    def extraction_probability(self, n: int) -> Float[Tensor, "n"]:
        """The probability that at least one of n samples reproduces the continuation (float64)."""
        return torch.pow(10.0, self.log10_extraction(n))

    def to_json(self) -> list[dict]:
        p_n = {str(n): self.extraction_probability(n).tolist() for n in EXTRACTION_NS}
        return [
            {
                "id": pid,
                "em": int(e),
                "nll": float(n),
                "token_accuracy": float(a),
                "log10_p": lp if math.isfinite(lp) else None,
                "p_extract": {k: v[i] for k, v in p_n.items()},
            }
            for i, (pid, e, n, a, lp) in enumerate(
                zip(self.ids, self.em.tolist(), self.nll.tolist(), self.token_accuracy.tolist(), self.log10_p.tolist())
            )
        ]


LOG10_P_BINS = ((-math.inf, -math.inf), (-math.inf, -30.0), (-30.0, -10.0), (-10.0, -3.0), (-3.0, -1.0), (-1.0, 0.0))


def log10_p_bin_label(lo: float, hi: float) -> str:
    if lo == hi == -math.inf:
        return "-inf (outside top-k)"
    return f"< {hi:g}" if lo == -math.inf else f"[{lo:g}, {hi:g})" if hi < 0 else f">= {lo:g}"


def em_bins(continuation_len: int, nmem_max: int = NMEM_MAX_EM) -> list[tuple[str, int, int]]:
    """The paper's EM bins, (label, lowest EM, highest EM): NMEM, two intermediate bins, MEM."""
    mid = max(nmem_max + 1, continuation_len * 3 // 5)
    return [
        (f"0-{nmem_max}", 0, nmem_max),
        (f"{nmem_max + 1}-{mid - 1}", nmem_max + 1, mid - 1),
        (f"{mid}-{continuation_len - 1}", mid, continuation_len - 1),
        (f"{continuation_len} (MEM)", continuation_len, continuation_len),
    ]


def count_groups(counts: Sequence[int] | None) -> list[tuple[int, Bool[Tensor, "n"]]]:
    """Each training repeat count, highest first, with which paragraphs were repeated that often (none where the
    counts are unknown): the rows of every per-count table."""
    if counts is None:
        return []
    each = torch.tensor(counts)
    return [(c, each == c) for c in sorted(set(counts), reverse=True)]


def extraction_by_em_bin(scores: ParagraphScores, nmem_max: int = NMEM_MAX_EM) -> list[dict]:
    """Per EM bin: paragraphs, median log10 p, the share that at least one of 100 samples would
    extract with probability >= 1/2, and counts of log10 p in `LOG10_P_BINS` (the histogram)."""
    rows = []
    p100 = scores.extraction_probability(100)
    for label, lo, hi in em_bins(scores.continuation_len, nmem_max):
        sel = (scores.em >= lo) & (scores.em <= hi)
        lp = scores.log10_p[sel]
        hist = {}
        for a, b in LOG10_P_BINS:
            if a == b:  # p = 0: its own bin, in no other
                inside = lp == a
            else:
                inside = (lp > a if a == -math.inf else lp >= a) & (lp < b if b < 0 else lp <= b)
            hist[log10_p_bin_label(a, b)] = int(inside.sum())
        rows.append(
            {
                "em_bin": label,
                "n": int(sel.sum()),
                "median_log10_p": float(lp.median()) if len(lp) else float("nan"),
                "share_p100_ge_half": float((p100[sel] >= 0.5).double().mean()) if len(lp) else float("nan"),
                "log10_p_histogram": hist,
            }
        )
    return rows


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
    model: Scorable,
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
    the embedding. Logits of half-precision models come in float32. A `LogitModel` gives its
    `logits(tokens)` in one chunk (it has no residual stream to start from).
    """
    if not isinstance(model, Model):
        if residual is not None:
            raise TypeError("a LogitModel has no residual stream to start from")
        logits = model.logits(tokens.to(model.cfg.device))[:, prefix_len - 1 : -1]
        yield slice(0, tokens.shape[0]), (logits if logits.dtype in (torch.float32, torch.float64) else logits.float())
        return
    n_layers = model.cfg.n_layers
    if residual is None:
        final = run_to(model, tokens.to(model.cfg.device), n_layers)
    else:
        final = run_from(model, residual, start_at_layer, n_layers)
    x = final_norm(model, final[:, prefix_len - 1 : -1])
    unembed, w_u, b_u = unembed_parts(model)
    x = unembed.hook_in(x)
    n, cont = x.shape[:2]
    vocab = w_u.shape[1]
    rows_per_chunk = max(1, LOGITS_CHUNK_BYTES // (cont * vocab * x.element_size()))
    buffer = torch.empty(min(n, rows_per_chunk) * cont, vocab, dtype=x.dtype, device=x.device)
    for start in range(0, n, rows_per_chunk):
        rows = slice(start, min(n, start + rows_per_chunk))
        flat = x[rows].reshape(-1, x.shape[-1])
        out = torch.addmm(b_u, flat, w_u, out=buffer[: flat.shape[0]])
        logits = unembed.hook_out(out.view(-1, cont, vocab))
        logits = softcap(logits, model.cfg)
        yield rows, (logits if logits.dtype in (torch.float32, torch.float64) else logits.float())


@torch.no_grad()
def continuation_scores(
    model: Scorable,
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
    log_probs, hits, _ = _scores(model, tokens, prefix_len, None, residual=residual, start_at_layer=start_at_layer)
    return log_probs, hits


def _scores(
    model: Scorable,
    tokens: Int[Tensor, "n seq"],
    prefix_len: int,
    top_k: int | None,
    *,
    residual: Float[Tensor, "n seq d_model"] | None = None,
    start_at_layer: int = 0,
) -> tuple[Float[Tensor, "n cont"], Bool[Tensor, "n cont"], Float[Tensor, "n cont"]]:
    """`continuation_scores` plus the log-probability of each true token under top-k sampling
    (the top k logits renormalised, ties with the k-th kept as in Hugging Face's top-k warper;
    -inf outside them); without `top_k` that is the full softmax's log-probability itself."""
    tokens = tokens.to(model.cfg.device)
    targets = tokens[:, prefix_len:]
    dtype = torch.promote_types(model.cfg.dtype, torch.float32)
    log_probs = torch.empty(targets.shape, dtype=dtype, device=tokens.device)
    hits = torch.empty(targets.shape, dtype=torch.bool, device=tokens.device)
    sampled = log_probs if top_k is None else torch.empty_like(log_probs)
    for rows, logits in continuation_logits(
        model, tokens, prefix_len, residual=residual, start_at_layer=start_at_layer
    ):
        target = targets[rows, :, None]
        true_logit = logits.gather(-1, target)
        log_probs[rows] = (true_logit - logits.logsumexp(-1, keepdim=True)).squeeze(-1)
        hits[rows] = (logits.argmax(-1, keepdim=True) == target).squeeze(-1)
        if top_k is not None:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            kept = logits.masked_fill(logits < kth, float("-inf")).logsumexp(-1, keepdim=True)
            sampled[rows] = (true_logit - kept).masked_fill(true_logit < kth, float("-inf")).squeeze(-1)
    return log_probs, hits, sampled


@torch.no_grad()
def continuation_hits(model: Model, tokens: Int[Tensor, "n seq"], prefix_len: int) -> Bool[Tensor, "n cont"]:
    """Whether the argmax at each continuation position is the true token (no log-probs: the scan's screen)."""
    tokens = tokens.to(model.cfg.device)
    targets = tokens[:, prefix_len:]
    hits = torch.empty(targets.shape, dtype=torch.bool, device=tokens.device)
    for rows, logits in continuation_logits(model, tokens, prefix_len):
        hits[rows] = logits.argmax(-1) == targets[rows]
    return hits


@torch.no_grad()
def teacher_forced_scores(
    model: Scorable,
    tokens: Int[Tensor, "n seq"],
    prefix_len: int,
    batch_size: int = BATCH_SIZE,
    top_k: int | None = None,
) -> tuple[Bool[Tensor, "n cont"], Float[Tensor, "n"], Float[Tensor, "n"]]:
    """Argmax hits per continuation position, mean continuation NLL and log10 of the probability
    that sampling (top-k when given) reproduces the whole continuation (float64), in batched forwards."""
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    all_hits, nlls, log10_p = [], [], []
    for start in range(0, tokens.shape[0], batch_size):
        log_probs, hits, sampled = _scores(model, tokens[start : start + batch_size], prefix_len, top_k)
        all_hits.append(hits.cpu())
        nlls.append((-log_probs).mean(dim=1).float().cpu())
        log10_p.append(sampled.double().sum(dim=1).cpu() / math.log(10))
    return torch.cat(all_hits), torch.cat(nlls), torch.cat(log10_p)


def teacher_forced_hits(
    model: Scorable, tokens: Int[Tensor, "n seq"], prefix_len: int, batch_size: int = BATCH_SIZE
) -> tuple[Bool[Tensor, "n cont"], Float[Tensor, "n"]]:
    """Argmax hits per continuation position and mean continuation NLL, in batched forwards."""
    hits, nll_, _ = teacher_forced_scores(model, tokens, prefix_len, batch_size)
    return hits, nll_


def score_paragraphs(
    model: Scorable, paragraphs: Paragraphs, batch_size: int = BATCH_SIZE, top_k: int | None = None
) -> ParagraphScores:
    """EM, continuation NLL, per-token accuracy and extraction probability (sampling at temperature
    1, from the top `top_k` tokens when given) for every paragraph, in batched forwards."""
    hits, nll_, log10_p = teacher_forced_scores(model, paragraphs.tokens, paragraphs.prefix_len, batch_size, top_k)
    return ParagraphScores(
        ids=paragraphs.ids,
        em=em_from_hits(hits),
        nll=nll_,
        token_accuracy=hits.float().mean(dim=1),
        hits=hits,
        continuation_len=paragraphs.continuation_len,
        log10_p=log10_p,
        top_k=top_k,
    )


def exact_match(model: Scorable, paragraphs: Paragraphs, batch_size: int = BATCH_SIZE) -> Int[Tensor, "n"]:
    """EM of each paragraph's continuation (0 .. continuation length)."""
    return score_paragraphs(model, paragraphs, batch_size).em


def nll(model: Scorable, paragraphs: Paragraphs, batch_size: int = BATCH_SIZE) -> Float[Tensor, "n"]:
    """Mean negative log-likelihood over each paragraph's continuation tokens only."""
    return score_paragraphs(model, paragraphs, batch_size).nll


@torch.no_grad()
def greedy_continuations(
    model: Scorable, prefixes: Int[Tensor, "n prefix"], length: int, batch_size: int = 256
) -> Int[Tensor, "n length"]:
    """Greedy continuations of many prefixes at once: one KV-cached forward per new token per batch
    (a `LogitModel`, which has no cache, runs a full forward over the tokens so far per new token).

    Every token is attended to, including tokens equal to the tokenizer's pad id (EOS on GPT-Neo /
    Pythia): an explicit all-ones attention mask is passed, where `model.generate` would mask them."""
    outs = []
    for start in range(0, prefixes.shape[0], batch_size):
        chunk = prefixes[start : start + batch_size].to(model.cfg.device)
        if not isinstance(model, Model):
            seq = chunk
            for _ in range(length):
                seq = torch.cat([seq, model.logits(seq)[:, -1].argmax(-1, keepdim=True)], 1)
            outs.append(seq[:, chunk.shape[1] :].cpu())
            continue
        outs.append(greedy_decode(model, chunk, length).cpu())
    return torch.cat(outs)


def greedy_exact_match(model: Scorable, paragraphs: Paragraphs, batch_size: int = BATCH_SIZE) -> Int[Tensor, "n"]:
    """EM from real greedy decoding (one token at a time); equals `exact_match` and is many times slower."""
    decoded = greedy_continuations(model, paragraphs.prefixes, paragraphs.continuation_len, batch_size)
    return em_from_hits(decoded == paragraphs.continuations.cpu())
