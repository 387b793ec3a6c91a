"""Deprecated: moved to `interp.locator.patching` (this path is kept for one release)."""

from interp._moved import forward

__getattr__ = forward(__name__, "interp.locator.patching")
