"""`interp report`: the whole pipeline -> one offline report.html, results.json and PNG / SVG figures."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from interp.commands.common import add_model_args, add_paragraph_args, model_from_args, paragraphs_from_args
from interp.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("report", help="run the whole pipeline and write report.html, results.json and figures")
    add_model_args(p, default_model="testbed")
    add_paragraph_args(p)
    p.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: ./report)")
    p.add_argument("--quick", action="store_true", help="fewer paragraphs and steps per analysis: a first look in minutes")
    p.add_argument("--steps", default=None, help="comma-separated subset of steps (each brings the steps it needs)")
    p.add_argument("--n-mem", type=int, default=None, help="MEM paragraphs for the costlier analyses")
    p.add_argument("--n-nmem", type=int, default=None, help="NMEM paragraphs for the costlier analyses")
    p.add_argument("--max-paragraphs", type=int, default=None,
                   help="score a seeded sample of at most this many paragraphs (default: all; --quick: 400)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-cache", action="store_true", help="recompute every step (results are still cached for next time)")
    p.add_argument("--formats", default="png,svg", help="static image formats for figures/ (default png,svg; '' for none)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from interp.report import ReportOptions, default_steps, run_report, select_steps

    overrides = {k: v for k, v in {"n_mem": args.n_mem, "n_nmem": args.n_nmem, "seed": args.seed,
                                    "batch_size": args.batch_size,
                                    "max_paragraphs": args.max_paragraphs}.items() if v is not None}
    if args.steps:
        overrides["steps"] = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    for name in ("n_mem", "n_nmem", "batch_size", "max_paragraphs"):
        if name in overrides and overrides[name] < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    options = ReportOptions.quick(**overrides) if args.quick else ReportOptions(**overrides)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad:
        raise UserError(f"unknown image format(s) {', '.join(bad)}: use png, svg or pdf")
    steps = select_steps(options, default_steps())
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} exists and is not a folder")
    start = time.perf_counter()
    model = model_from_args(args)
    paragraphs = paragraphs_from_args(args, model)
    source = str(args.paragraphs) if args.paragraphs else "the paragraph set shipped with the model"
    result = run_report(model, paragraphs, args.out, options=options, steps=steps, use_cache=not args.no_cache,
                        paragraphs_source=source, image_formats=formats)
    for name, seconds in result.seconds.items():
        print(f"  {name:<16} {seconds:8.1f} s{'  (cached)' if result.cached.get(name) else ''}")
    print(f"wrote {result.html}, {result.results_json} and {len(result.figures)} figure files "
          f"in {time.perf_counter() - start:.0f} s")
    return 0
