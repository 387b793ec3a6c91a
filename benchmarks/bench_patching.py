"""Batched activation patching vs transformer_lens.patching, interleaved in one run on the same inputs.

    python benchmarks/bench_patching.py                 # the testbed and a GPT-Neo-125M-shaped random model
    python benchmarks/bench_patching.py --models testbed --paragraphs 8 --repeats 5

Per model and patch kind: both methods' median wall time and spread, their ratio, the work each
does (forward layer-tokens and FLOPs, counted as in benchmarks/harness.py) and its ratio, the
achieved GFLOP/s against a matmul peak measured in the same run, and the largest difference
between the two results (they must agree to ~1e-4). transformer_lens.patching runs one full
forward of all paragraphs per cell; interp starts each patched run at the cell's layer and
unembeds only the continuation positions, so its work is smaller by the work ratio printed.
The 125M shape runs head_out only (per-position kinds there take ~10 minutes per repeat).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported (by torch): transformer_lens.patching's bar

import argparse  # noqa: E402

import torch  # noqa: E402
from harness import Method, Session, add_arguments, forward_flops, neo_125m_shaped  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402
from transformer_lens import patching as tl_patching  # noqa: E402

from interp.data import Paragraphs  # noqa: E402
from interp.locator.patching import activation_patching, all_cells  # noqa: E402
from interp.metrics import continuation_log_probs  # noqa: E402
from interp.perturbation import corrupt_prefixes  # noqa: E402

TL_FUNCTIONS = {
    "head_out": tl_patching.get_act_patch_attn_head_out_all_pos,
    "resid_pre": tl_patching.get_act_patch_resid_pre,
}


def paragraphs_for(name: str, model: HookedTransformer, n: int) -> Paragraphs:
    if name == "testbed":
        from interp.testbed import testbed_paragraphs

        return testbed_paragraphs(("planted",)).select(range(n))
    tokens = torch.randint(0, model.cfg.d_vocab, (n, 100), generator=torch.Generator().manual_seed(0))
    return Paragraphs(tokens, 50, tuple(map(str, range(n))))


def work(model: HookedTransformer, kind: str, n: int, seq: int, prefix_len: int) -> dict[str, tuple[int, float]]:
    """(forward layer-tokens, FLOPs) of each method: its reference forwards plus one run per cell."""
    cfg, layers = model.cfg, model.cfg.n_layers
    cells = all_cells(model, kind, seq)
    tl = ((len(cells) + 1) * n * seq * layers, (len(cells) + 1) * forward_flops(cfg, n, seq))
    start = cells[:, 0].tolist()
    ours_lt = 2 * n * seq * layers + sum(n * seq * (layers - s) for s in start)
    ours_fl = 2 * forward_flops(cfg, n, seq) + sum(
        forward_flops(cfg, n, seq, start_layer=s, logit_positions=seq - prefix_len) for s in start
    )
    return {"transformer_lens.patching": tl, "interp batched": (ours_lt, ours_fl)}


def bench(
    session: Session,
    name: str,
    model: HookedTransformer,
    paragraphs: Paragraphs,
    kinds: list[str],
    batch_size: int,
    warmup: bool,
) -> None:
    corrupted = corrupt_prefixes(paragraphs, 0.5, model.cfg.d_vocab)
    clean_tokens = paragraphs.tokens.to(model.cfg.device)
    p, n, seq = paragraphs.prefix_len, len(paragraphs), paragraphs.seq_len
    with torch.no_grad():
        clean_m = continuation_log_probs(model(clean_tokens), clean_tokens, p).mean().item()
        corrupt_m = continuation_log_probs(model(corrupted.to(model.cfg.device)), clean_tokens, p).mean().item()

    def metric(logits):
        return (continuation_log_probs(logits, clean_tokens, p).mean() - corrupt_m) / (clean_m - corrupt_m)

    for kind in kinds:

        def ours(kind=kind):
            return activation_patching(model, paragraphs, corrupted, kinds=(kind,), batch_size=batch_size)[kind].effect

        def reference(kind=kind):
            with torch.no_grad():
                _, cache = model.run_with_cache(clean_tokens)
                return TL_FUNCTIONS[kind](model, corrupted.to(model.cfg.device), cache, metric).cpu()

        counts = work(model, kind, n, seq, p)
        methods = [
            Method(label, fn, flops=counts[label][1], layer_tokens=counts[label][0])
            for label, fn in (("transformer_lens.patching", reference), ("interp batched", ours))
        ]
        timings = session.time(methods, warmup=warmup)
        diff = float((timings["interp batched"].result - timings["transformer_lens.patching"].result).abs().max())
        cells = len(all_cells(model, kind, seq))
        session.report(
            f"{name} {kind}: {cells} cells x {n} paragraphs of {seq} tokens, batch {batch_size} rows",
            timings,
            baseline="transformer_lens.patching",
            candidate="interp batched",
            max_abs_diff=diff,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["testbed", "neo125m-shaped"], choices=["testbed", "neo125m-shaped"]
    )
    parser.add_argument("--kinds", nargs="+", default=["head_out", "resid_pre"], choices=list(TL_FUNCTIONS))
    parser.add_argument("--paragraphs", type=int, default=8, help="paragraphs on the testbed")
    parser.add_argument("--paragraphs-125m", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    session = Session("bench_patching", args)
    for name in args.models:
        if name == "testbed":
            from interp import load_model

            model = load_model("testbed")
            paragraphs = paragraphs_for(name, model, args.paragraphs)
            bench(session, name, model, paragraphs, args.kinds, args.batch_size, warmup=True)
        else:
            model = neo_125m_shaped().to("cuda" if torch.cuda.is_available() else "cpu")
            paragraphs = paragraphs_for(name, model, args.paragraphs_125m)
            kinds = [k for k in args.kinds if k == "head_out"] or args.kinds
            bench(session, "GPT-Neo-125M-shaped", model, paragraphs, kinds, args.batch_size, warmup=False)
    session.finish()


if __name__ == "__main__":
    main()
