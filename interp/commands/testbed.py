"""`interp testbed build`: regenerate the bundled testbed from its seed."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from interp.errors import UserError
from interp.models import TESTBED_DIR


def register(sub) -> None:
    p = sub.add_parser("testbed", help="the bundled testbed model")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = actions.add_parser("build", help="train the testbed from its seed (resumes an interrupted build)")
    b.add_argument(
        "--out", type=Path, default=TESTBED_DIR, help=f"output folder (default: the bundled one, {TESTBED_DIR})"
    )
    b.add_argument(
        "--quick", action="store_true", help="a tiny model on a corpus sample, for tests (well under a minute)"
    )
    b.add_argument("--seed", type=int, default=None)
    b.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> int:
    from interp.testbed.build import QUICK, TestbedConfig, build_testbed

    cfg = QUICK if args.quick else TestbedConfig()
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} exists and is not a folder")
    meta = build_testbed(args.out, cfg)
    print(
        json.dumps(
            {
                "out": str(args.out),
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
