"""Run every benchmark of the project and collect their medians, spreads, ratios and fractions of peak.

    python benchmarks/run_all.py [--quick] [--json OUT] [--only NAME ...] [--repeats 3] [--max-wait 300]

Each benchmarks/bench_*.py runs in its own process: it checks the load first (waiting up to
--max-wait seconds for the 1-minute load average to fall below --load-threshold, else marking
its rows BUSY), runs each method --repeats times interleaved, and writes its rows as JSON (see
benchmarks/harness.py). This script prints one table of those rows (median and range of each
side, the ratio of medians with the range of per-round ratios, the work ratio where counted, the
candidate's GFLOP/s as a fraction of the matmul peak of the same run, peak memory where measured)
and writes it all as JSON (default benchmarks/results.json) with each process' peak RSS (os.wait4)
and the tail of its output. --quick passes each benchmark smaller sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import LOAD_THRESHOLD, MAX_WAIT_S

HERE = Path(__file__).resolve().parent

# Arguments per benchmark: (default run, --quick run), after the common ones (so they win: one
# locate-head run at the 125M shape takes minutes, so it runs once). A benchmark not listed runs with none.
ARGS: dict[str, tuple[list[str], list[str]]] = {
    "bench_em": ([], ["--n", "16", "--n-125m", "2"]),
    "bench_forward": ([], ["--rows", "8"]),
    "bench_fusion": ([], ["--rows", "8"]),
    "bench_gradients": ([], ["--paragraphs", "4", "--batch-size", "4", "--skip-125m"]),
    "bench_patching": ([], ["--models", "testbed", "--paragraphs", "2"]),
    "bench_scan": ([], ["--slices", "2"]),
    "bench_locate": (["--repeats", "1"], ["--repeats", "1", "--n", "8", "--max-paragraphs", "4"]),
}
SUBCOMMAND = {"bench_scan": ["speed"]}  # comes before every option


def run_one(path: Path, args: list[str], timeout: float, workdir: Path) -> dict:
    """Run one benchmark script in a fresh process; its rows, output, seconds and peak RSS."""
    log, rows_json = workdir / f"{path.stem}.log", workdir / f"{path.stem}.json"
    argv = [sys.executable, str(path), *args, "--json", str(rows_json)]
    if path.stem == "bench_scan":
        argv += ["--out", str(workdir / "scan")]
    start = time.perf_counter()
    env = os.environ | {"TQDM_DISABLE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent, env=env)
        timed_out = False
        while True:  # os.wait4 gives this child's own peak RSS
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > start + timeout:
                proc.kill()
                timed_out = True
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    proc.returncode = returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    stdout = log.read_text(errors="replace")
    measured = json.loads(rows_json.read_text()) if rows_json.exists() else {"machine": None, "rows": []}
    return {
        "benchmark": path.stem,
        "argv": argv[1:],
        "returncode": returncode,
        "timed_out": timed_out,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "machine": measured["machine"],
        "rows": measured["rows"],
        "output_tail": stdout[-3000:],
    }


def _side(method: dict) -> str:
    return f"{method['median_s']:.2f} ({method['min_s']:.2f}-{method['max_s']:.2f})"


def table(results: list[dict]) -> str:
    """One line per comparison: medians (ranges) in seconds, ratio, work ratio, fraction of peak, memory."""
    head = (
        f"{'benchmark':<15} {'case':<58} {'baseline s':>19} {'candidate s':>19} {'ratio (rounds)':>19} "
        f"{'work':>6} {'cand GFLOP/s':>16} {'peak MiB b/c':>13}  state"
    )
    lines = [head]
    for r in results:
        state = "" if r["returncode"] == 0 else ("TIMED OUT" if r["timed_out"] else f"FAILED (exit {r['returncode']})")
        if r["machine"] and r["machine"].get("busy"):
            state = (state + " BUSY").strip()
        if not r["rows"]:
            lines.append(f"{r['benchmark']:<15} {'(no rows: see its log in the JSON)':<58} {state}")
        for row in r["rows"]:
            if row["baseline"] is None:  # one method against a budget: no ratio
                cand = row["methods"][row["candidate"]]
                lines.append(
                    f"{r['benchmark']:<15} {row['case'][:58]:<58} {'-':>19} {_side(cand):>19} {'-':>19} "
                    f"{'-':>6} {'-':>16} {'-':>13}  {state}"
                )
                continue
            base, cand = row["methods"][row["baseline"]], row["methods"][row["candidate"]]
            case = f"{row['case']} | {row['candidate']} vs {row['baseline']}"
            ratio = f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
            work = f"{row['work_ratio']:.2f}x" if "work_ratio" in row else "-"
            gflops = f"{cand['gflops']:.0f} ({cand['fraction_of_peak']:.0%})" if "gflops" in cand else "-"
            memory = (
                f"{base['peak_mib']:.0f}/{cand['peak_mib']:.0f}" if "peak_mib" in base and "peak_mib" in cand else "-"
            )
            lines.append(
                f"{r['benchmark']:<15} {case[:58]:<58} {_side(base):>19} {_side(cand):>19} {ratio:>19} "
                f"{work:>6} {gflops:>16} {memory:>13}  {state}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (minutes instead of tens of minutes)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--only", nargs="+", default=None, help="benchmark names, e.g. bench_em bench_patching")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark before it is stopped")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method, interleaved")
    parser.add_argument("--load-threshold", type=float, default=LOAD_THRESHOLD)
    parser.add_argument(
        "--max-wait", type=float, default=MAX_WAIT_S, help="seconds each benchmark waits for a quiet machine"
    )
    args = parser.parse_args(argv)
    scripts = sorted(p for p in HERE.glob("bench_*.py") if args.only is None or p.stem in args.only)
    if not scripts:
        print(f"no benchmark matches {args.only}", file=sys.stderr)
        return 2
    common = [
        "--repeats",
        str(args.repeats),
        "--load-threshold",
        str(args.load_threshold),
        "--max-wait",
        str(args.max_wait),
    ]
    results = []
    with tempfile.TemporaryDirectory(prefix="interp-bench-") as tmp:
        for path in scripts:
            default, quick = ARGS.get(path.stem, ([], []))
            print(f"running {path.name} ...", flush=True)
            argv = SUBCOMMAND.get(path.stem, []) + common + (quick if args.quick else default)
            results.append(run_one(path, argv, args.timeout, Path(tmp)))
    report = table(results)
    print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "table": report.splitlines(),
                "results": results,
            },
            indent=1,
        )
    )
    print(f"wrote {args.json}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
