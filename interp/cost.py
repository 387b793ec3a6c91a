"""What a computation costs: FLOPs from a model's shapes, counted as it runs, against the machine's matmul peak.

`count_work()` is a context manager that counts, for every TransformerLens block and unembedding that runs
inside it (in any model, copies included), the token-positions it processed and the FLOPs of its matrix
multiplications (2 per multiply-add). A block run while autograd records it counts its backward too: twice
its forward FLOPs where both its input and its weights need gradients (the usual estimate), once where only one
of them does (a frozen block under a trained one still passes gradients to its input; a trained block on a
frozen stem computes no input gradient). `matmul_gflops()` times
a float32 square matmul on torch's current threads: the machine's practical limit, timed in the same run,
so a step's GFLOP/s can be read as a fraction of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from interp.backend import block_config, is_block, is_unembed

PEAK_N = 2048


def block_flops(cfg, rows: int, seq: int, queries: int | None = None) -> float:
    """FLOPs of one TransformerLens block on `rows` sequences of `seq` tokens (`queries` new ones, default all)."""
    q = seq if queries is None else queries
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    kv_heads = cfg.n_key_value_heads or h
    linear = 2 * rows * q * (d * h * dh + 2 * d * kv_heads * dh + h * dh * d)
    if not cfg.attn_only:
        linear += 2 * rows * q * d * cfg.d_mlp * (3 if cfg.gated_mlp else 2)
    attention = 2 * 2 * rows * h * q * seq * dh  # scores and pattern @ v, dense
    return float(linear + attention)


def unembed_flops(cfg, positions: int) -> float:
    """FLOPs of the unembedding at `positions` token positions."""
    return _unembed_flops(cfg.d_model * cfg.d_vocab_out, positions)


def _unembed_flops(weights: int, positions: int) -> float:
    """FLOPs of an unembedding of `weights` entries (d_model x vocab) at `positions` token positions."""
    return 2.0 * positions * weights


def forward_flops(cfg, rows: int, seq: int, *, start_layer: int = 0, logit_positions: int | None = None) -> float:
    """One forward of `rows` sequences from block `start_layer`, logits at `logit_positions` per row (default all)."""
    positions = seq if logit_positions is None else logit_positions
    return (cfg.n_layers - start_layer) * block_flops(cfg, rows, seq) + unembed_flops(cfg, rows * positions)


def greedy_flops(cfg, rows: int, prefix_len: int, new_tokens: int) -> float:
    """`model.generate` with a KV cache: the prefix in one forward, then one token at a time."""
    total = forward_flops(cfg, rows, prefix_len)
    for step in range(1, new_tokens):
        total += cfg.n_layers * block_flops(cfg, rows, prefix_len + step, queries=1) + unembed_flops(cfg, rows)
    return total


def matmul_seconds(n: int = PEAK_N, reps: int = 3, _cache: dict = {}) -> float:  # noqa: B006 (operands built once)
    """Best-of-`reps` seconds of one float32 [n x n] @ [n x n] on torch's current threads."""
    if n not in _cache:
        g = torch.Generator().manual_seed(0)
        _cache[n] = (torch.randn(n, n, generator=g), torch.randn(n, n, generator=g))
        _cache[n][0] @ _cache[n][1]  # warm-up
    a, b = _cache[n]
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(n: int = PEAK_N, reps: int = 3) -> float:
    """The float32 matmul rate of this machine (GFLOP/s), best of `reps`."""
    return 2 * n**3 / matmul_seconds(n, reps) / 1e9


@dataclass
class Work:
    """Token-positions and FLOPs counted by `count_work` (block positions are summed over layers)."""

    forward_positions: int = 0  # block-positions run forward (one block on one token = 1)
    backward_positions: int = 0  # block-positions whose backward was recorded
    logit_positions: int = 0  # positions unembedded
    forward_flops: float = 0.0
    backward_flops: float = 0.0

    @property
    def flops(self) -> float:
        return self.forward_flops + self.backward_flops

    def to_json(self, seconds: float | None = None, peak_gflops: float | None = None) -> dict:
        out = {
            "forward_block_positions": self.forward_positions,
            "backward_block_positions": self.backward_positions,
            "logit_positions": self.logit_positions,
            "gflop_forward": round(self.forward_flops / 1e9, 3),
            "gflop_backward": round(self.backward_flops / 1e9, 3),
        }
        if peak_gflops:
            out["seconds_at_peak"] = round(self.flops / 1e9 / peak_gflops, 2)  # this work at 100% of the peak
        if seconds:
            out["gflops"] = round(self.flops / 1e9 / seconds, 2)
            if peak_gflops:
                out["fraction_of_peak"] = round(self.flops / 1e9 / seconds / peak_gflops, 4)
        return out


def _backward_passes(module: nn.Module, x: torch.Tensor) -> int:
    """How many forward-sized passes a recorded backward of `module` costs: input gradients, weight gradients."""
    if not torch.is_grad_enabled():
        return 0
    return int(x.requires_grad) + int(any(p.requires_grad for p in module.parameters()))


@contextmanager
def count_work() -> Iterator[Work]:
    """Count the work of every TransformerLens block and unembedding run inside the block (any model).

    A global forward pre-hook, removed on exit even when the body raises. Attention FLOPs use the
    query length as the key length, so a KV-cached decoding step's attention is undercounted (its
    linear maps, which dominate, are exact)."""
    work = Work()

    def hook(module: nn.Module, args: tuple) -> None:
        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 3:
            return
        x = args[0]
        rows, seq = x.shape[0], x.shape[1]
        if is_block(module):
            flops = block_flops(block_config(module), rows, seq)
            work.forward_positions += rows * seq
            work.forward_flops += flops
            passes = _backward_passes(module, x)
            if passes:
                work.backward_positions += rows * seq
                work.backward_flops += passes * flops
        elif is_unembed(module):  # sized by its weight: the bridge's unembedding keeps no config
            flops = _unembed_flops(module.W_U.numel(), rows * seq)
            work.logit_positions += rows * seq
            work.forward_flops += flops
            work.backward_flops += _backward_passes(module, x) * flops

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield work
    finally:
        handle.remove()
