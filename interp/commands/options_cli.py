"""Command-line flags generated from an options dataclass, so every default is written once.

`add_option_flags(parser, Options)` adds `--field-name` for every field (help from the field's
metadata, the default shown from the dataclass; a bool field also gets `--no-field-name`; a tuple field
takes its items space- or comma-separated, `--methods a b` or `--methods a,b`; a field declared with
`choices` rejects other values when the flag is read);
`given_options(args, Options)` returns only the fields the user set (in the `--config FILE` every such command
takes, then as flags: a flag beats the file), and `with_options(preset, given)` applies them over a preset with
`dataclasses.replace` (`options_from(args, preset)` does both for the preset's class);
`options_record(args, *options)` is what a command's --json output records under "options",
which --config reads back. Validation stays in the dataclass (`__post_init__`); `with_options` names the flag whose
value it rejects.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
import warnings
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from interp.errors import UserError

DEST = "option__"  # argparse destination prefix: keeps generated flags apart from a command's own
CONFIGURABLE = "option__configurable"
"""Where a command's arguments keep, per options class (by name), the fields its --config may set."""


def _base(annotation: Any) -> tuple[Any, bool]:
    """The field's type without `| None`, and whether None is allowed."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = type(None) in typing.get_args(annotation)
    if set(args) == {int, float}:
        return float, optional  # `int | float`: a number, read as a float
    return (args[0] if optional and len(args) == 1 else annotation), optional


def _parser_for(annotation: Any, choices: tuple[str, ...] | None = None, custom=None):
    """A function str -> value for a field's type: int, float, str, bool, optional and tuple[str | int, ...]
    (`custom` instead, where the field declares its own reader); `choices` are checked item by item."""
    base, optional = _base(annotation)

    def check(value):
        if choices is not None and value not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(choices)})")
        return value

    def parse(text: str):
        if optional and text.lower() in ("none", "null", ""):
            return None
        origin = typing.get_origin(base)
        if custom is not None:
            try:
                return custom(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        try:
            if origin is tuple:
                item = typing.get_args(base)[0]
                return tuple(check(item(x.strip())) for x in text.split(",") if x.strip())
            if base is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            return check(base(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"cannot read {text!r} as {_type_name(annotation)}") from None

    return parse


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        item = typing.get_args(annotation)[0]
        return "a comma-separated list" + (" of int" if item is int else "")
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _flag(name: str, prefix: str = "") -> str:
    return f"--{prefix}{name.replace('_', '-')}"


def _dest(cls: type, name: str) -> str:
    return f"{DEST}{cls.__name__}.{name}"


class _Items(argparse.Action):
    """A tuple field's items, given space- or comma-separated (or both): one flat tuple, or None."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if any(v is None for v in values):
            if len(values) > 1:
                raise argparse.ArgumentError(self, "'none' stands alone")
            setattr(namespace, self.dest, None)
            return
        setattr(namespace, self.dest, tuple(item for v in values for item in v))


SET_SIZE_NOTES = {
    "perturb": "the same cap as grad-map; smaller in locate-head (16) and validate-locator (8), whose methods cost "
    "a pass per head",
    "grad-map": "the same cap as perturb; smaller in locate-head (16) and validate-locator (8), whose methods cost "
    "a pass per head",
    "locate-head": "smaller than perturb's and grad-map's 32: patching and ablation run once per head",
    "validate-locator": "smaller than locate-head's 16: every injected head also trains a copy of the model",
}
"""Why --set-size, one meaning (a cap on the MEM and on the NMEM set), defaults differently per command."""

NMEM_NOTE = "interp report's and locate-head's default, none, scales 10 of 50 tokens to the continuation length"
"""Why --nmem-max is a fixed EM in most single commands and `none` in interp report and locate-head."""


class Deprecated(argparse.Action):
    """An old spelling of a flag: sets the new flag's destination (`const` for a switch), says which flag replaces
    it (a DeprecationWarning and one line on stderr, once per command line), and is hidden from --help."""

    def __init__(self, *args, new: str, **kwargs) -> None:
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(*args, **kwargs)
        self.new = new
        self.warned = False

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if not self.warned:
            self.warned = True
            note = f"{option_string} is deprecated: use {self.new} (the old spelling goes in the next release)"
            warnings.warn(note, DeprecationWarning, stacklevel=2)
            print(f"interp: note: {note}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_alias(parser: argparse.ArgumentParser, old: str, new: str, *, switch: bool = False, **kwargs) -> None:
    """Keep `old` working as a hidden, deprecated spelling of the flag `new` already added to `parser`."""
    action = next(a for a in parser._actions if new in a.option_strings)
    if switch:
        parser.add_argument(old, dest=action.dest, action=Deprecated, new=new, nargs=0, const=action.const)
    else:
        parser.add_argument(
            old, dest=action.dest, action=Deprecated, new=new, type=action.type, nargs=action.nargs, **kwargs
        )


def parse_head(text: str) -> tuple[int, int]:
    """An attention head as printed (`L1H6`) or as LAYER.HEAD (`1.6`) -> (layer, head)."""
    match = re.fullmatch(r"\s*(?:[Ll](\d+)[Hh](\d+)|(\d+)\.(\d+))\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"head {text!r}: write it as L1H6 or 1.6 (layer 1, head 6)")
    layer, head = (int(g) for g in match.groups() if g is not None)
    return layer, head


def _metavar(annotation: Any) -> str:
    """What a flag's value looks like, in words a user reads: N, X, TEXT; 'N|none' where None is allowed."""
    base, optional = _base(annotation)
    word = {int: "N", float: "X", str: "TEXT", bool: "BOOL"}.get(base, "VALUE")
    return f"{word}|none" if optional else word


def add_option_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    prefix: str = "",
    aliases: dict[str, str] | None = None,
    rename: dict[str, str] | None = None,
    notes: dict[str, str] | None = None,
    title: str = "options",
    config_also: tuple[str, ...] = (),
) -> None:
    """One `--{prefix}field-name VALUE` flag per field of `cls` (`only` these, less `skip`), defaulting to
    'not given'. `aliases` maps old flags (e.g. "--nmem") to the field they set, hidden and deprecated;
    `rename` gives a field another flag (its generated one kept as a deprecated alias); `notes` adds a
    command's own words to a field's help (e.g. why its default differs from another command's). The command's
    `--config FILE` (added with its first options class) may set the same fields, and `config_also` besides."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE",
            help="options from a JSON or TOML file (field names as keys), or what an earlier run wrote (its --json, "
            'a report\'s results.json), which records them under "options"; flags given as well override it '
            "(default: none)",
        )
    flagged = tuple(f.name for f in fields(cls) if f.name not in skip and (only is None or f.name in only))
    configurable = parser.get_default(CONFIGURABLE) or {}
    parser.set_defaults(**{CONFIGURABLE: {**configurable, cls.__name__: flagged + config_also}})
    group = parser.add_argument_group(title)
    aliases = dict(aliases or {})
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        flag, dest = _flag(f.name, prefix), _dest(cls, f.name)
        if rename and f.name in rename:
            aliases[flag], flag = f.name, rename[f.name]
        choices = f.metadata.get("choices")
        kind = dict(type=_parser_for(hints[f.name], choices, f.metadata.get("parse")), default=argparse.SUPPRESS)
        listed = f"; one or more of {', '.join(choices)}" if choices and _is_tuple(hints[f.name]) else ""
        listed = listed or (f"; one of {', '.join(choices)}" if choices else "")
        note = f"; {notes[f.name]}" if notes and f.name in notes else ""
        shown = "none" if shown is None else shown
        help = f"{f.metadata.get('help', '')} (default: {shown}{listed}){note}".replace("%", "%%")
        if hints[f.name] is bool:
            group.add_argument(flag, dest=dest, nargs="?", const=True, metavar="BOOL", help=help, **kind)
            group.add_argument(
                _flag("no_" + f.name, prefix),
                dest=dest,
                action="store_false",
                default=argparse.SUPPRESS,
                help=f"same as {flag} false",
            )
        elif _is_tuple(hints[f.name]) and "parse" not in f.metadata:
            group.add_argument(flag, dest=dest, nargs="+", action=_Items, metavar="ITEM", help=help, **kind)
        else:
            metavar = "VALUE" if "parse" in f.metadata else _metavar(hints[f.name])
            group.add_argument(flag, dest=dest, metavar=metavar, help=help, **kind)
        for old, name in aliases.items():
            if name == f.name:
                group.add_argument(old, dest=dest, action=Deprecated, new=flag, **kind)


def _is_tuple(annotation: Any) -> bool:
    return typing.get_origin(_base(annotation)[0]) is tuple


def given_options(args: argparse.Namespace, cls: type, *, config: bool = True) -> dict[str, Any]:
    """The fields of `cls` the user set, by name: in the --config file (unless `config` is false), then as flags
    generated from `cls` (a flag beats the file)."""
    start = _dest(cls, "")
    flags = {k[len(start) :]: v for k, v in vars(args).items() if k.startswith(start)}
    return (config_options(args, cls) if config else {}) | flags


def config_options(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` the --config file sets (none without --config). A command with one options class reads
    its fields at the top level; one with several, a mapping per class name (as `options_record` writes them)."""
    path = getattr(args, "config", None)
    configurable: dict[str, tuple[str, ...]] = getattr(args, CONFIGURABLE, None) or {}
    if path is None or cls.__name__ not in configurable:
        return {}
    data = read_config(path)
    sections = {cls.__name__: data} if len(configurable) == 1 else data
    unknown = sorted(set(sections) - set(configurable))
    if unknown:
        raise UserError(
            f"--config {path}: unknown section(s) {', '.join(unknown)}; the sections are {', '.join(configurable)}"
        )
    section = sections.get(cls.__name__, {})
    if not isinstance(section, dict):
        raise UserError(f"--config {path}: {cls.__name__} must map option names to values")
    unknown = sorted(set(section) - set(configurable[cls.__name__]))
    if unknown:
        command = getattr(args, "command", None) or "command"
        what = command if len(configurable) == 1 else f"{command} {cls.__name__}"
        raise UserError(
            f"--config {path}: unknown {what} option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(sorted(configurable[cls.__name__]))}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
    hints = typing.get_type_hints(cls)
    wrong = [k for k, v in values.items() if k in hints and not _fits(v, hints[k])]
    if wrong:
        raise UserError(
            f"--config {path}: " + "; ".join(f"{k} must be {_type_name(hints[k])}, got {values[k]!r}" for k in wrong)
        )
    return values


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a value read from a --config file has a field's type (a type this module cannot read: yes)."""
    base, optional = _base(annotation)
    if value is None:
        return optional
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        return isinstance(value, tuple) and all(_fits(v, item) for v in value)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base in (int, str, bool):
        return isinstance(value, base) and (base is bool or not isinstance(value, bool))
    return True


def options_record(args: argparse.Namespace, *options: Any) -> dict[str, Any]:
    """The fields of `options` that --config may set, as a command's --json output records them under "options":
    at the top level for a command with one options class, else a mapping per class name."""
    configurable: dict[str, tuple[str, ...]] = getattr(args, CONFIGURABLE)
    record = {type(o).__name__: {name: getattr(o, name) for name in configurable[type(o).__name__]} for o in options}
    return next(iter(record.values())) if len(configurable) == 1 else record


def options_from(args: argparse.Namespace, preset: Any) -> Any:
    """`preset` with the fields of its class that the user set (--config, then flags) laid over it."""
    return with_options(preset, given_options(args, type(preset)))


def with_options(preset: Any, given: dict[str, Any], *, prefix: str = "") -> Any:
    """`preset` with the `given` fields replaced; the message of a value its `__post_init__` rejects names the flag."""
    try:
        return replace(preset, **given)
    except UserError as e:
        for name, value in given.items():
            try:
                replace(preset, **{name: value})
            except UserError as alone:
                flag = _flag(name, prefix)
                if str(alone) == str(e) and flag not in str(e):
                    raise UserError(f"{flag}: {e}") from None
        raise


def read_config(path: Path) -> dict[str, Any]:
    """Options from a JSON or TOML file. A command's --json output (a report's results.json) holds them under
    "options", a scan's summary under "config"."""
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"--config {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option names to values")
    for key in ("options", "config"):
        if isinstance(data.get(key), dict):
            return data[key]
    return data
