"""`interp scan`: find the paragraphs a model recites in a corpus; `interp scan merge`: combine shards."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from interp.commands import common, options_cli
from interp.constants import BATCH_SIZE
from interp.errors import UserError
from interp.scan.config import ScanConfig
from interp.scan.corpus import parse_shard, resolve_corpus

BYTES_PER_TOKEN = 3  # a rough size of a token in text, to size the NMEM sample before anything is tokenized


def configure(p) -> None:
    p.description = (
        "Scan a corpus for windows of prefix + continuation tokens that the model completes word for "
        "word (EM = continuation length). By default a fast screen flags candidates and each is then "
        "scored exactly; --exact scores every window. `interp scan merge` combines --shard outputs."
    )
    common.add_model_args(p)
    next(a for a in p._actions if a.dest == "model").required = False  # `scan merge` needs no model
    p.add_argument(
        "--corpus",
        nargs="+",
        default=None,
        metavar="PATH",
        help="text files, folders (files matching --glob) and .jsonl files (a 'text' or 'tokens' field a line) "
        "(required, except for `scan merge`)",
    )
    p.add_argument("--glob", default="**/*", help="files to take from corpus folders, e.g. '**/*.py' (default: '**/*')")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="output JSONL (default: scan.jsonl, or scan.shardKofN.jsonl)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="scan only the Kth of N deterministic parts of the corpus (default: all)",
    )
    p.add_argument(
        "--boilerplate",
        action="append",
        default=None,
        metavar="REGEX",
        help="a boilerplate pattern, repeatable (default: license / copyright patterns; given ones replace them)",
    )
    p.add_argument(
        "--batch-size",
        type=common.positive_int,
        default=BATCH_SIZE,
        metavar="N",
        help=f"sequences per forward pass (default: {BATCH_SIZE})",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan of --out")
    p.add_argument("--force", action="store_true", help="start again, replacing --out when done")
    common.add_progress_arg(p)
    options_cli.add_alias(p, "--quiet", "--no-progress", switch=True)
    options_cli.add_option_flags(
        p,
        ScanConfig,
        skip=("boilerplate_patterns", "group_tokens"),
        config_also=("boilerplate_patterns", "group_tokens"),
        aliases={"--nmem": "n_controls"},
        notes={
            "nmem_max": options_cli.NMEM_NOTE,
            "n_controls": f"fewer on a small corpus: one per prefix + continuation tokens of text, taking about "
            f"{BYTES_PER_TOKEN} bytes a token",
        },
        title="what the scan looks for, and how",
    )
    p.set_defaults(run=run)
    actions = p.add_subparsers(dest="action", metavar="merge")
    m = actions.add_parser("merge", help="combine the outputs of --shard K/N scans", formatter_class=p.formatter_class)
    m.add_argument("inputs", nargs="+", type=Path, help="shard outputs (their .summary.json must sit beside them)")
    m.add_argument("--out", type=Path, required=True, help="merged JSONL")
    m.add_argument("--force", action="store_true", help="replace --out if it exists")
    m.add_argument("--partial", action="store_true", help="merge even if some shards are missing")
    m.set_defaults(run=run_merge)


def scan_config(args: argparse.Namespace, corpus_bytes: int | None = None) -> ScanConfig:
    """What the flags ask the scan to look for, and how. Unless --n-controls is given, the NMEM sample is sized to
    the corpus: at most one control per window's worth of text (`corpus_bytes`), so that it never costs more than
    about one more pass over the corpus."""
    given = options_cli.given_options(args, ScanConfig)
    if args.boilerplate:
        given["boilerplate_patterns"] = tuple(args.boilerplate)
    config = options_cli.with_options(ScanConfig(), given)
    if "n_controls" not in given and corpus_bytes is not None:
        fit = max(1, corpus_bytes // (BYTES_PER_TOKEN * config.window_len))
        config = replace(config, n_controls=min(config.n_controls, fit))
    return config


def run(args: argparse.Namespace) -> int:
    if not args.model:
        raise UserError("interp scan needs --model (and --corpus)")
    if not args.corpus:
        raise UserError("interp scan needs --corpus PATH... (text files, folders, or .jsonl)")
    shard = parse_shard(args.shard)
    out = args.out or Path("scan.jsonl" if shard == (1, 1) else f"scan.shard{shard[0]}of{shard[1]}.jsonl")
    common.check_output_file(out, "--out")
    corpus = resolve_corpus(args.corpus, args.glob)
    config = scan_config(args, corpus.size // shard[1])
    from interp.scan.engine import OutputPaths, scan_corpus

    status = OutputPaths(out).check(args.resume, args.force)  # refuse before the slow model load
    if status == "done":
        print(f"{out} is already complete (nothing to resume); pass --force to scan again")
        return 0
    model = common.model_from_args(args)
    summary = scan_corpus(
        model,
        corpus,
        out,
        config,
        shard=shard,
        resume=args.resume,
        force=args.force,
        batch_size=args.batch_size,
        progress=args.progress,
    )
    for line in summary.lines():
        print(line)
    print(f"wrote {out} and {OutputPaths(out).summary}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from interp.scan.engine import OutputPaths
    from interp.scan.merge import merge_scans

    summary = merge_scans(args.inputs, args.out, force=args.force, partial=args.partial)
    for line in summary.lines():
        print(line)
    print(f"wrote {args.out} and {OutputPaths(args.out).summary}")
    return 0
