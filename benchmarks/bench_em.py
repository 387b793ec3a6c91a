"""Teacher-forced EM (one forward) vs EM from greedy decoding (model.generate), timed in one run.

    python benchmarks/bench_em.py [--n 64] [--n-125m 8] [--json OUT]

Prints, for the testbed and a GPT-Neo-125M-shaped model with random weights, the seconds of
each method, their ratio, and whether the two EMs agree.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp import greedy_exact_match, load_model, score_paragraphs, testbed_paragraphs
from interp.data import Paragraphs
from interp.io import write_json


def neo_125m_shaped() -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=2048,
        act_fn="gelu_new", normalization_type="LN", attn_types=["global", "local"] * 6, use_local_attn=True, window_size=256,
        use_attn_scale=False, original_architecture="GPTNeoForCausalLM", positional_embedding_type="standard",
        device="cpu", seed=0,
    )
    return HookedTransformer(cfg).eval()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def compare(name: str, model: HookedTransformer, paragraphs: Paragraphs) -> dict:
    tf, t_tf = timed(lambda: score_paragraphs(model, paragraphs).em)
    greedy, t_greedy = timed(lambda: greedy_exact_match(model, paragraphs))
    row = {"model": name, "paragraphs": len(paragraphs), "teacher_forced_s": round(t_tf, 3),
           "greedy_s": round(t_greedy, 3), "ratio": round(t_greedy / t_tf, 1), "em_equal": bool(torch.equal(tf, greedy))}
    print(f"{name:>22}: {len(paragraphs):4d} paragraphs  teacher-forced {t_tf:7.2f} s  greedy {t_greedy:7.2f} s  "
          f"ratio {row['ratio']:6.1f}x  EM equal: {row['em_equal']}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--n-125m", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rows = []
    testbed = load_model("testbed", device="cpu")
    paragraphs = testbed_paragraphs()
    step = max(1, len(paragraphs) // args.n)
    rows.append(compare("testbed", testbed, paragraphs.select(range(0, step * args.n, step))))
    big = neo_125m_shaped()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, big.cfg.d_vocab, (args.n_125m, 100), generator=g)
    rows.append(compare("GPT-Neo-125M-shaped", big, Paragraphs(tokens, 50, tuple(map(str, range(args.n_125m))))))
    if args.json:
        write_json(args.json, {"benchmark": "em", "rows": rows})


if __name__ == "__main__":
    main()
