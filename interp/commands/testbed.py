"""`interp testbed build`: regenerate the bundled testbed (or its reference model) from its seed."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from interp.commands import common
from interp.errors import UserError

BUNDLED = Path(__file__).resolve().parent.parent / "testbed"
TESTBED_DIR = BUNDLED / "checkpoint"  # interp.models.TESTBED_DIR, without importing torch to parse
TESTBED_REFERENCE_DIR = BUNDLED / "reference"  # interp.models.TESTBED_REFERENCE_DIR


def configure(p) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = actions.add_parser(
        "build",
        formatter_class=p.formatter_class,
        help="train the testbed from its seed (resumes an interrupted build)",
        description="Train the testbed from its seed (resumes an interrupted build). The bundled checkpoint is "
        "replaced only with --force: pass --out DIR to build a copy elsewhere.",
    )
    b.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"output folder (default: the bundled one, {TESTBED_DIR}, or with --reference {TESTBED_REFERENCE_DIR}; "
        "a bundled checkpoint is replaced only with --force)",
    )
    b.add_argument("--force", action="store_true", help="replace the bundled checkpoint (default: refuse)")
    b.add_argument(
        "--quick", action="store_true", help="a tiny model on a corpus sample, for tests (well under a minute)"
    )
    b.add_argument(
        "--reference",
        action="store_true",
        help="build the reference model instead: the testbed retrained with some planted paragraphs left out "
        "(the same seed and data otherwise; about 35 minutes on 2 cores)",
    )
    b.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the data, the initialization and the training order (default: the bundled testbed's, 0)",
    )
    b.set_defaults(run=run_build)


def out_folder(args: argparse.Namespace) -> Path:
    """Where the build writes: --out, else the bundled folder, which is replaced only with --force."""
    if args.reference and (args.quick or args.seed is not None):
        raise UserError("--reference retrains the bundled testbed's own config and seed: drop --quick / --seed")
    out = args.out or (TESTBED_REFERENCE_DIR if args.reference else TESTBED_DIR)
    common.check_output_folder(out, "--out")
    bundled = out.resolve() in (TESTBED_DIR, TESTBED_REFERENCE_DIR)
    if bundled and (out / "config.json").exists() and not args.force:
        raise UserError(
            f"{out} holds the bundled checkpoint: pass --out DIR to build elsewhere, or --force to replace it"
        )
    return out


def run_build(args: argparse.Namespace) -> int:
    out = out_folder(args)
    from interp.testbed.build import QUICK, TestbedConfig, build_reference, build_testbed

    if args.reference:
        meta = build_reference(out)
    else:
        cfg = QUICK if args.quick else TestbedConfig()
        if args.seed is not None:
            cfg = replace(cfg, seed=args.seed)
        meta = build_testbed(out, cfg)
    print(
        json.dumps(
            {
                "out": str(out),
                "n_mem": meta["n_mem"],
                "fraction_once_em_le_10": meta["fraction_once_em_le_10"],
                "memorized_by_count": {
                    c: f"{r['n_memorized']}/{r['n']}" for c, r in meta["memorization_by_count"].items()
                },
                "position_robustness_share_kept": {
                    r["k"]: r["share_kept"] for r in meta["position_robustness"]["table"]
                },
                "planted_share": meta["data"]["planted_share"],
                "train_seconds": meta["training"]["train_seconds"],
                "wall_seconds": meta["training"]["wall_seconds"],
            },
            indent=1,
        )
    )
    return 0
