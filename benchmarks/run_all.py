"""Run every benchmark of the project and collect their ratios and peak memory into one table.

    python benchmarks/run_all.py [--quick] [--json OUT] [--only NAME ...] [--timeout SECONDS]

Each benchmarks/bench_*.py runs in its own process (so its timings are its own, measured in one
run, and its peak memory is that process' max RSS, from os.wait4). Every ratio a benchmark
prints ("ratio 12.3x", "speed-up 2.10x", "speed-up x3.5", "speed x4.0") becomes a table row
with the line it came from; the table is printed and written as JSON (default
benchmarks/results.json). --quick passes each benchmark smaller sizes where it has them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RATIO = re.compile(r"\b(?:ratio|speed-up|speedup|speed)\s+x?\s*(\d+(?:\.\d+)?)\s*x?", re.IGNORECASE)

# Arguments per benchmark: (default run, --quick run). A benchmark not listed runs with none.
ARGS: dict[str, tuple[list[str], list[str]]] = {
    "bench_em": ([], ["--n", "16", "--n-125m", "2"]),
    "bench_gradients": ([], ["--paragraphs", "4", "--skip-125m"]),
    "bench_patching": ([], ["--models", "testbed", "--paragraphs", "2"]),
    "bench_scan": (["speed"], ["speed", "--slices", "2"]),
}


NOT_A_HEADING = re.compile(r"Warning|warn\(|%\||it/s\]|s/it\]")


def parse_ratios(stdout: str) -> list[dict]:
    """Every ratio printed, with its line and, for an indented line, the heading above it (the last
    unindented line that is not itself a result, a warning or a progress bar)."""
    rows, heading = [], ""
    for line in stdout.splitlines():
        found = list(RATIO.finditer(line))
        if line and not line[0].isspace() and not found and not NOT_A_HEADING.search(line):
            heading = line.strip()
        for match in found:
            rows.append({"ratio": float(match.group(1)), "line": line.strip(),
                         "context": heading if line[:1].isspace() else ""})
    return rows


def run_one(path: Path, args: list[str], timeout: float, workdir: Path) -> dict:
    """Run one benchmark script in a fresh process; its output, ratios, seconds and peak RSS."""
    log = workdir / f"{path.stem}.log"
    argv = [sys.executable, str(path), *args]
    if path.stem == "bench_scan":
        argv += ["--out", str(workdir / "scan")]
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent)
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
    return {"benchmark": path.stem, "argv": argv[1:], "returncode": returncode,
            "timed_out": timed_out, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "ratios": parse_ratios(stdout),
            "output_tail": stdout[-3000:]}


def table(results: list[dict]) -> str:
    lines = [f"{'benchmark':<16} {'ratio':>8}  {'peak MiB':>8}  {'s':>6}  what"]
    for r in results:
        state = "" if r["returncode"] == 0 else (" TIMED OUT" if r["timed_out"] else f" FAILED (exit {r['returncode']})")
        if not r["ratios"]:
            lines.append(f"{r['benchmark']:<16} {'-':>8}  {r['peak_rss_mib']:>8.0f}  {r['seconds']:>6.0f}  (no ratio printed){state}")
        for row in r["ratios"]:
            what = f"{row['context']} | {row['line']}" if row["context"] else row["line"]
            lines.append(f"{r['benchmark']:<16} {row['ratio']:>7.2f}x  {r['peak_rss_mib']:>8.0f}  {r['seconds']:>6.0f}  {what[:110]}{state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (minutes instead of tens of minutes)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--only", nargs="+", default=None, help="benchmark names, e.g. bench_em bench_patching")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark before it is stopped")
    args = parser.parse_args(argv)
    scripts = sorted(p for p in HERE.glob("bench_*.py") if args.only is None or p.stem in args.only)
    if not scripts:
        print(f"no benchmark matches {args.only}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="interp-bench-") as tmp:
        for path in scripts:
            default, quick = ARGS.get(path.stem, ([], []))
            print(f"running {path.name} ...", flush=True)
            results.append(run_one(path, quick if args.quick else default, args.timeout, Path(tmp)))
    report = table(results)
    print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"quick": args.quick, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                                     "results": results}, indent=1))
    print(f"wrote {args.json}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
