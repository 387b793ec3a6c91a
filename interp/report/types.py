"""The types a report step and its section share: the step's inputs and declaration, and its results.

A step (`Step`) pairs an analysis of `StepInputs` with the view that renders its result; results are
library results, `Bundle`s of several, or `Skipped` with the reason. Steps (`interp.report.steps`),
their sections (`interp.views.sections`) and the runner (`interp.report.runner`) all import these
from here, and nothing here imports any of them: the report has no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from interp.backend import Model
from interp.data import Paragraphs
from interp.io import to_jsonable
from interp.perturbation import PerturbationResult
from interp.report.options import ReportOptions
from interp.views.report_html import Section


@dataclass(frozen=True)
class StepInputs:
    """What a step's analysis sees: the model, every paragraph, the options, earlier results."""

    model: Model
    paragraphs: Paragraphs
    options: ReportOptions | Any  # in a report: the options its step declares
    results: Mapping[str, Any]  # in a report: the results its step declares (`interp.report.runner.DeclaredResults`)


@dataclass(frozen=True)
class Step:
    """One analysis of the pipeline and the section of the report that shows it."""

    name: str
    analyse: Callable[[StepInputs], Any]  # returns a result with to_json()
    section: Callable[[Any, Mapping[str, Any]], Section]  # (result, all results so far) -> section
    options: tuple[str, ...] = ()  # the ReportOptions fields the result depends on
    depends: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bundle:
    """Several named results of one step."""

    parts: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.parts[name]

    def to_json(self) -> dict:
        return {name: result_json(part) for name, part in self.parts.items()}


@dataclass(frozen=True)
class Skipped:
    """A step that could not run on this model and data, and why (shown in the report)."""

    reason: str

    def to_json(self) -> dict:
        return {"skipped": self.reason}


class Transient:
    """A value handed from one step to the next in the same run but never cached (models, say): it
    pickles as empty, so a step restored from the cache holds `value = None`."""

    def __init__(self, value: Any = None):
        self.value = value

    def __reduce__(self):
        return (Transient, ())

    def to_json(self) -> str:
        return "kept in memory for the next step, not saved"


def result_json(result: Any) -> Any:
    """A step result as JSON: its `to_json()` when it has one, made JSON-safe."""
    if hasattr(result, "to_json"):
        return to_jsonable(result.to_json())
    return to_jsonable(result)


def perturbation_parts(result: Bundle) -> tuple[PerturbationResult, PerturbationResult]:
    """The MEM and the NMEM rows of the perturbation result."""
    k, every = result["n_mem"], result["all"]
    return every.select(torch.arange(k)), every.select(torch.arange(k, len(every.ids)))
