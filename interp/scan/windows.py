"""The tensor work of a scan: screening chunks, exact window scores, span merging, sample keys.

Screening. A window starting at s is memorized when the model's argmax, fed the window alone,
equals each of its continuation tokens s+P .. s+W-1 (P prefix, W window length). One forward
over a chunk of L tokens starting at c gives the argmax hit at every position t in
[c+P, c+L), each with at least P tokens of context. Chunks start every L-P tokens, so every
position t >= P of a document is predicted in exactly one chunk, and the stitched hit stream
covers every window start. A run of W-P hits marks a candidate, which is then scored exactly
with its own P-token prefix. Cost: L / (L-P) forward tokens per corpus token (2 for the default
L = W = 100, P = 50) instead of W per token for an exhaustive stride-1 scan. The screen differs
from the exact score only in context: a hit in the screen saw between P and L-1 earlier tokens
of the chunk, in the exact window between P and W-1 tokens starting at s. When s is a chunk
start, the two inputs are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.metrics import continuation_hits, score_paragraphs


def chunk_starts(length: int, prefix_len: int, chunk_len: int) -> list[int]:
    """Starts of the screening chunks of a document of `length` tokens (see module docstring)."""
    return list(range(0, max(length - prefix_len, 0), chunk_len - prefix_len))


@torch.no_grad()
def screen_hits(
    model: HookedTransformer, streams: list[Tensor], prefix_len: int, chunk_len: int, batch_size: int = 64
) -> list[Tensor]:
    """For each token stream, whether the argmax predicted each token (positions < prefix_len: False).

    All chunks of all streams go through the model together, `batch_size` chunks per forward.
    """
    device = model.cfg.device
    jobs = [(i, c) for i, x in enumerate(streams) for c in chunk_starts(len(x), prefix_len, chunk_len)]
    hits = [torch.zeros(len(x), dtype=torch.bool) for x in streams]
    for b in range(0, len(jobs), batch_size):
        batch = jobs[b : b + batch_size]
        rows = torch.zeros(len(batch), chunk_len, dtype=torch.long)
        lengths = []
        for j, (i, c) in enumerate(batch):
            seg = streams[i][c : c + chunk_len]
            rows[j, : len(seg)] = seg  # right padding: causal attention keeps it out of earlier positions
            lengths.append(len(seg))
        ok = _argmax_hits(model, rows.to(device), prefix_len).cpu()
        for j, (i, c) in enumerate(batch):
            n = lengths[j] - prefix_len
            hits[i][c + prefix_len : c + prefix_len + n] = ok[j, :n]
    return hits


def _argmax_hits(model: HookedTransformer, rows: Int[Tensor, "n chunk"], prefix_len: int) -> Bool[Tensor, "n pred"]:
    return continuation_hits(model, rows, prefix_len)


def screened_windows(
    hits: Bool[Tensor, "t"], starts: Int[Tensor, "n"], prefix_len: int, window_len: int
) -> tuple[Int[Tensor, "n"], Int[Tensor, "n"]]:
    """For windows at `starts`: misses in the screened continuation, and its leading run of hits
    (the screen's estimate of EM)."""
    t = hits.shape[0]
    cum = torch.cat([torch.zeros(1, dtype=torch.long), (~hits).long().cumsum(0)])
    misses = cum[starts + window_len] - cum[starts + prefix_len]
    miss_at = torch.where(hits, t, torch.arange(t))
    next_miss = miss_at.flip(0).cummin(0).values.flip(0)  # first miss at or after each position
    lead = torch.minimum(next_miss[starts + prefix_len], starts + window_len) - (starts + prefix_len)
    return misses, lead


def window_tokens(stream: Int[Tensor, "t"], starts: Int[Tensor, "n"], window_len: int) -> Int[Tensor, "n w"]:
    return stream[starts[:, None] + torch.arange(window_len)]


def score_windows(
    model: HookedTransformer, windows: Int[Tensor, "n w"], prefix_len: int, batch_size: int = 64
) -> tuple[Int[Tensor, "n"], Float[Tensor, "n"]]:
    """Exact EM and continuation NLL of each window, fed alone (one teacher-forced pass per batch)."""
    if windows.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    ids = tuple(str(i) for i in range(windows.shape[0]))
    scores = score_paragraphs(model, Paragraphs(windows, prefix_len, ids), batch_size=batch_size)
    return scores.em, scores.nll


@dataclass(frozen=True)
class Span:
    """Overlapping (or touching) memorized windows of one document, reported once.

    `best` is the start of the window with the lowest continuation NLL, the span's representative;
    `runs` lists [first, last] starts of consecutive memorized windows at the scan's stride.
    """

    start: int
    end: int
    best: int
    best_nll: float
    n_windows: int
    runs: tuple[tuple[int, int], ...]


def merge_spans(starts: list[int], nlls: list[float], window_len: int, stride: int) -> list[Span]:
    """Group sorted memorized window starts into spans; windows that overlap or touch join a span."""
    order = sorted(range(len(starts)), key=starts.__getitem__)
    spans: list[Span] = []
    group: list[int] = []

    def close() -> None:
        ss = [starts[i] for i in group]
        best = min(group, key=lambda i: (nlls[i], starts[i]))
        runs: list[list[int]] = []
        for s in ss:
            if runs and s - runs[-1][1] == stride:
                runs[-1][1] = s
            else:
                runs.append([s, s])
        spans.append(Span(ss[0], ss[-1] + window_len, starts[best], nlls[best], len(ss), tuple(map(tuple, runs))))

    for i in order:
        if group and starts[i] > starts[group[-1]] + window_len:
            close()
            group = []
        group.append(i)
    if group:
        close()
    return spans


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def sample_keys(doc_key: int, offsets: Int[Tensor, "n"], seed: int) -> np.ndarray:
    """A pseudo-random 63-bit key per (document, offset, seed), identical on every machine.

    Controls are the windows with the smallest keys (a bottom-k sample): the same whether the
    corpus is scanned in one run or in shards that are merged afterwards.
    """
    with np.errstate(over="ignore"):
        x = np.uint64(doc_key) ^ (offsets.numpy().astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        x = x + np.uint64(seed) * np.uint64(0xBF58476D1CE4E5B9)
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):  # splitmix64 finaliser
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
        x = x ^ (x >> np.uint64(31))
    return (x & _MASK64) >> np.uint64(1)
