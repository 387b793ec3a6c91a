"""`option(default, help)`: a dataclass field whose help text the command-line flags generated from it show."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(default: Any, help: str) -> Any:
    """A field defaulting to `default`; `help` is what `interp.commands.options_cli` shows for its flag."""
    return field(default=default, metadata={"help": help})
