"""What fusing a block's elementwise work would buy: TransformerLens blocks against the same blocks in fused ops.

    python benchmarks/bench_fusion.py [--rows 64] [--models testbed neo125m-shaped] [--repeats 3]

bench_forward shows the blocks' weight matmuls alone near the matmul peak and the blocks as
HookedTransformer runs them far below it: the rest is elementwise work (LayerNorm, attention
masking and softmax, GELU, copies) that FLOP counts do not see. Here the same blocks, with the same
weights, run as a fused implementation would run them: `F.layer_norm`, one Q/K/V matmul,
`F.scaled_dot_product_attention` (causal, GPT-Neo's local window where the layer has one, the model's
own score scale) and `F.gelu(approximate="tanh")` (GPT-Neo's gelu_new). Both run on the same
embedded input of `rows` sequences of 100 tokens, forward alone (no grad) and forward + backward
(every block weight requiring grad, as the report's unlearning and gradient steps run them).
The two are checked to compute the same function: the largest difference of the final residual
stream and of the MLP input weights' gradient, relative to their largest magnitude, is printed
and kept. The fused side runs no hooks, so its time is an upper bound on what a fused backend that
keeps hook points only where a caller asks for them could reach; its float results differ from
TransformerLens' in the last bits, which is why the report does not use it (a rate search or a
train-until-recited loop can end one step earlier or later).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from harness import Method, Session, add_arguments, add_model_arguments, benchmark_models, block_flops
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

SEQ = 100
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def fused_weights(model: HookedTransformer, requires_grad: bool) -> list[dict]:
    """Each block's weights laid out for `F.linear` (Q, K, V concatenated), detached copies."""
    cfg = model.cfg
    if cfg.act_fn not in GELU_TANH:
        raise SystemExit(f"bench_fusion knows the tanh GELU only, not act_fn={cfg.act_fn!r}")
    if cfg.normalization_type not in ("LN", "LNPre"):
        raise SystemExit(f"bench_fusion knows LayerNorm only, not {cfg.normalization_type!r}")
    blocks = []
    for b in model.blocks:
        a, m = b.attn, b.mlp
        weights = {
            "ln1_w": getattr(b.ln1, "w", None),
            "ln1_b": getattr(b.ln1, "b", None),
            "w_qkv": torch.cat([_head_rows(a.W_Q), _head_rows(a.W_K), _head_rows(a.W_V)]),
            "b_qkv": torch.cat([a.b_Q.flatten(), a.b_K.flatten(), a.b_V.flatten()]),
            "w_o": a.W_O.reshape(-1, cfg.d_model).T,
            "b_o": a.b_O,
            "ln2_w": getattr(b.ln2, "w", None),
            "ln2_b": getattr(b.ln2, "b", None),
            "w_in": m.W_in.T,
            "b_in": m.b_in,
            "w_out": m.W_out.T,
            "b_out": m.b_out,
        }
        weights = {
            k: None if v is None else v.detach().clone().contiguous().requires_grad_(requires_grad)
            for k, v in weights.items()
        }
        weights["local"] = a.attn_type == "local"
        weights["scale"] = 1.0 / float(a.attn_scale)
        blocks.append(weights)
    return blocks


def _head_rows(w: Float[Tensor, "head d_model d_head"]) -> Float[Tensor, "head_x_d_head d_model"]:
    return w.permute(0, 2, 1).reshape(-1, w.shape[1])


def fused_blocks(
    model: HookedTransformer, blocks: list[dict], x: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream after every block, computed with fused ops."""
    cfg = model.cfg
    batch, pos, d = x.shape
    i = torch.arange(pos)
    causal = i[:, None] >= i[None, :]
    local_mask = causal & (i[:, None] - i[None, :] < (cfg.window_size or pos))
    for w in blocks:
        h = F.layer_norm(x, (d,), w["ln1_w"], w["ln1_b"], cfg.eps)
        q, k, v = (
            F.linear(h, w["w_qkv"], w["b_qkv"]).view(batch, pos, 3, cfg.n_heads, cfg.d_head).permute(2, 0, 3, 1, 4)
        )
        z = F.scaled_dot_product_attention(
            q, k, v, attn_mask=local_mask if w["local"] else None, is_causal=not w["local"], scale=w["scale"]
        )
        x = x + F.linear(z.transpose(1, 2).reshape(batch, pos, -1), w["w_o"], w["b_o"])
        h = F.layer_norm(x, (d,), w["ln2_w"], w["ln2_b"], cfg.eps)
        x = x + F.linear(F.gelu(F.linear(h, w["w_in"], w["b_in"]), approximate="tanh"), w["w_out"], w["b_out"])
    return x


def tl_blocks(model: HookedTransformer, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
    for block in model.blocks:
        x = block(x)
    return x


def backward_of(run: Callable[[], Tensor], weights: list[Tensor], direction: Tensor) -> Callable[[], None]:
    """One forward + backward of <run(), direction> into `weights` (grads cleared first)."""

    def step() -> None:
        for w in weights:
            w.grad = None
        with torch.enable_grad():
            (run() * direction).sum().backward()

    return step


def bench(session: Session, name: str, model: HookedTransformer, rows: int) -> None:
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.d_vocab, (rows, SEQ), generator=g)
    with torch.no_grad():
        x = (model.embed(tokens) + model.pos_embed(tokens)).contiguous()
    direction = torch.randn(x.shape, generator=g)
    frozen, trained = fused_weights(model, requires_grad=False), fused_weights(model, requires_grad=True)
    tl_params = [p for p in model.blocks.parameters()]
    for p in tl_params:
        p.requires_grad_(True)
    fused_params = [v for w in trained for v in w.values() if isinstance(v, Tensor)]
    forward = cfg.n_layers * block_flops(cfg, rows, SEQ)
    n_tok = rows * SEQ

    def no_grad(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.no_grad():
                return fn()

        return run

    methods = [
        Method("TransformerLens blocks, forward", no_grad(lambda: tl_blocks(model, x)), flops=forward, tokens=n_tok),
        Method("fused blocks, forward", no_grad(lambda: fused_blocks(model, frozen, x)), flops=forward, tokens=n_tok),
        Method(
            "TransformerLens blocks, forward + backward",
            backward_of(lambda: tl_blocks(model, x), tl_params, direction),
            flops=3 * forward,
            tokens=n_tok,
        ),
        Method(
            "fused blocks, forward + backward",
            backward_of(lambda: fused_blocks(model, trained, x), fused_params, direction),
            flops=3 * forward,
            tokens=n_tok,
        ),
    ]
    timings = session.time(methods, warmup=True)
    out_tl, out_fused = timings["TransformerLens blocks, forward"].result, timings["fused blocks, forward"].result
    resid_diff = float((out_tl - out_fused).abs().max() / out_tl.abs().max())
    grad_tl = torch.stack([b.mlp.W_in.grad.T for b in model.blocks])
    grad_fused = torch.stack([w["w_in"].grad for w in trained])
    grad_diff = float((grad_tl - grad_fused).abs().max() / grad_tl.abs().max())
    for p in tl_params:
        p.grad = None
    case = f"{name}: {rows} rows of {SEQ} tokens, {cfg.n_layers} blocks"
    session.report(
        case,
        timings,
        baseline="TransformerLens blocks, forward",
        candidate="fused blocks, forward",
        relative_max_diff_resid=resid_diff,
    )
    session.report(
        case,
        timings,
        baseline="TransformerLens blocks, forward + backward",
        candidate="fused blocks, forward + backward",
        show_methods=False,
        relative_max_diff_w_in_grad=grad_diff,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(ap)
    add_arguments(ap)
    args = ap.parse_args()
    session = Session("bench_fusion", args)
    for label, model in benchmark_models(args.models):
        bench(session, label, model, args.rows)
    session.finish()


if __name__ == "__main__":
    main()
