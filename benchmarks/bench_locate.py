"""`locate-head` on a GPT-Neo-125M-shaped model: seconds per method, and the attribution screen vs exact patching.

    python benchmarks/bench_locate.py                          # 125M-shaped, 64 MEM + 64 NMEM, screen of 8
    python benchmarks/bench_locate.py --exact-all              # also exact patching + ablation on every head
    python benchmarks/bench_locate.py --model testbed --n 16    # the shipped testbed (MEM / NMEM by EM)

Load check, repeats (default 3; run_all.py runs it once), medians and JSON as benchmarks/harness.py.

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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from harness import Method, Session, add_arguments, neo_125m_shaped  # noqa: E402

from interp.data import Paragraphs  # noqa: E402
from interp.locator.ranking import DEFAULT_METHODS, locate_memorization_head  # noqa: E402


def random_sets(model, n: int, seed: int = 0) -> tuple[Paragraphs, Paragraphs, Paragraphs]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.cfg.d_vocab, (2 * n + 8, 100), generator=g)
    p = Paragraphs(tokens, 50, tuple(f"r{i}" for i in range(len(tokens))))
    return p.select(range(n)), p.select(range(n, 2 * n)), p.select(range(2 * n, 2 * n + 8))


def run(session: Session, model, args, **sets) -> None:
    def locate(exact_all: bool):
        return lambda: locate_memorization_head(
            model,
            methods=tuple(args.methods),
            candidates=args.candidates,
            set_size=args.set_size,
            exact_all=exact_all,
            batch_size=args.batch_size,
            **sets,
        )

    screened = Method(f"screened ({args.candidates} candidates)", locate(False))
    methods = [Method("exact on every head", locate(True)), screened] if args.exact_all else [screened]
    timings = session.time(methods, warmup=False)
    ranking = timings[screened.name].result
    total = timings[screened.name].median
    case = f"locate-head, {args.model}: {len(ranking.mem_ids)} MEM + {len(ranking.nmem_ids)} NMEM"
    print(f"seconds per method (last run): {', '.join(f'{m} {s:.1f}' for m, s in ranking.seconds.items())}")
    print(f"screen vs exact patching on the candidates: {ranking.screen}")
    notes = {
        "within_10_minutes": total <= 600,
        "method_seconds": {m: round(s, 1) for m, s in ranking.seconds.items()},
        "screen": ranking.screen,
        "top": str(ranking.top),
    }
    if not args.exact_all:
        session.report_alone(case, timings[screened.name], **notes)
        return
    full = timings["exact on every head"].result
    notes |= {
        "exact_all_screen": full.screen,
        "exact_top_in_screen": full.screen.get("exact_top_attribution_rank", 10**9) <= args.candidates,
    }
    print(f"screen vs exact on every head: {full.screen}")
    session.report(case, timings, baseline="exact on every head", candidate=screened.name, **notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="neo125m-shaped", choices=["neo125m-shaped", "testbed"])
    parser.add_argument("--n", type=int, default=64, help="MEM and NMEM paragraphs each (125M-shaped: random ones)")
    parser.add_argument(
        "--set-size",
        "--max-paragraphs",  # its name before the locator's set_size
        dest="set_size",
        type=int,
        default=16,
        help="paragraphs of each set the costly methods use",
    )
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--exact-all", action="store_true", help="also time exact patching + ablation of every head")
    parser.add_argument("--batch-size", type=int, default=16)
    add_arguments(parser)
    args = parser.parse_args()
    session = Session("bench_locate", args)
    if args.model == "testbed":
        from interp import load_model, testbed_paragraphs, testbed_unigram_counts

        model = load_model("testbed", device="cpu")
        paragraphs = testbed_paragraphs(("planted", "once"))
        run(
            session,
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
        run(session, model, args, mem=mem, nmem=nmem, reference=reference)
    session.finish()


if __name__ == "__main__":
    main()
