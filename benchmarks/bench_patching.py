"""Batched activation patching vs transformer_lens.patching, timed in one run on the same inputs.

    python benchmarks/bench_patching.py                 # the testbed and a GPT-Neo-125M-shaped random model
    python benchmarks/bench_patching.py --models testbed --paragraphs 8

Prints, per model and patch kind, both wall times, their ratio, and the largest difference
between the two results (they must agree to ~1e-4).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import patching as tl_patching

from interp.data import Paragraphs
from interp.metrics import continuation_log_probs
from interp.patching import activation_patching
from interp.perturbation import corrupt_prefixes

TL_FUNCTIONS = {
    "head_out": tl_patching.get_act_patch_attn_head_out_all_pos,
    "resid_pre": tl_patching.get_act_patch_resid_pre,
}


def neo125m_shaped() -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=2048, act_fn="gelu_new",
        normalization_type="LN", attn_types=["global", "local"] * 6, use_local_attn=True, window_size=256, use_attn_scale=False,
        original_architecture="GPTNeoForCausalLM", seed=0,
    )
    return HookedTransformer(cfg).eval()


def paragraphs_for(name: str, model: HookedTransformer, n: int) -> Paragraphs:
    if name == "testbed":
        from interp.testbed import testbed_paragraphs

        return testbed_paragraphs(("planted",)).select(range(n))
    tokens = torch.randint(0, model.cfg.d_vocab, (n, 100), generator=torch.Generator().manual_seed(0))
    return Paragraphs(tokens, 50, tuple(map(str, range(n))))


def bench(name: str, model: HookedTransformer, paragraphs: Paragraphs, kinds: list[str], batch_size: int) -> None:
    corrupted = corrupt_prefixes(paragraphs, 0.5, model.cfg.d_vocab)
    clean_tokens = paragraphs.tokens.to(model.cfg.device)
    p = paragraphs.prefix_len
    with torch.no_grad():
        clean_m = continuation_log_probs(model(clean_tokens), clean_tokens, p).mean().item()
        corrupt_m = continuation_log_probs(model(corrupted.to(model.cfg.device)), clean_tokens, p).mean().item()

    def metric(logits):
        return (continuation_log_probs(logits, clean_tokens, p).mean() - corrupt_m) / (clean_m - corrupt_m)

    for kind in kinds:
        t0 = time.perf_counter()
        ours = activation_patching(model, paragraphs, corrupted, kinds=(kind,), batch_size=batch_size)[kind].effect
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            _, cache = model.run_with_cache(clean_tokens)
            ref = TL_FUNCTIONS[kind](model, corrupted.to(model.cfg.device), cache, metric).cpu()
        t_tl = time.perf_counter() - t0
        print(f"{name:>14} {kind:>9} cells={ref.numel():>5} n={len(paragraphs):>2}  interp {t_ours:7.2f} s   "
              f"transformer_lens {t_tl:7.2f} s   speed-up x{t_tl / t_ours:5.2f}   max |diff| {float((ours - ref).abs().max()):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["testbed", "neo125m-shaped"], choices=["testbed", "neo125m-shaped"])
    parser.add_argument("--kinds", nargs="+", default=["head_out", "resid_pre"], choices=list(TL_FUNCTIONS))
    parser.add_argument("--paragraphs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for name in args.models:
        if name == "testbed":
            from interp import load_model

            model = load_model("testbed")
        else:
            model = neo125m_shaped().to("cuda" if torch.cuda.is_available() else "cpu")
        paragraphs = paragraphs_for(name, model, args.paragraphs)
        kinds = args.kinds if name == "testbed" else [k for k in args.kinds if k == "head_out"] or args.kinds
        bench(name, model, paragraphs, kinds, args.batch_size)


if __name__ == "__main__":
    main()
