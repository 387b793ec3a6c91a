"""The `interp` command: parse, call the library, print. User errors become one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import interp.backend as backend
from interp.errors import UserError

COMMANDS = (
    "memorized",
    "testbed",
    "perturb",
    "report",
    "grad_map",
    "scan",
    "unlearn",
    "restore",
    "audit",
    "locate_head",
    "validate_locator",
)
"""Modules of interp.commands; each has `register(subparsers)` that sets `run` on its parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interp", description="Find where a language model stores text it recites.")
    parser.add_argument(
        "--backend",
        choices=backend.BACKENDS,
        default=None,
        help=f"TransformerLens backend: hooked (HookedTransformer, transformer-lens<4) or bridge (TransformerBridge, "
        f"transformer-lens>=4); default: what is installed (now: {backend.NAME}); the same as setting {backend.ENV}",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"interp.commands.{name}").register(sub)
    return parser


def _switch_backend(wanted: str, argv: list[str] | None) -> None:
    """Run this command again in a fresh process with `wanted` as the backend (interp picks it at import)."""
    if not backend.available(wanted):
        raise UserError(f"--backend {wanted}: {backend.missing(wanted)}")
    if argv is not None:
        raise UserError(
            f"--backend {wanted} differs from the backend this process imported ({backend.NAME}): set "
            f"{backend.ENV}={wanted} before importing interp"
        )
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "interp", *sys.argv[1:]], {**os.environ, backend.ENV: wanted})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.backend and args.backend != backend.NAME:
            _switch_backend(args.backend, argv)
        return args.run(args) or 0
    except UserError as exc:
        print(f"interp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
