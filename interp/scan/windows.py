"""The tensor work of a scan: the aligned screen, exact window scores, span merging, sample keys.

A window starting at s is memorized when the model's argmax, fed the window alone, equals each of
its continuation tokens s+P .. s+W-1 (P prefix, W window length). The screen runs the model over
chunks of L = W + d - 1 tokens starting every d tokens (d = the screen step) and judges the
window at s inside the chunk that starts at c = d * floor(s / d): the window lies wholly in it,
so every continuation token of the window is predicted after the window's whole prefix, preceded
by s - c < d tokens of the document. The screen's input for a window is therefore the exact
input with at most d - 1 real tokens in front, never a cut-off prefix; d = 1 is the exhaustive
scan. Windows whose screened continuation has at most `tolerance` misses are then scored exactly.
Cost: L / d forward tokens per corpus token (about 6 for W = 100, d = 20) instead of W.

An earlier screen stitched one hit stream from chunks every W - P tokens (2 forward tokens per
corpus token): a window starting mid-chunk had its later continuation tokens predicted from a
context that began inside the window, without its first prefix tokens. A model that recalls a
paragraph only given its start then looks like it does not recall it at all;
benchmarks/bench_scan.py design measures both screens against --exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.backend import Model
from interp.data import BATCH_SIZE, Paragraphs
from interp.metrics import continuation_hits, score_paragraphs


def screen_chunk_starts(length: int, window_len: int, step: int) -> list[int]:
    """Starts of the screening chunks of a document of `length` tokens: one per `step` window starts."""
    return list(range(0, max(length - window_len + 1, 0), step))


@dataclass(frozen=True)
class ScreenResult:
    """Per document, for each window start asked about: misses in its screened continuation and the
    leading run of hits (the screen's estimate of EM); and what the screen ran."""

    misses: tuple[Tensor, ...]  # per document, one integer per window asked about
    lead: tuple[Tensor, ...]
    chunks: int
    forward_tokens: int  # positions run through the model, padding included


@torch.no_grad()
def screen_windows(
    model: Model,
    streams: list[Tensor],
    starts: list[Tensor],
    *,
    prefix_len: int,
    window_len: int,
    step: int,
    batch_size: int = BATCH_SIZE,
) -> ScreenResult:
    """Screen the windows at `starts[i]` (sorted or not) of each token stream `streams[i]` (1-D
    integer tensors of any lengths; see the module docstring).

    All chunks of all streams go through the model together, `batch_size` chunks per forward,
    each batch right-padded to its longest chunk (causal attention keeps padding out).
    """
    chunk_len = window_len + step - 1
    jobs = [(i, c) for i, x in enumerate(streams) for c in screen_chunk_starts(len(x), window_len, step)]
    hits = [
        torch.zeros(len(screen_chunk_starts(len(x), window_len, step)), chunk_len, dtype=torch.bool) for x in streams
    ]
    forward_tokens = 0
    for b in range(0, len(jobs), batch_size):
        batch = jobs[b : b + batch_size]
        segs = [streams[i][c : c + chunk_len] for i, c in batch]
        width = max(len(s) for s in segs)
        rows = torch.zeros(len(batch), width, dtype=torch.long)
        for j, seg in enumerate(segs):
            rows[j, : len(seg)] = seg
        ok = _argmax_hits(model, rows.to(model.cfg.device), prefix_len).cpu()
        forward_tokens += rows.numel()
        for j, ((i, c), seg) in enumerate(zip(batch, segs)):
            hits[i][c // step, prefix_len : len(seg)] = ok[j, : len(seg) - prefix_len]
    misses, lead = (
        zip(*(_window_misses(h, s, prefix_len, window_len, step) for h, s in zip(hits, starts)))
        if streams
        else ((), ())
    )
    return ScreenResult(tuple(misses), tuple(lead), len(jobs), forward_tokens)


def _argmax_hits(model: Model, rows: Int[Tensor, "n chunk"], prefix_len: int) -> Bool[Tensor, "n pred"]:
    """Whether the argmax at each position from prefix_len on equals the token there."""
    return continuation_hits(model, rows, prefix_len)


def _window_misses(
    hits: Bool[Tensor, "chunks chunk"], starts: Int[Tensor, "n"], prefix_len: int, window_len: int, step: int
) -> tuple[Int[Tensor, "n"], Int[Tensor, "n"]]:
    """Misses and leading hit run of each window's continuation, read in the chunk that holds it."""
    n_chunks, width = hits.shape
    if not len(starts):
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    chunk, offset = starts // step, starts % step
    cum = torch.cat([torch.zeros(n_chunks, 1, dtype=torch.long), (~hits).long().cumsum(1)], dim=1)
    first, last = offset + prefix_len, offset + window_len
    misses = cum[chunk, last] - cum[chunk, first]
    miss_at = torch.where(hits, width, torch.arange(width).expand(n_chunks, width))
    next_miss = miss_at.flip(1).cummin(1).values.flip(1)  # first miss at or after each position
    lead = torch.minimum(next_miss[chunk, first], last) - first
    return misses, lead


def window_tokens(stream: Int[Tensor, "t"], starts: Int[Tensor, "n"], window_len: int) -> Int[Tensor, "n w"]:
    return stream[starts[:, None] + torch.arange(window_len)]


def score_windows(
    model: Model, windows: Int[Tensor, "n w"], prefix_len: int, batch_size: int = BATCH_SIZE
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
