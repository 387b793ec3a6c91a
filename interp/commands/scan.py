"""`interp scan`: find the paragraphs a model recites in a corpus; `interp scan merge`: combine shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.commands.common import add_model_args, model_from_args
from interp.commands.options_cli import add_option_flags, given_options, with_options
from interp.data import BATCH_SIZE
from interp.errors import UserError
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
    p.add_argument("--out", type=Path, default=None, help="output JSONL (default scan.jsonl, or scan.shardKofN.jsonl)")
    p.add_argument(
        "--shard", default=None, metavar="K/N", help="scan only the Kth of N deterministic parts of the corpus"
    )
    p.add_argument(
        "--boilerplate",
        action="append",
        default=None,
        metavar="REGEX",
        help="a boilerplate pattern (repeatable; replaces the default license/copyright patterns)",
    )
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="sequences per forward pass")
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan of --out")
    p.add_argument("--force", action="store_true", help="start again, replacing --out when done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_option_flags(
        p,
        ScanConfig,
        skip=("boilerplate_patterns", "group_tokens"),
        aliases={"--nmem": "n_controls"},
        title="what the scan looks for, and how (ScanConfig)",
    )
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
    given = given_options(args, ScanConfig)
    if args.boilerplate:
        given["boilerplate_patterns"] = tuple(args.boilerplate)
    return with_options(ScanConfig(), given)


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
