"""The types the report's steps, its sections and its runner share: a leaf that imports neither
`interp.report` nor `interp.views`, so either package can be imported first.

A step (`Step`) pairs an analysis of `StepInputs` with the view that renders its result as a `Section`
(text, `Table`s, figures); results are library results, `Bundle`s of several, `Skipped` with the reason,
or a `Transient` value handed to the next step. `interp.report.types` and `interp.views.report_html`
give the same names under their older paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from interp.io import to_jsonable

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from interp.backend import Model
    from interp.data import Paragraphs
    from interp.perturbation import PerturbationResult


@dataclass(frozen=True)
class Table:
    """A small table of numbers shown in the report (its values also go to results.json)."""

    caption: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Section:
    """One part of the report: what it shows (text), then tables, figures and circuitsvis views."""

    key: str
    title: str
    text: str = ""
    figures: Mapping[str, go.Figure] = field(default_factory=dict)
    views: Mapping[str, Any] = field(default_factory=dict)  # caption -> circuitsvis RenderedHTML
    tables: Sequence[Table] = ()
    notes: Sequence[str] = ()  # short findings computed from the numbers


@dataclass(frozen=True)
class StepInputs:
    """What a step's analysis sees: the model, every paragraph, the options, earlier results."""

    model: Model
    paragraphs: Paragraphs
    options: Any  # in a report: the ReportOptions its step declares
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
