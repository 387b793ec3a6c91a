"""The forward-bound paths against the machine's matmul peak, interleaved in one run.

    python benchmarks/bench_forward.py [--rows 64] [--models testbed neo125m-shaped] [--repeats 3]

On `rows` sequences of 100 tokens (prefix 50), for the testbed and a GPT-Neo-125M-shaped model
with random weights, each at its achieved GFLOP/s and fraction of a float32 matmul peak measured
in the same run (FLOPs counted as in benchmarks/harness.py):
- full-logits forward: `model(tokens)` and a log-softmax over every position (the path EM
  scoring took before `metrics.continuation_logits`);
- score_paragraphs: EM and NLL (also the scan's exact mode, which scores windows with it);
- scan screen forward: metrics.continuation_hits, the argmax hits the scan's screen reads;
- blocks only: the TransformerLens blocks without the unembedding (stop_at_layer);
- linear maps only: the blocks' weight matmuls alone (F.linear on activations of the same
  shapes), the most a TransformerLens forward could reach here. What separates "blocks only"
  from it is TransformerLens' elementwise work (LayerNorm, GELU, attention masking, softmax,
  copies) that the FLOP count leaves out.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from harness import (
    Method,
    Session,
    add_arguments,
    add_model_arguments,
    benchmark_models,
    block_flops,
    forward_flops,
)
from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.metrics import continuation_hits, continuation_log_probs, score_paragraphs

SEQ, PREFIX = 100, 50


def linear_maps_only(model: HookedTransformer, rows: int) -> Callable[[], None]:
    """The weight matmuls of every block on [rows * SEQ, d] activations, nothing else."""
    cfg = model.cfg
    x = torch.randn(rows * SEQ, cfg.d_model)
    h = torch.randn(rows * SEQ, cfg.d_mlp)
    z = torch.randn(rows * SEQ, cfg.n_heads * cfg.d_head)
    weights = [
        (
            b.attn.W_Q.permute(0, 2, 1).reshape(-1, cfg.d_model).contiguous(),  # [heads * d_head, d_model]
            b.attn.W_K.permute(0, 2, 1).reshape(-1, cfg.d_model).contiguous(),
            b.attn.W_V.permute(0, 2, 1).reshape(-1, cfg.d_model).contiguous(),
            b.attn.W_O.flatten(0, 1).T.contiguous(),  # [d_model, heads * d_head]
            b.mlp.W_in.T.contiguous(),
            b.mlp.W_out.T.contiguous(),
        )
        for b in model.blocks
    ]

    def run() -> None:
        for wq, wk, wv, wo, w_in, w_out in weights:
            F.linear(x, wq), F.linear(x, wk), F.linear(x, wv), F.linear(z, wo)
            F.linear(x, w_in), F.linear(h, w_out)

    return run


def bench(session: Session, name: str, model: HookedTransformer, rows: int, warmup: bool) -> None:
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.d_vocab, (rows, SEQ), generator=g)
    paragraphs = Paragraphs(tokens, PREFIX, tuple(map(str, range(rows))))
    linear = (
        2.0 * rows * SEQ * cfg.n_layers * (4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * cfg.d_mlp)
    )
    n_tok = rows * SEQ

    def full():
        logits = model(tokens)
        return continuation_log_probs(logits, tokens, PREFIX), logits[:, PREFIX - 1 : -1].argmax(-1) == tokens[
            :, PREFIX:
        ]

    cont = SEQ - PREFIX
    methods = [
        Method("full-logits forward", full, flops=forward_flops(cfg, rows, SEQ), tokens=n_tok),
        Method(
            "score_paragraphs",
            lambda: score_paragraphs(model, paragraphs),
            flops=forward_flops(cfg, rows, SEQ, logit_positions=cont),
            tokens=n_tok,
        ),
        Method(
            "scan screen forward",
            lambda: continuation_hits(model, tokens, PREFIX),
            flops=forward_flops(cfg, rows, SEQ, logit_positions=cont),
            tokens=n_tok,
        ),
        Method(
            "blocks only",
            lambda: model(tokens, stop_at_layer=cfg.n_layers),
            flops=cfg.n_layers * block_flops(cfg, rows, SEQ),
            tokens=n_tok,
        ),
        Method("linear maps only", linear_maps_only(model, rows), flops=linear, tokens=n_tok),
    ]
    timings = session.time(methods, warmup=warmup)
    scores, (ref_logp, ref_hits) = timings["score_paragraphs"].result, timings["full-logits forward"].result
    agree = bool(torch.equal(scores.hits, ref_hits) and torch.equal(timings["scan screen forward"].result, ref_hits))
    case = f"{name}: {rows} rows of {PREFIX} + {cont} tokens"
    session.report(
        case,
        timings,
        baseline="full-logits forward",
        candidate="score_paragraphs",
        hits_equal=agree,
        max_nll_diff=float((scores.nll - (-ref_logp).mean(1)).abs().max()),
    )
    session.report(
        case,
        timings,
        baseline="full-logits forward",
        candidate="scan screen forward",
        show_methods=False,
        hits_equal=agree,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(ap)
    add_arguments(ap)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    session = Session("bench_forward", args)
    for label, model in benchmark_models(args.models):
        bench(session, label, model, args.rows, warmup=True)
    session.finish()


if __name__ == "__main__":
    main()
