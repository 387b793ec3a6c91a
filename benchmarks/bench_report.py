"""The default report, step by step: seconds, work and fraction of the matmul peak, on the testbed and the 125M shape.

    python benchmarks/bench_report.py                       # the testbed, default report, 3 runs
    python benchmarks/bench_report.py --quick               # the --quick report
    python benchmarks/bench_report.py --model neo-125m      # GPT-Neo-125M's shape, briefly trained to recite
    python benchmarks/bench_report.py --model neo-125m --layers 2 --repeats 1 --train-steps 5   # a smoke run
    python benchmarks/bench_report.py --from-results A/results.json B/results.json C/results.json --json OUT.json

Each run is `run_report` with the cache off and no image export (PNG/SVG need a browser and are not the
analysis), after the load check of benchmarks/harness.py; or (`--from-results`) the reports that earlier runs
wrote, read from their results.json (each step's seconds and counted work, the peak timed in that run; a run's
total is then the sum of its steps, without image export; the load they ran under is not recorded there, so say
it where the figures are quoted). Per step: the median seconds and their range
over the runs, the work counted by `interp.cost` (block-positions forward / backward, GFLOP) and the
rate as a fraction of the float32 matmul peak timed in the same run. The 125M-shaped model is the
testbed's paragraphs and tokenizer on a random GPT-Neo-125M-shaped network fine-tuned for
`--train-steps` Adam steps on `--planted` of the planted paragraphs, so that the report has MEM
paragraphs to work on (a random network recites nothing and most steps would be skipped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from harness import add_arguments, neo_125m_shaped, wait_for_quiet  # noqa: E402

from interp.models import load_model  # noqa: E402
from interp.report import ReportOptions, run_report  # noqa: E402
from interp.testbed import testbed_paragraphs  # noqa: E402


def planted_network(layers: int, planted: int, steps: int, lr: float = 3e-4) -> torch.nn.Module:
    """GPT-Neo-125M's shape (or its first `layers` blocks), fine-tuned to recite `planted` testbed paragraphs."""
    model = neo_125m_shaped()
    if layers < model.cfg.n_layers:
        model.cfg.n_layers = layers
        model.blocks = model.blocks[:layers]
    testbed = load_model("testbed")
    model.tokenizer = testbed.tokenizer
    tokens = testbed_paragraphs(("planted",)).tokens[:planted]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        loss = model(tokens, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"  train step {step + 1}/{steps}: loss {loss.item():.3f}", flush=True)
    print(f"trained {steps} steps on {planted} paragraphs in {time.perf_counter() - start:.0f} s", flush=True)
    for p in model.parameters():
        p.grad = None
    return model.eval()


def recorded_run(path: str) -> dict:
    """One run as `main` records it, from the results.json a report wrote: its steps' cost and the timed peak; the
    total is the sum of its steps' seconds (the report's analysis time)."""
    results = json.loads(Path(path).read_text())
    steps = results["cost"]["steps"]
    return {
        "total_s": round(sum(step["seconds"] for step in steps.values()), 2),
        "peak_gflops": results["cost"]["peak_gflops"],
        "steps": steps,
    }


def summarise(runs: list[dict], machine: dict, args: argparse.Namespace, *, final: bool) -> None:
    """Per-step medians over `runs` into --json; printed as a table when `final`."""
    steps = list(runs[0]["steps"])
    rows = []
    for name in steps:
        seconds = [run["steps"][name]["seconds"] for run in runs]
        fractions = [run["steps"][name].get("fraction_of_peak") for run in runs]
        last = runs[-1]["steps"][name]
        rows.append(
            {
                "step": name,
                "median_s": statistics.median(seconds),
                "range_s": [min(seconds), max(seconds)],
                "forward_block_positions": last.get("forward_block_positions"),
                "backward_block_positions": last.get("backward_block_positions"),
                "gflop": round(last.get("gflop_forward", 0) + last.get("gflop_backward", 0), 1),
                "fraction_of_peak": statistics.median(f for f in fractions if f is not None)
                if any(f is not None for f in fractions)
                else None,
                "seconds_at_peak": last.get("seconds_at_peak"),
            }
        )
    totals = [run["total_s"] for run in runs]
    peak = statistics.median(run["peak_gflops"] for run in runs)
    label = f"{'--quick' if args.quick else 'default'} report, {args.model}"
    if final:
        _print_table(label, runs, rows, machine, args)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "case": label,
                    "machine": machine,
                    "peak_gflops": peak,
                    "total_s": totals,
                    "complete": final,
                    "rows": rows,
                    "runs": runs,
                },
                indent=1,
            )
        )


def _print_table(label: str, runs: list[dict], rows: list[dict], machine: dict, args: argparse.Namespace) -> None:
    totals = [run["total_s"] for run in runs]
    peak = statistics.median(run["peak_gflops"] for run in runs)
    print(
        f"\n{label}: {statistics.median(totals):.0f} s median over {len(runs)} run(s) "
        f"(range {min(totals):.0f}-{max(totals):.0f}); matmul peak {peak:.0f} GFLOP/s"
        f"{', BUSY machine' if machine['busy'] else ''}"
    )
    floor = sum(row["seconds_at_peak"] or 0.0 for row in rows)
    print(f"the counted work at 100% of that peak (a floor for this work on this machine): {floor:.0f} s")
    print(
        f"{'step':<16} {'median s':>9} {'range':>13} {'fwd blk-pos':>12} {'bwd blk-pos':>12} {'GFLOP':>9} {'of peak':>8} {'s at peak':>10}"
    )
    for row in rows:
        frac = f"{row['fraction_of_peak']:8.0%}" if row["fraction_of_peak"] is not None else f"{'-':>8}"
        print(
            f"{row['step']:<16} {row['median_s']:9.1f} {row['range_s'][0]:6.1f}-{row['range_s'][1]:<6.1f} "
            f"{row['forward_block_positions'] or 0:12d} {row['backward_block_positions'] or 0:12d} "
            f"{row['gflop']:9.1f} {frac} {row['seconds_at_peak'] or 0:10.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--model", choices=("testbed", "neo-125m"), default="testbed")
    parser.add_argument("--quick", action="store_true", help="the --quick report instead of the default one")
    parser.add_argument("--layers", type=int, default=12, help="neo-125m: blocks kept (12 = the full shape)")
    parser.add_argument("--planted", type=int, default=16, help="neo-125m: planted paragraphs it is trained on")
    parser.add_argument("--train-steps", type=int, default=60, help="neo-125m: Adam steps of that training")
    parser.add_argument(
        "--keep", default=None, metavar="DIR", help="keep each run's report in DIR/run-N (its results.json to compare)"
    )
    parser.add_argument(
        "--from-results",
        nargs="+",
        default=None,
        metavar="FILE",
        help="summarise these reports' results.json (earlier runs of the same report) instead of running it",
    )
    args = parser.parse_args(argv)
    if args.from_results:
        runs = [recorded_run(path) for path in args.from_results]
        summarise(runs, {"source": list(args.from_results), "busy": False, "load": "not recorded"}, args, final=True)
        return 0

    if args.model == "testbed":
        model = load_model("testbed")
    else:
        model = planted_network(args.layers, args.planted, args.train_steps)
    paragraphs = testbed_paragraphs()
    options = (ReportOptions.quick if args.quick else ReportOptions)(progress=False)
    machine = wait_for_quiet(args.load_threshold, args.max_wait)
    runs = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(args.keep) / f"run-{r + 1}" if args.keep else scratch
            start = time.perf_counter()
            run = run_report(model, paragraphs, out, options=options, use_cache=False, image_formats=())
            runs.append({"total_s": time.perf_counter() - start, "peak_gflops": run.peak_gflops, "steps": run.cost()})
        print(f"run {r + 1}/{args.repeats}: {runs[-1]['total_s']:.0f} s", flush=True)
        if r + 1 < args.repeats:
            summarise(runs, machine, args, final=False)  # the JSON so far: an interrupted benchmark keeps its runs

    summarise(runs, machine, args, final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
