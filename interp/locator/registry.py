"""Every locator method, registered once: its name, the units it scores, whether it runs by default, and its runner.

The method names of the options (interp.locator.options), the dispatch of `unit_method`, the loop of
`locate_memorization_head` and the head views all read this table, so a method is added by its function in its
family's module and one `register(Method(...))` here (or by the family module itself). The runner is a
"module:function" string resolved when the method runs, so this module imports nothing heavy and
`interp locate-head --help` stays torch-free; a test may register a callable and `unregister` it afterwards.

A runner takes one `interp.locator.units.MethodCall` and returns `UnitScores`. The head methods without a
runner (rare_token, gradient, attribution, patching) share the corrupted run, the attribution screen or the
wide paragraph sets, and `locate_memorization_head` computes them itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    """One locator method.

    `units`: the units it scores ("head", "neuron"); `default`: the units whose locator runs it by default;
    `run`: its runner ("module:function" or a callable; None: computed by `locate_memorization_head`);
    `screened`: an exact per-head intervention, run only on the attribution screen's candidates;
    `figure`: the head views draw its scores as a heatmap; `column`: its score gets a column of that name in
    the head table (HeadRanking.head_table and its views), after the columns that table has always had
    (rare_token_tau, gradient_score, ablation_effect, patching_effect).
    """

    name: str
    units: tuple[str, ...]
    default: tuple[str, ...] = ()
    run: str | Callable[..., Any] | None = None
    screened: bool = False
    figure: bool = False
    column: str | None = None

    def runner(self) -> Callable[..., Any]:
        """The runner, imported on first use."""
        if self.run is None or callable(self.run):
            return self.run
        module, name = self.run.split(":")
        return getattr(importlib.import_module(module), name)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method (after those registered before it); its name must be new."""
    if method.name in METHODS:
        raise ValueError(f"locator method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a registered method (tests that register a toy one)."""
    del METHODS[name]


def names(unit: str) -> tuple[str, ...]:
    """The methods that score `unit` ("head" or "neuron"), in registration order."""
    return tuple(m.name for m in METHODS.values() if unit in m.units)


def defaults(unit: str) -> tuple[str, ...]:
    """The methods the locator of `unit` runs by default."""
    return tuple(m.name for m in METHODS.values() if unit in m.default)


def methods(unit: str) -> tuple[Method, ...]:
    """The registered methods that score `unit`."""
    return tuple(m for m in METHODS.values() if unit in m.units)


_GRADIENTS = "interp.locator.gradient_scores:run_variant"
_ABLATION = "interp.locator.ablation:run_ablation"
HEAD, NEURON, BOTH = ("head",), ("neuron",), ("head", "neuron")

for _method in (
    Method("rare_token", HEAD, HEAD),
    Method("gradient", HEAD, HEAD),
    Method("attribution", HEAD, HEAD),
    Method("patching", HEAD, HEAD, screened=True),
    Method("activation", NEURON, NEURON, run="interp.locator.ranking:run_activation"),
    Method("gradient_l2", BOTH, run=_GRADIENTS),
    Method("grad_x_weight", BOTH, run=_GRADIENTS),
    Method("fisher", BOTH, run=_GRADIENTS),
    Method("perturbed_gradient", BOTH, run=_GRADIENTS),
    Method("ablation", BOTH, HEAD, run=_ABLATION, screened=True, figure=True),
    Method("zero_out", BOTH, NEURON, run=_ABLATION, screened=True, figure=True),
    Method("integrated_gradients", BOTH, NEURON, run="interp.locator.integrated_gradients:run", figure=True),
    Method("hard_concrete", BOTH, NEURON, run="interp.locator.mask_learning:run_hard_concrete", figure=True),
    Method("slimming", BOTH, NEURON, run="interp.locator.mask_learning:run_slimming", figure=True),
):
    register(_method)
