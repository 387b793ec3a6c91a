"""Deprecated: moved to `interp.locator.integrated_gradients` (this path is kept for one release)."""

from interp._moved import forward

__getattr__ = forward(__name__, "interp.locator.integrated_gradients")
