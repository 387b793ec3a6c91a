"""The `interp` command: parse, call the library, print. User errors become one line and exit 2.

Imports are lazy: `interp --help`, a subcommand's parser and every argument error are answered before
torch or TransformerLens load; only the chosen command's module is imported, and it imports the
library inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from interp.errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "memorized": ("memorized", "EM / NLL of every paragraph and the MEM / NMEM split"),
    "testbed": ("testbed", "the bundled testbed model: build it from its seed"),
    "perturb": ("perturb", "replace prefix tokens one at a time: EM drop for MEM vs NMEM, editing targets"),
    "report": ("report", "run the whole pipeline and write report.html, results.json and figures"),
    "grad-map": ("grad_map", "gradient-norm maps per layer / component / head, MEM vs NMEM"),
    "scan": ("scan", "find the windows of a corpus the model recites; writes a --paragraphs file"),
    "unlearn": ("unlearn", "unlearn MEM paragraphs by masked fine-tuning or LoReFT; measure the collateral damage"),
    "restore": ("restore", "restore original activations / value vectors layer by layer into an unlearned model"),
    "audit": (
        "audit",
        "attack unlearned models (quantization, relearning, restoration, perturbed prefixes) with controls",
    ),
    "locate-head": (
        "locate_head",
        "rank heads by rare-token attention, gradients, attribution, patching, ablation and (on request) IG and "
        "learned masks",
    ),
    "validate-locator": (
        "validate_locator",
        "force paragraphs through known heads / neurons of a copy and see whether each locator method finds them",
    ),
}
"""Command name -> (module of interp.commands, one-line help). Each module has `configure(parser)`, which
adds the command's flags and sets `run`."""

BACKENDS = ("hooked", "bridge")  # interp.backend.BACKENDS, repeated here so that parsing never imports TransformerLens
ENV = "INTERP_BACKEND"  # interp.backend.ENV


def _installed_tl() -> str:
    """Which TransformerLens the default backend would use, read from package metadata (no import)."""
    try:
        v = version("transformer-lens")
    except PackageNotFoundError:
        return "TransformerLens is not installed"
    return f"transformer-lens {v} is installed: {'hooked' if int(v.split('.')[0]) < 4 else 'bridge'}"


class _Help(argparse.HelpFormatter):
    """Every flag's help ends with its default: flags whose help does not state one get it here."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if not action.option_strings or help == argparse.SUPPRESS or action.default is argparse.SUPPRESS:
            return help  # flags generated from an options dataclass state their default themselves
        if "default" in help or "(required" in help:
            return help
        if action.required:
            return f"{help} (required)"
        if isinstance(action, argparse._StoreTrueAction):
            return f"{help} (default: off)"
        if action.default is None:
            return f"{help} (default: none)"
        return f"{help} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument error is one line on stderr and exit code 2, like every other user error."""

    def error(self, message: str):
        command = self.prog.removeprefix("interp").strip()
        self.exit(2, f"interp: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None, *, full: bool = True) -> argparse.ArgumentParser:
    """The parser of every command (`full`), or of `command` alone with the others as one-line stubs."""
    parser = _Parser(
        prog="interp", description="Find where a language model stores text it recites.", formatter_class=_Help
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help=f"TransformerLens backend: hooked (HookedTransformer, transformer-lens<4) or bridge (TransformerBridge, "
        f"transformer-lens>=4) (default: ${ENV} when set, else the installed one; now {_installed_tl()})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
        if full or name == command:
            importlib.import_module(f"interp.commands.{module}").configure(p)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is one), else None."""
    words = iter(argv)
    for word in words:
        if word == "--backend":
            next(words, None)
        elif word in COMMANDS:
            return word
        elif not word.startswith("-"):
            return None
    return None


def _check_backend_env() -> None:
    """A bad INTERP_BACKEND is a user error, found before anything imports the backend."""
    asked = os.environ.get(ENV, "").strip().lower()
    if asked and asked not in BACKENDS:
        raise UserError(f"{ENV}={asked!r}: use one of {', '.join(BACKENDS)} (or leave it unset)")


def _switch_backend(wanted: str, argv: list[str] | None) -> None:
    """Run this command again in a fresh process with `wanted` as the backend (interp picks it at import)."""
    import interp.backend as backend

    if wanted == backend.NAME:
        return
    if not backend.available(wanted):
        raise UserError(f"--backend {wanted}: {backend.missing(wanted)}")
    if argv is not None:
        raise UserError(
            f"--backend {wanted} differs from the backend this process imported ({backend.NAME}): set "
            f"{ENV}={wanted} before importing interp"
        )
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "interp", *sys.argv[1:]], {**os.environ, ENV: wanted})


def _quiet_third_party() -> None:
    """Silence the `kernels` package's "Skipping publisher trust check ..." warnings (one per kernel, at every
    offline model load): interp loads local checkpoints offline on purpose, so they say nothing to act on."""
    import logging

    logging.getLogger("kernels").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    try:
        _check_backend_env()
        args = build_parser(_command_in(words), full=False).parse_args(argv)
        if args.backend:
            _switch_backend(args.backend, argv)
        _quiet_third_party()
        return args.run(args) or 0
    except UserError as exc:
        print(f"interp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
