"""The `interp` command: parse, call the library, print. User errors become one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"interp.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except UserError as exc:
        print(f"interp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
