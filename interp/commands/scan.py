"""`interp scan`: find the paragraphs a model recites in a corpus; `interp scan merge`: combine shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.commands.common import add_model_args, model_from_args
from interp.data import BOILERPLATE_PATTERNS, DEFAULT_CONTINUATION_LEN, DEFAULT_PREFIX_LEN
from interp.errors import UserError
from interp.metrics import NMEM_MAX_EM
from interp.scan import OutputPaths, ScanConfig, merge_scans, parse_shard, resolve_corpus, scan_corpus


def register(sub) -> None:
    p = sub.add_parser(
        "scan",
        help="find the windows of a corpus the model recites; writes a --paragraphs file",
        description="Scan a corpus for windows of prefix + continuation tokens that the model completes word for "
        "word (EM = continuation length). By default a fast screen flags candidates and each is then "
        "scored exactly; --exact scores every window. `interp scan merge` combines --shard outputs.",
    )
    add_model_args(p)
    next(a for a in p._actions if a.dest == "model").required = False  # `scan merge` needs no model
    p.add_argument(
        "--corpus",
        nargs="+",
        default=None,
        metavar="PATH",
        help="text files, folders (files matching --glob) and .jsonl files (a 'text' or 'tokens' field a line)",
    )
    p.add_argument("--glob", default="**/*", help="files to take from corpus folders (default '**/*'; e.g. '**/*.py')")
    p.add_argument(
        "--prefix-len", type=int, default=DEFAULT_PREFIX_LEN, help=f"prefix tokens (default {DEFAULT_PREFIX_LEN})"
    )
    p.add_argument(
        "--continuation-len",
        type=int,
        default=DEFAULT_CONTINUATION_LEN,
        help=f"continuation tokens (default {DEFAULT_CONTINUATION_LEN})",
    )
    p.add_argument(
        "--stride",
        type=int,
        default=ScanConfig.stride,
        help=f"consider windows starting at multiples of this token offset (default {ScanConfig.stride})",
    )
    p.add_argument("--out", type=Path, default=None, help="output JSONL (default scan.jsonl, or scan.shardKofN.jsonl)")
    p.add_argument(
        "--shard", default=None, metavar="K/N", help="scan only the Kth of N deterministic parts of the corpus"
    )
    p.add_argument("--exact", action="store_true", help="score every window exactly (slow; no screening misses)")
    p.add_argument(
        "--screen-step",
        type=int,
        default=ScanConfig.screen_step,
        help="a screening chunk every this many tokens; each window is screened with at most step - 1 "
        f"tokens before it (default {ScanConfig.screen_step}; 1 = exhaustive)",
    )
    p.add_argument(
        "--screen-tolerance",
        type=int,
        default=ScanConfig.screen_tolerance,
        help="verify windows whose screened continuation has at most this many misses "
        f"(default {ScanConfig.screen_tolerance})",
    )
    p.add_argument(
        "--recall-sample",
        type=float,
        default=ScanConfig.recall_sample,
        help="screen mode: fraction of windows also scored exactly to measure the screen's recall "
        f"(default {ScanConfig.recall_sample})",
    )
    p.add_argument(
        "--recall-min-mem",
        type=int,
        default=ScanConfig.recall_min_mem,
        help=f"MEM windows the recall sample must hold before a recall is stated (default {ScanConfig.recall_min_mem})",
    )
    p.add_argument(
        "--nmem",
        type=int,
        default=ScanConfig.n_controls,
        help=f"NMEM controls to sample (default {ScanConfig.n_controls})",
    )
    p.add_argument("--nmem-max", type=int, default=NMEM_MAX_EM, help=f"NMEM: EM at most this (default {NMEM_MAX_EM})")
    p.add_argument("--intermediate", action="store_true", help="also write windows with NMEM < EM < full")
    p.add_argument("--no-filters", action="store_true", help="keep low-diversity and boilerplate windows")
    p.add_argument(
        "--min-unique",
        type=float,
        default=ScanConfig.min_unique,
        help=f"drop windows with a smaller fraction of distinct tokens (default {ScanConfig.min_unique})",
    )
    p.add_argument(
        "--boilerplate",
        action="append",
        default=None,
        metavar="REGEX",
        help="a boilerplate pattern (repeatable; replaces the default license/copyright patterns)",
    )
    p.add_argument("--no-merge", action="store_true", help="one record per memorized window instead of per span")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass")
    p.add_argument("--seed", type=int, default=ScanConfig.seed, help="seed of the NMEM sample and the recall sample")
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan of --out")
    p.add_argument("--force", action="store_true", help="start again, replacing --out when done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    actions = p.add_subparsers(dest="action", metavar="merge")
    m = actions.add_parser("merge", help="combine the outputs of --shard K/N scans")
    m.add_argument("inputs", nargs="+", type=Path, help="shard outputs (their .summary.json must sit beside them)")
    m.add_argument("--out", type=Path, required=True, help="merged JSONL")
    m.add_argument("--force", action="store_true", help="replace --out if it exists")
    m.add_argument("--partial", action="store_true", help="merge even if some shards are missing")
    m.set_defaults(run=run_merge)


def scan_config(args: argparse.Namespace) -> ScanConfig:
    """What the flags ask the scan to look for, and how."""
    return ScanConfig(
        prefix_len=args.prefix_len,
        continuation_len=args.continuation_len,
        stride=args.stride,
        exact=args.exact,
        screen_step=args.screen_step,
        screen_tolerance=args.screen_tolerance,
        nmem_max=args.nmem_max,
        n_controls=args.nmem,
        intermediate=args.intermediate,
        filters=not args.no_filters,
        min_unique=args.min_unique,
        boilerplate_patterns=tuple(args.boilerplate) if args.boilerplate else BOILERPLATE_PATTERNS,
        merge=not args.no_merge,
        recall_sample=args.recall_sample,
        recall_min_mem=args.recall_min_mem,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    if not args.model:
        raise UserError("interp scan needs --model (and --corpus)")
    if not args.corpus:
        raise UserError("interp scan needs --corpus PATH... (text files, folders, or .jsonl)")
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    shard = parse_shard(args.shard)
    config = scan_config(args)
    out = args.out or Path("scan.jsonl" if shard == (1, 1) else f"scan.shard{shard[0]}of{shard[1]}.jsonl")
    corpus = resolve_corpus(args.corpus, args.glob)
    status = OutputPaths(out).check(args.resume, args.force)  # refuse before the slow model load
    if status == "done":
        print(f"{out} is already complete (nothing to resume); pass --force to scan again")
        return 0
    model = model_from_args(args)
    summary = scan_corpus(
        model,
        corpus,
        out,
        config,
        shard=shard,
        resume=args.resume,
        force=args.force,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    for line in summary.lines():
        print(line)
    print(f"wrote {out} and {OutputPaths(out).summary}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    summary = merge_scans(args.inputs, args.out, force=args.force, partial=args.partial)
    for line in summary.lines():
        print(line)
    print(f"wrote {args.out} and {OutputPaths(args.out).summary}")
    return 0
