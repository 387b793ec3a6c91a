"""`locate-head` on a GPT-Neo-125M-shaped model: seconds per method, and the attribution screen vs exact patching.

    python benchmarks/bench_locate.py                          # 125M-shaped, 64 MEM + 64 NMEM, screen of 8
    python benchmarks/bench_locate.py --exact-all              # also exact patching + ablation on every head
    python benchmarks/bench_locate.py --model testbed --n 16    # the shipped testbed (MEM / NMEM by EM)

The 125M-shaped model has random weights, so nothing is memorized: MEM and NMEM are explicit sets of
random paragraphs (the locator accepts explicit sets for exactly this), and the timing is what
matters. Prints every method's seconds in one run, the total against the 10-minute budget, and
the screen's agreement with exact patching on its candidates (with --exact-all: on every head,
and the attribution rank of the exact top head). Known-answer screens (injected heads) are
measured by `interp validate-locator`, whose heads report `in_screen`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from harness import neo_125m_shaped  # noqa: E402

from interp.data import Paragraphs  # noqa: E402
from interp.locate import DEFAULT_METHODS, locate_memorization_head  # noqa: E402


def random_sets(model, n: int, seed: int = 0) -> tuple[Paragraphs, Paragraphs, Paragraphs]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.cfg.d_vocab, (2 * n + 8, 100), generator=g)
    p = Paragraphs(tokens, 50, tuple(f"r{i}" for i in range(len(tokens))))
    return p.select(range(n)), p.select(range(n, 2 * n)), p.select(range(2 * n, 2 * n + 8))


def run(model, args, **sets) -> None:
    t0 = time.perf_counter()
    ranking = locate_memorization_head(
        model,
        methods=tuple(args.methods),
        candidates=args.candidates,
        max_paragraphs=args.max_paragraphs,
        exact_all=False,
        batch_size=args.batch_size,
        **sets,
    )
    total = time.perf_counter() - t0
    print(
        f"screened ({args.candidates} candidates): {total:.1f} s in all "
        f"({'within' if total <= 600 else 'OVER'} the 10-minute budget); MEM {len(ranking.mem_ids)}, NMEM {len(ranking.nmem_ids)}"
    )
    for m, s in ranking.seconds.items():
        print(f"  {m:>22}: {s:8.1f} s")
    print(f"  screen vs exact patching on the candidates: {ranking.screen}")
    print(f"  top head {ranking.top}")
    if args.exact_all:
        t0 = time.perf_counter()
        full = locate_memorization_head(
            model,
            methods=tuple(args.methods),
            exact_all=True,
            max_paragraphs=args.max_paragraphs,
            batch_size=args.batch_size,
            **sets,
        )
        total_all = time.perf_counter() - t0
        print(f"exact on every head: {total_all:.1f} s in all; screened / exact-all time = {total / total_all:.2f}")
        for m, s in full.seconds.items():
            print(f"  {m:>22}: {s:8.1f} s")
        print(f"  screen vs exact on every head: {full.screen}")
        print(
            f"  exact top head {full.screen.get('exact_top')} is in the screen of {args.candidates}: "
            f"{full.screen.get('exact_top_attribution_rank', 10**9) <= args.candidates}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="neo125m-shaped", choices=["neo125m-shaped", "testbed"])
    parser.add_argument("--n", type=int, default=64, help="MEM and NMEM paragraphs each (125M-shaped: random ones)")
    parser.add_argument("--max-paragraphs", type=int, default=16, help="paragraphs of each set the costly methods use")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--exact-all", action="store_true")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.model == "testbed":
        from interp import load_model, testbed_paragraphs, testbed_unigram_counts

        model = load_model("testbed", device="cpu")
        paragraphs = testbed_paragraphs(("planted", "once"))
        run(
            model,
            args,
            paragraphs=paragraphs.select(range(0, len(paragraphs), max(1, len(paragraphs) // (8 * args.n)))),
            unigram_counts=testbed_unigram_counts(),
        )
    else:
        model = neo_125m_shaped()
        mem, nmem, reference = random_sets(model, args.n)
        print(
            f"GPT-Neo-125M-shaped, random weights: {model.cfg.n_layers} x {model.cfg.n_heads} heads, {args.n} MEM + {args.n} NMEM"
        )
        run(model, args, mem=mem, nmem=nmem, reference=reference)


if __name__ == "__main__":
    main()
