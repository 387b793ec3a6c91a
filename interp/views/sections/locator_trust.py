"""Section 7 of the report: how far to trust the locator on this model (the injection benchmark).

A view: results in, a `Section` out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.locator.validation import LocatorValidation
from interp.report_types import Section
from interp.views.locator import trust_section


def locator_trust_section(result: LocatorValidation, results: Mapping[str, Any]) -> Section:
    """The injection benchmark as section 7: each method's rank of heads whose answer is known."""
    return trust_section(result, title="7. How far to trust the locator on this model?")
