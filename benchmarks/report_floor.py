"""The report's floor at GPT-Neo-125M's shape, from the work a measured testbed report counted.

    python benchmarks/report_floor.py REPORT/results.json [--peak GFLOPS] [--seq 100]

A report's results.json records, per step, the block-positions it ran forward and backward and the
positions it unembedded (`interp.cost`, counted as the blocks ran). The same report at another shape
runs the same paragraphs through the same runs (targets, calibration trials, injected heads), so its
work is those counts with the other shape's FLOPs: block-positions scaled by the ratio of layers, each
at `interp.cost.block_flops` per position of a `--seq`-token paragraph, logit positions at
`unembed_flops`, and backward FLOPs at the step's measured backward / forward block ratio. The first
table checks that model: the same formulas at the testbed's own shape against the counted FLOPs.
The floor is those FLOPs at 100 % of the float32 matmul peak (timed here, or `--peak`): no
implementation of the same work runs faster on this machine. It is an estimate of work, not a timing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import neo_125m_config  # noqa: E402

from interp.cost import block_flops, matmul_gflops, unembed_flops  # noqa: E402
from interp.models import load_model  # noqa: E402


def step_flops(step: dict, cfg, layer_ratio: float, seq: int) -> tuple[float, float]:
    """(forward, backward) FLOPs of a step's counted positions at `cfg`'s shape."""
    per_block = block_flops(cfg, 1, seq) / seq
    forward_blocks = step["forward_block_positions"] * layer_ratio * per_block
    forward = forward_blocks + unembed_flops(cfg, step["logit_positions"])
    backward_blocks = step["backward_block_positions"] * layer_ratio * per_block
    return forward, backward_blocks * _backward_factor(step)


def _backward_factor(step: dict) -> float:
    """Counted backward FLOPs per forward FLOP of the same block-positions (1 or 2, mixed over a step)."""
    if not step["backward_block_positions"]:
        return 0.0
    forward_per_position = step["gflop_forward"] / max(step["forward_block_positions"], 1)
    return step["gflop_backward"] / (step["backward_block_positions"] * forward_per_position)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.json of a testbed report (its 'cost' entry)")
    parser.add_argument("--peak", type=float, default=None, help="GFLOP/s at 100 %% (default: timed now)")
    parser.add_argument("--seq", type=int, default=100, help="tokens per paragraph (prefix + continuation)")
    args = parser.parse_args()
    steps = {k: v for k, v in json.loads(args.results.read_text())["cost"]["steps"].items() if "gflop_forward" in v}
    testbed, neo = load_model("testbed").cfg, neo_125m_config()
    peak = args.peak or matmul_gflops()
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s ({'given' if args.peak else 'timed now'})")
    print(
        f"{'step':>14} {'counted GFLOP':>14} {'model GFLOP':>12} {'125M GFLOP':>11} {'s at peak':>10} {'min at peak':>12}"
    )
    total_counted = total_neo = 0.0
    for name, step in steps.items():
        counted = step["gflop_forward"] + step["gflop_backward"]
        f, b = step_flops(step, testbed, 1.0, args.seq)
        nf, nb = step_flops(step, neo, neo.n_layers / testbed.n_layers, args.seq)
        total_counted, total_neo = total_counted + counted, total_neo + (nf + nb) / 1e9
        print(
            f"{name:>14} {counted:>14,.0f} {(f + b) / 1e9:>12,.0f} {(nf + nb) / 1e9:>11,.0f} "
            f"{(nf + nb) / 1e9 / peak:>10,.0f} {(nf + nb) / 1e9 / peak / 60:>12,.1f}"
        )
    print(
        f"{'whole report':>14} {total_counted:>14,.0f} {'':>12} {total_neo:>11,.0f} {total_neo / peak:>10,.0f} "
        f"{total_neo / peak / 60:>12,.1f}"
    )
    print(
        f"GPT-Neo-125M shape: {total_neo / 1e3:,.0f} TFLOP, {total_neo / peak / 60:,.0f} minutes at 100 % of the peak "
        f"({total_neo / total_counted:.1f}x the testbed's work)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
