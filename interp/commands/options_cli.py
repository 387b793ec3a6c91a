"""Command-line flags generated from an options dataclass, so every default is written once.

`add_option_flags(parser, Options)` adds `--field-name` for every field (help from the field's
metadata, the default shown from the dataclass); `given_options(args, Options)` returns only the
fields the user set, to be applied over a preset with `dataclasses.replace`. Validation stays in
the dataclass (`__post_init__`), whose messages name the field.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import tomllib

from interp.errors import UserError

DEST = "option__"  # argparse destination prefix: keeps generated flags apart from a command's own


def _parser_for(annotation: Any, name: str):
    """A function str -> value for a field's type: int, float, str, bool, optional and tuple[str, ...]."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = type(None) in typing.get_args(annotation)
    base = args[0] if optional and len(args) == 1 else annotation

    def parse(text: str):
        if optional and text.lower() in ("none", "null", ""):
            return None
        origin = typing.get_origin(base)
        try:
            if origin is tuple:
                return tuple(x.strip() for x in text.split(",") if x.strip())
            if base is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--{name.replace('_', '-')}: cannot read {text!r} as {_type_name(annotation)}"
            ) from None

    return parse


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        return "a comma-separated list"
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def add_option_flags(
    parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (), title: str | None = None
) -> None:
    """One `--field-name VALUE` flag per field of `cls` (except `skip`), defaulting to 'not given'."""
    group = parser.add_argument_group(title or f"{cls.__name__} (defaults written once, in {cls.__module__})")
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        shown = ",".join(default) if isinstance(default, tuple) else default
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=DEST + f.name,
            default=argparse.SUPPRESS,
            type=_parser_for(hints[f.name], f.name),
            metavar=_type_name(hints[f.name]).upper().replace(" ", "_"),
            help=f"{f.metadata.get('help', '')} (default: {shown})",
        )


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The generated flags the user actually gave, by field name."""
    return {k[len(DEST) :]: v for k, v in vars(args).items() if k.startswith(DEST)}


def read_config(path: Path) -> dict[str, Any]:
    """Options from a JSON or TOML file. A results.json written by a run holds them under "options"."""
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"--config {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option names to values")
    if "options" in data and isinstance(data["options"], dict):
        data = data["options"]
    return data
