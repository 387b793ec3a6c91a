"""`interp report`: the whole pipeline -> one offline report.html, results.json and PNG / SVG figures."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from interp.commands import common, options_cli
from interp.errors import UserError


def configure(p) -> None:
    common.add_model_args(p, default_model="testbed")
    common.add_paragraph_args(p, batch_size=False)  # ReportOptions' own --batch-size: given, it beats --config
    p.add_argument("--out", type=Path, default=Path("report"), metavar="DIR", help="output folder (default: ./report)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="preset: fewer paragraphs and steps per analysis, a first look in minutes (default: the full report, "
        "about 15 minutes on the testbed)",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="preset: the authors' code conventions, see the README's conventions table (default: the toolkit's)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute every step; results are still cached for next time (default: reuse cached steps)",
    )
    p.add_argument(
        "--formats",
        default=None,
        help="static image formats for figures/, any of png, svg, pdf; '' for none (default: png,svg; with --quick "
        "none, since exporting them is a sixth of its time: give --formats png,svg to have them)",
    )
    from interp.report.options import ReportOptions

    options_cli.add_option_flags(
        p,
        ReportOptions,
        notes={
            "nmem_max": "as locate-head; memorized, perturb, grad-map, scan and unlearn take a fixed EM (default: 10)",
            "probe": "interp unlearn probes 50 of each; fewer here keeps the whole pipeline's time down",
            "unlearn_steps": "the toolkit's, used with a calibrated rate; interp unlearn --steps defaults to the "
            "paper's 5, to go with its uncalibrated --lr",
        },
        title="report options (also settable with --config)",
    )
    p.set_defaults(run=run)


def report_options(args: argparse.Namespace):
    """Preset (--quick / --paper / default), then --config (the results.json of an earlier run reruns it), then the
    flags given: later wins."""
    from interp.report.options import ReportOptions

    if args.quick and args.paper:
        raise UserError("--quick and --paper are two presets: choose one (set sizes can be given as flags)")
    options = ReportOptions.quick() if args.quick else ReportOptions.paper() if args.paper else ReportOptions()
    merged = options.to_dict() | options_cli.given_options(args, ReportOptions)
    try:
        return ReportOptions.from_dict(merged)
    except UserError as e:  # name the flag beside the field
        raise UserError(
            re.sub(r"ReportOptions\.(\w+)", lambda m: f"{m.group(0)} (--{m.group(1).replace('_', '-')})", str(e))
        ) from None


def image_formats(args: argparse.Namespace) -> str:
    """The --formats given, else the preset's: PNG and SVG for a full report, none for --quick (a first look reads the
    interactive report.html; its static images are on request)."""
    if args.formats is not None:
        return args.formats
    return "" if args.quick else "png,svg"


def run(args: argparse.Namespace) -> int:
    options = report_options(args)
    from interp.report import default_steps, run_report, select_steps

    formats = tuple(f.strip() for f in image_formats(args).split(",") if f.strip())
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad:
        raise UserError(f"unknown image format(s) {', '.join(bad)}: use png, svg or pdf")
    steps = select_steps(options, default_steps())
    common.check_output_folder(args.out, "--out")
    start = time.perf_counter()
    model = common.model_from_args(args)
    paragraphs = common.paragraphs_from_args(args, model)
    source = str(args.paragraphs) if args.paragraphs else "the paragraph set shipped with the model"
    result = run_report(
        model,
        paragraphs,
        args.out,
        options=options,
        steps=steps,
        use_cache=not args.no_cache,
        paragraphs_source=source,
        image_formats=formats,
    )
    for name, c in result.cost().items():
        rate = f"  {c['gflops']:7.1f} GFLOP/s = {c['fraction_of_peak']:4.0%} of peak" if "fraction_of_peak" in c else ""
        print(f"  {name:<16} {c['seconds']:8.1f} s{'  (cached)' if c['cached'] else rate}")
    floor = sum(c.get("seconds_at_peak") or 0.0 for c in result.cost().values())
    print(
        f"  (float32 matmul peak of this machine, timed in this run: {result.peak_gflops} GFLOP/s; "
        f"this report's counted work at that peak: {floor:.0f} s)"
    )
    print(
        f"wrote {result.html}, {result.results_json} and {len(result.figures)} figure files "
        f"in {time.perf_counter() - start:.0f} s"
    )
    return 0
