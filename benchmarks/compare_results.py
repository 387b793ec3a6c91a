"""Compare two report results.json files, ignoring what measures time and not results.

    python benchmarks/compare_results.py BEFORE/results.json AFTER/results.json [--rtol 1e-6] [--show 40]

Ignored anywhere in the tree: keys naming a timing or the run (`seconds`, `cost`, `created`, `cached`,
`gflops`, `fraction_of_peak`), table columns whose name says seconds, and the numbers inside notes that
report seconds ("in 12 s"). Everything else is compared leaf by leaf: equal, or numbers within `--rtol`
(reported apart, as "close"), or different. Exit status 0 when nothing differs beyond `--rtol`, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

IGNORED_KEYS = {"seconds", "cost", "created", "cached", "gflops", "fraction_of_peak", "peak_gflops", "seconds_at_peak"}
TIMING_COLUMN = re.compile(r"(^|\W)(s|seconds?|time)(\W|$)", re.IGNORECASE)
TIMING_TEXT = re.compile(r"\d+(\.\d+)?\s*s\b")


def _strip_timing_columns(tables: Any) -> Any:
    """Tables with their timing columns (by name) removed from every row."""
    if not isinstance(tables, dict):
        return tables
    out = {}
    for key, group in tables.items():
        kept = []
        for table in group:
            drop = [i for i, c in enumerate(table.get("columns", [])) if TIMING_COLUMN.search(str(c))]
            kept.append(
                {
                    **table,
                    "columns": [c for i, c in enumerate(table["columns"]) if i not in drop],
                    "rows": [[v for i, v in enumerate(row) if i not in drop] for row in table["rows"]],
                }
            )
        out[key] = kept
    return out


def _normalise(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _normalise(v) for k, v in tree.items() if k not in IGNORED_KEYS}
    if isinstance(tree, list):
        return [_normalise(v) for v in tree]
    if isinstance(tree, str):
        return TIMING_TEXT.sub("<t> s", tree)
    return tree


def load(path: str | Path) -> Any:
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and "tables" in data:
        data["tables"] = _strip_timing_columns(data["tables"])
    return _normalise(data)


def compare(a: Any, b: Any, rtol: float, path: str = "") -> tuple[list[tuple], list[tuple]]:
    """(close, different): paths whose numbers are within rtol but not equal, and paths that differ."""
    close: list[tuple] = []
    different: list[tuple] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                different.append((f"{path}/{k}", a.get(k, "<missing>"), b.get(k, "<missing>")))
                continue
            c, d = compare(a[k], b[k], rtol, f"{path}/{k}")
            close += c
            different += d
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            different.append((f"{path}[len]", len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            c, d = compare(x, y, rtol, f"{path}[{i}]")
            close += c
            different += d
    elif _number(a) and _number(b):
        if a == b or (a is None and b is None) or (math.isnan(a) and math.isnan(b)):
            pass
        elif math.isclose(a, b, rel_tol=rtol, abs_tol=rtol):
            close.append((path, a, b))
        else:
            different.append((path, a, b))
    elif a != b:
        different.append((path, a, b))
    return close, different


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument(
        "--rtol", type=float, default=1e-6, help="numbers this close (relative or absolute) are 'close'"
    )
    parser.add_argument("--show", type=int, default=40, help="print at most this many paths of each kind")
    args = parser.parse_args(argv)
    close, different = compare(load(args.before), load(args.after), args.rtol)
    for name, rows in (("close", close), ("DIFFERENT", different)):
        print(f"{len(rows)} {name}" + (":" if rows else ""))
        for path, x, y in rows[: args.show]:
            print(f"  {path}: {str(x)[:100]} -> {str(y)[:100]}")
        if len(rows) > args.show:
            print(f"  ... and {len(rows) - args.show} more")
    if not close and not different:
        print("equal apart from timings")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
