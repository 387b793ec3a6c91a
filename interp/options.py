"""`option(default, help)`: a dataclass field whose help text the command-line flags generated from it show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any


def option(
    default: Any, help: str, *, choices: tuple[str, ...] | None = None, parse: Callable[[str], Any] | None = None
) -> Any:
    """A field defaulting to `default`; `help` is what `interp.commands.options_cli` shows for its flag.

    `choices`: the values a str field (or each item of a tuple field) may take, checked when the flag is read.
    `parse`: reads the flag's text when the field's type alone cannot (e.g. a rate that may also be 'auto')."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if parse is not None:
        metadata["parse"] = parse
    return field(default=default, metadata=metadata)
