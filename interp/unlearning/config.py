"""The unlearning methods' settings, each default written once, in a module that imports nothing heavy: the
command line builds its parsers from these dataclasses without loading torch. Each name is re-exported where it
was always imported from (`interp.unlearning.masked.UnlearnConfig`, `interp.unlearning.reft.ReftConfig`, ...), and a method
that runs one imports the library when called, by name (`_library`): the library imports this module, so this
module imports none of it (no import cycle, tests/test_structure.py) and no torch.

- `UnlearnConfig`: one masked fine-tuning run (`interp.unlearning.masked`), and `SELECTIONS`, its weight masks;
- `MatchedForgetting`: how `unlearning_table` calibrates each row (`interp.unlearning.calibration`);
- `RelearnConfig`: the relearning attack (`interp.unlearning.relearning`);
- `ProxyConfig`: decoding-time unlearning (`interp.unlearning.proxy`);
- `ReftConfig`: one LoReFT run (`interp.unlearning.reft`);
- `METHODS`, `BASELINES`, `RETAIN_PER_RUN` and `check_training_settings`, shared with the training loop
  (`interp.unlearning.training`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from interp.constants import SCOPES, TESTBED_COMPANION
from interp.conventions import PAPER, TOOLKIT
from interp.errors import UserError
from interp.options import option

if TYPE_CHECKING:
    from interp.backend import Model
    from interp.data import Paragraphs
    from interp.unlearning.evaluation import Probe


def _library(module: str) -> ModuleType:
    """The library module that runs a config, imported by name when the run starts."""
    return importlib.import_module(module)


METHODS = ("unlearn", "edit", "ga", "graddiff", "npo", "decay")
"""unlearn = Eq. 3 (-w NLL(target) + KL on retain); edit = Eq. 4 (+NLL(new continuation) + KL);
ga = -NLL(target); graddiff = -NLL(target) + w NLL(retain); npo = negative preference optimisation;
decay = no loss at all: only the optimiser's weight decay moves the weights (the control that says how
much of a row's forgetting weight decay alone does at the same rate and steps)."""
BASELINES = ("ga", "graddiff", "npo")
"""The common unlearning baselines beside the paper's two objectives."""
RETAIN_PER_RUN = 10
"""NMEM paragraphs in each run's retain / KL term: the paper unlearns 1 MEM paragraph with 10 NMEM per run."""


def check_training_settings(method: str, *, lr: float, steps: int, weight_decay: float) -> None:
    """UserError unless `method` is known and the optimiser settings can train."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"learning rate must be a positive number, got {lr}")
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    if weight_decay < 0:
        raise UserError(f"weight decay must be >= 0, got {weight_decay}")


SELECTIONS = ("topk", "random", "random_matched", "all")


@dataclass(frozen=True)
class UnlearnConfig:
    """One masked fine-tuning run. Defaults are the paper's public code: top 0.1% of the contrastive
    objective's |gradient|, Adam lr 1e-5, 5 steps; weight decay is the toolkit's 0 (the paper's code: 1.0,
    coupled, `conventions("paper").weight_decay`; see interp.conventions)."""

    method: str = option(
        "unlearn", "unlearn = paper Eq. 3, edit = Eq. 4 (new continuation from prefix perturbation), ga, graddiff, npo"
    )
    select: str = option("topk", "weights to tune: top |gradient| fraction, random of that size (or matched), all")
    fraction: float = option(0.001, "fraction of weights for topk / random (0.001 = 0.1%)")
    scope: str = option("global", "rank all weights at once (global) or each parameter's (component)")
    layers: tuple[int, ...] | None = option(None, "only these layers, e.g. 0,1")
    components: tuple[str, ...] | None = option(None, "only these, e.g. mlp or attn or W_V,W_in")
    head: int | None = option(None, "keep only this head's slice of the attention weights")
    # PAPER: the one place the paper's rate (1e-5) and steps (5) are written
    lr: float = option(PAPER.unlearn_lr, "Adam learning rate (the paper's code)")
    steps: int = option(PAPER.unlearn_steps, "Adam steps (the paper's code)")
    weight_decay: float = option(TOOLKIT.weight_decay, "Adam (coupled) weight decay (the paper's code: 1.0)")
    nll_weight: float | None = option(
        None, "weight of the NLL term (None: 0.1 for Eq. 3, the paper's code; 1 for Eq. 4)"
    )
    retain_weight: float = option(1.0, "graddiff's weight on the retain NLL")
    npo_beta: float = option(0.1, "NPO's beta")
    seed: int = option(0, "seed of the random mask")
    decay_outside_mask: bool = option(
        False,
        "zero the gradient outside the mask instead of restoring those weights, so weight decay shrinks "
        "the unselected weights of masked tensors, as the paper's public code does",
    )

    def __post_init__(self) -> None:
        check_training_settings(self.method, lr=self.lr, steps=self.steps, weight_decay=self.weight_decay)
        if self.scope not in SCOPES:
            raise UserError(f"scope must be 'global' or 'component', not {self.scope!r}")
        if self.select not in SELECTIONS:
            raise UserError(f"unknown selection {self.select!r}: use one of {', '.join(SELECTIONS)}")
        if not 0 < self.fraction <= 1:
            raise UserError(f"fraction must be in (0, 1], got {self.fraction} (0.001 = the top 0.1%)")

    @property
    def label(self) -> str:
        pct = f"{100 * self.fraction:g}%"
        what = {
            "all": "all",
            "topk": f"top-{pct}",
            "random": f"random-{pct}",
            "random_matched": f"random-{pct} matched",
        }[self.select]
        where = "".join(
            [
                f" L{','.join(map(str, self.layers))}" if self.layers else "",
                f" {'+'.join(self.components)}" if self.components else "",
                f" head {self.head}" if self.head is not None else "",
            ]
        )
        if self.method == "decay":
            return f"decay only {what}{where} (no loss)"
        return f"{self.method} {what}{where}"

    def to_dict(self) -> dict:
        return {"kind": "weights", **asdict(self)}

    def run(
        self, model, targets, retain, *, edit_targets=None, probe=None, before=None
    ) -> interp.unlearning.masked.UnlearnResult:
        masked = _library("interp.unlearning.masked")
        return masked.unlearn(model, targets, retain, self, edit_targets=edit_targets, probe=probe, before=before)


TOLERANCE = 0.4
"""The search stops when the smallest rate known to reach the level is within a factor 1.4 of the largest
known not to: two halvings (in log-rate) of the grid's ~3x step, two runs per target more than the grid alone."""
STRATEGIES = ("predict", "bisect")
PROBE_POINTS = ("bracket", "every")
METRICS = ("em", "log10p")
"""What matched forgetting matches: every target's EM, or its log10 p (the probability that sampling reproduces
the continuation; a target at EM 0 may still be likely, and weight edits and decoding-time methods differ most there)."""


@dataclass(frozen=True)
class MatchedForgetting:
    """How `unlearning_table(calibrate=MatchedForgetting(...))` calibrates each row: `calibrate` with these
    options and the table's own targets, retain sets, edit targets and probes."""

    level: int | float | None = option(
        None,
        "the value every target must reach: its EM (None: the NMEM threshold, 10 of 50 tokens) or, with metric "
        "log10p, its log10 p (required, e.g. -20)",
    )
    tolerance: float = option(TOLERANCE, "stop when the rate is known within a factor 1 + this")
    strategy: str = option("predict", "predict (from the step each run reached the level) or bisect (the grid)")
    metric: str = option("em", "what every target must bring to the level: em or log10p")
    probe_points: str = option(
        "bracket",
        "the rates at which the probes (collateral damage) are scored: bracket (the rate chosen and the highest "
        "rate that did not reach the level; the table needs only the first) or every (every rate tried: the "
        "whole forgetting curve, a fifth more work)",
        choices=PROBE_POINTS,
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown calibration strategy {self.strategy!r}: use one of {', '.join(STRATEGIES)}")
        check_metric(self.metric, self.level)
        if self.probe_points not in PROBE_POINTS:
            raise UserError(f"unknown probe points {self.probe_points!r}: use one of {', '.join(PROBE_POINTS)}")

    def search(
        self,
        model: Model,
        targets: Paragraphs,
        retain: Paragraphs,
        config,
        *,
        edit_targets: Paragraphs | None = None,
        retain_per_run: int = RETAIN_PER_RUN,
        probe: Probe | None = None,
        on_try: Callable[[float, float], None] | None = None,
    ) -> interp.unlearning.calibration.Calibration:
        """`calibrate` with these options (see it for the arguments)."""
        return _library("interp.unlearning.calibration").calibrate(
            model,
            targets,
            retain,
            config,
            level=self.level,
            edit_targets=edit_targets,
            retain_per_run=retain_per_run,
            on_try=on_try,
            tolerance=self.tolerance,
            probe=probe,
            strategy=self.strategy,
            metric=self.metric,
            probe_points=self.probe_points,
        )


def check_metric(metric: str, level: float | int | None) -> None:
    """UserError unless `metric` is one of METRICS and has the level it needs."""
    if metric not in METRICS:
        raise UserError(f"unknown matched-forgetting metric {metric!r}: use one of {', '.join(METRICS)}")
    if metric == "log10p" and level is None:
        raise UserError(
            "matching on log10 p needs a level (e.g. -20: every target's continuation at most 1e-20 likely)"
        )


MATCHED = MatchedForgetting()
"""The defaults, read by `interp.unlearning.calibrate` too (each written once, above)."""


@dataclass(frozen=True)
class RelearnConfig:
    """Plain fine-tuning of every weight on text related to the targets but without their continuation:
    `data="prefix"` = the targets' prefixes alone, `"retain"` = the retain (NMEM) paragraphs."""

    steps: int = option(10, "Adam steps on the relearning text")
    lr: float = option(1e-4, "learning rate")
    data: str = option(
        "prefix", "relearning text: the targets' prefixes alone (prefix) or the retain NMEM paragraphs (retain)"
    )

    def __post_init__(self) -> None:
        if self.data not in ("prefix", "retain"):
            raise UserError(f"relearn data must be 'prefix' or 'retain', not {self.data!r}")
        check_training_settings("ga", lr=self.lr, steps=self.steps, weight_decay=0.0)


@dataclass(frozen=True)
class ProxyConfig:
    """Decoding-time unlearning: which small model, how it is unlearned, and the strength alpha.

    The small model is unlearned on all its weights by default: it is a stand-in whose only job
    is to produce the logit difference, so no localization is needed inside it."""

    small: str = TESTBED_COMPANION  # the small model's spec for `load_model` (the caller passes the model)
    unlearn: UnlearnConfig = UnlearnConfig(select="all", lr=1e-3, steps=10, weight_decay=0.0)
    alpha: float = option(1.0, "strength of the small model's logit difference (1: the proxy-tuning paper's)")

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise UserError(f"the proxy's alpha must be 0 or more, got {self.alpha}: change ProxyConfig.alpha")

    @property
    def label(self) -> str:
        return f"decoding-time alpha={self.alpha:g} ({self.unlearn.method} {self.small})"

    def to_dict(self) -> dict:
        return {"kind": "proxy", "small": self.small, "alpha": self.alpha, "unlearn": asdict(self.unlearn)}


@dataclass(frozen=True)
class ReftConfig:
    """One LoReFT unlearning run on layer `layer` (None: the middle layer) with a rank-`rank` subspace."""

    method: str = "unlearn"
    layer: int | None = option(None, "residual stream after this layer (None: the middle)")
    rank: int = option(4, "rank of the intervention")
    lr: float = 1e-3
    steps: int = 20
    weight_decay: float = 0.0
    nll_weight: float | None = None
    retain_weight: float = 1.0
    npo_beta: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_training_settings(self.method, lr=self.lr, steps=self.steps, weight_decay=self.weight_decay)
        if self.rank < 1:
            raise UserError(f"ReFT rank must be at least 1, got {self.rank}")

    @property
    def label(self) -> str:
        where = "" if self.layer is None else f" L{self.layer}"
        return f"{self.method} LoReFT r{self.rank}{where}"

    def to_dict(self) -> dict:
        return {"kind": "reft", **asdict(self)}

    def run(self, model, targets, retain, *, edit_targets=None, probe=None, before=None) -> interp.unlearning.reft.ReftResult:
        reft = _library("interp.unlearning.reft")
        return reft.reft_unlearn(model, targets, retain, self, edit_targets=edit_targets, probe=probe, before=before)
