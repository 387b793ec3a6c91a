"""Deprecated: the audit step moved to `interp.report.steps.audit` (this path is kept for one release)."""

from interp._moved import forward

_audit = forward(__name__, "interp.report.steps.audit")
_types = forward(__name__, "interp.report.types")


def __getattr__(name: str):
    return _types(name) if name == "Transient" else _audit(name)
