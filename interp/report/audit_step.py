"""Deprecated: the audit step is `interp.report.steps.audit` (and `Transient` is in `interp.report.types`).

Kept one release so that older scripts keep working; each name warns once on use."""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = {"Transient": "interp.report.types"}


def __getattr__(name: str) -> Any:
    import importlib

    home = _MOVED.get(name, "interp.report.steps.audit")
    value = getattr(importlib.import_module(home), name)
    warnings.warn(
        f"interp.report.audit_step.{name} moved to {home}.{name}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
