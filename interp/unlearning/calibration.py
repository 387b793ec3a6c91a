"""Unlearning methods compared at matched forgetting.

A comparison of methods at one learning rate measures the learning rate: top-0.1% may forget
nothing at a rate where all-weights fine-tuning wrecks the model. `calibrate` finds, for each
configuration (steps fixed), the smallest learning rate at which EVERY target's EM falls to a stated
level (default: the NMEM threshold, EM <= 10 of 50): a bisection on a log grid brackets it, then a
bisection in log-rate narrows the bracket until its two ends are within a factor `1 + tolerance`.
A rate whose loss diverges (non-finite) is recorded as diverged and bounds the search from above.

The default search (`strategy="predict"`) needs about half the runs: every run also scores its target after each
step, so a run that reaches the level early says how much lower a rate could be (Adam moves each weight by about
the rate per step, so a level first held from step s of n suggests about s/n of the rate). The next rate tried is
that prediction (with a margin), never closer than a factor `1 + tolerance` to a rate already known to reach it;
the search ends under the same rule as the bisection (`strategy="bisect"`, the grid then log-rate halving): the
chosen rate reached the level on every target and one within a factor `1 + tolerance` below it did not. So both
searches certify the same thing; they may choose rates that differ within the tolerance. Configurations that
cannot report steps (LoReFT, decoding-time) are bisected.

Bisection assumes forgetting grows with the rate; `Calibration.non_monotone` lists, among the rates
tried, every target whose EM at a higher rate exceeds its EM at a lower one, so a trace that breaks
the assumption is shown, not hidden. Given probes, every rate tried is scored on them too (in the same
batched pass as the targets), so each method's search is also its forgetting curve: collateral damage
against target EM along the whole trace (`interp.views.unlearning.figure_forgetting_curves`); the table
at matched forgetting is one point of it. `MatchedForgetting` holds the search's options, for
`unlearning_table` to calibrate every row with its own targets, retain sets and probes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from statistics import fmean

from interp.backend import Model
from interp.data import Paragraphs
from interp.errors import UserError
from interp.io import float_from_json
from interp.memorization import mem_nmem_thresholds
from interp.metrics import score_paragraphs
from interp.unlearning.config import (  # noqa: F401 (public names kept here)
    MATCHED,
    METRICS,
    PROBE_POINTS,
    STRATEGIES,
    TOLERANCE,
    MatchedForgetting,
    check_metric,
)
from interp.unlearning.evaluation import Probe, evaluate
from interp.unlearning.masked import UnlearnConfig, select_weights, unlearn
from interp.unlearning.training import RETAIN_PER_RUN, Diverged

LR_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
PREDICTION_MARGIN = 1.2
"""The predicted rate is raised by this factor so that it usually reaches the level (a run that does not still
bounds the search from below)."""


@dataclass(frozen=True)
class TracePoint:
    """One rate tried: each target's EM after its own run and, with probes, the collateral scores averaged
    over the runs (`interp.unlearning.COLUMNS`). `diverged`: a run's loss became non-finite (no scores).
    `settled`: per target, the first step from which its EM stayed at or below the level to the end (None:
    above it at the end), when the run scored its target after every step (the predicting search)."""

    lr: float
    target_em: tuple[float, ...]
    diverged: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    settled: tuple[int | None, ...] = ()
    target_log10p: tuple[float, ...] = ()

    @property
    def max_em(self) -> float:
        return max(self.target_em) if self.target_em else float("nan")

    def worst(self, metric: str = "em") -> float:
        """The largest target value of `metric` (em or log10p): the target furthest from forgotten."""
        values = self.target_em if metric == "em" else self.target_log10p
        return max(values) if values else float("nan")

    @property
    def mean_em(self) -> float:
        return fmean(self.target_em) if self.target_em else float("nan")

    def to_json(self) -> dict:
        return {
            "lr": self.lr,
            "diverged": self.diverged,
            "target_em": self.mean_em,
            "target_em_per_target": list(self.target_em),
            "max_target_em": self.max_em,
            **({"target_log10p_per_target": list(self.target_log10p)} if self.target_log10p else {}),
            **({"settled_step": list(self.settled)} if self.settled else {}),
            **({"scores": self.scores} if self.scores else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> TracePoint:
        """The point `to_json` wrote (a null EM, log10 p or score, a non-finite one, back as NaN); the mean and the
        largest target EM written beside them are recomputed."""
        return cls(
            float_from_json(data["lr"]),
            tuple(float_from_json(e) for e in data["target_em_per_target"]),
            data["diverged"],
            {k: float_from_json(v) for k, v in data.get("scores", {}).items()},
            tuple(data.get("settled_step", ())),
            tuple(float_from_json(v) for v in data.get("target_log10p_per_target", ())),
        )


@dataclass(frozen=True)
class Calibration:
    """One configuration's search: every rate tried (`points`, ascending) and the rate chosen, the smallest
    tried at which every target's EM is <= `level` (`reached`), else the largest rate tried that neither
    reached it nor diverged. `trace` = (lr, mean target EM) per point, kept for older callers."""

    label: str
    level: float
    trace: tuple[tuple[float, float], ...]
    lr: float
    reached: bool
    grid: tuple[float, ...] = LR_GRID
    points: tuple[TracePoint, ...] = ()
    tolerance: float = TOLERANCE
    criterion: str = "every target"
    strategy: str = "bisect"
    metric: str = "em"
    runs: tuple = field(default=(), repr=False, compare=False)
    """The chosen rate's run per target (UnlearnResult / ReftResult, edited models included), for
    `unlearning_table` to use instead of training them again; empty when that rate diverged. The table keeps
    the calibration without them (`without_runs`)."""

    def without_runs(self) -> Calibration:
        return replace(self, runs=())

    @property
    def chosen(self) -> TracePoint | None:
        return next((p for p in self.points if p.lr == self.lr), None)

    @property
    def diverged_lrs(self) -> tuple[float, ...]:
        return tuple(p.lr for p in self.points if p.diverged)

    @property
    def bracket(self) -> tuple[float | None, float | None]:
        """(largest rate tried that did not reach the level, smallest that did); None where there is none."""
        below = [p.lr for p in self.points if not p.diverged and p.worst(self.metric) > self.level]
        above = [p.lr for p in self.points if not p.diverged and p.worst(self.metric) <= self.level]
        return (max(below) if below else None, min(above) if above else None)

    @property
    def non_monotone(self) -> tuple[dict, ...]:
        """Targets whose EM at a higher rate tried exceeds their lowest EM at any lower rate tried (bisection
        assumes this never happens; only the rates tried can show it)."""
        found = []
        scored = [p for p in self.points if not p.diverged]
        for t in range(len(scored[0].target_em) if scored else 0):
            best = scored[0]
            for p in scored[1:]:
                if p.target_em[t] > best.target_em[t]:
                    low, high = (best.lr, best.target_em[t]), (p.lr, p.target_em[t])
                    found.append(
                        {"target": t, "lr_low": low[0], "em_low": low[1], "lr_high": high[0], "em_high": high[1]}
                    )
                elif p.target_em[t] < best.target_em[t]:
                    best = p
        return tuple(found)

    def describe(self) -> str:
        point = self.chosen
        ems = ", ".join(f"{e:.0f}" for e in point.target_em) if point and point.target_em else "-"
        low, high = self.bracket
        parts = []
        if self.reached:
            within = (
                f"not at {low:.2g}, within a factor {self.lr / low:.2f}"
                if low is not None
                else "the smallest rate tried: a smaller one may also reach it"
            )
            if self.metric == "em":
                parts.append(f"every target EM <= {self.level:g} at lr {self.lr:.2g} (targets' EM {ems}; {within})")
            else:
                log10p = ", ".join(f"{v:.1f}" for v in point.target_log10p) if point else "-"
                parts.append(
                    f"every target log10 p <= {self.level:g} at lr {self.lr:.2g} (targets' log10 p {log10p}, EM "
                    f"{ems}; {within})"
                )
        elif point is not None and point.diverged:
            parts.append(f"not reached: the loss diverged at every rate tried, down to lr {self.lr:.2g}")
        else:
            parts.append(f"not reached at lr <= {self.lr:.2g} (targets' EM {ems} there)")
        if self.diverged_lrs:
            parts.append(f"loss diverged at lr {', '.join(f'{lr:.2g}' for lr in self.diverged_lrs)}")
        bad = self.non_monotone
        if bad:
            b = bad[0]
            parts.append(
                f"NON-MONOTONE: {len(bad)} case(s) of a target's EM rising with the rate (e.g. target {b['target']}: "
                f"EM {b['em_low']:.0f} at lr {b['lr_low']:.2g}, {b['em_high']:.0f} at lr {b['lr_high']:.2g})"
            )
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "level": self.level,
            "metric": self.metric,
            "criterion": self.criterion,
            "lr": self.lr,
            "reached": self.reached,
            "grid": list(self.grid),
            "tolerance": self.tolerance,
            "strategy": self.strategy,
            "bracket": list(self.bracket),
            "diverged_lrs": list(self.diverged_lrs),
            "non_monotone": list(self.non_monotone),
            "trace": [p.to_json() for p in self.points],
        }

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        """The search `to_json` wrote: its points, with `trace` taken from them as `calibrate` takes it; the bracket,
        diverged rates and non-monotone targets written beside them are recomputed. The runs are not written: they
        come back empty, as `without_runs` leaves them."""
        points = tuple(TracePoint.from_json(p) for p in data["trace"])
        return cls(
            data["label"],
            float_from_json(data["level"]),
            _trace(points),
            float_from_json(data["lr"]),
            data["reached"],
            tuple(data["grid"]),
            points,
            data["tolerance"],
            data["criterion"],
            data["strategy"],
            data["metric"],
        )


def _trace(points: Iterable[TracePoint]) -> tuple[tuple[float, float], ...]:
    """`Calibration.trace` of its points: (lr, mean target EM) per point."""
    return tuple((p.lr, p.mean_em) for p in points)


def calibrate(
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    config,
    *,
    level: float | int | None = None,
    lrs: Sequence[float] = LR_GRID,
    edit_targets: Paragraphs | None = None,
    retain_per_run: int = RETAIN_PER_RUN,
    on_try: Callable[[float, float], None] | None = None,
    tolerance: float = MATCHED.tolerance,
    probe: Probe | None = None,
    strategy: str = MATCHED.strategy,
    metric: str = MATCHED.metric,
    probe_points: str = MATCHED.probe_points,
) -> Calibration:
    """The smallest learning rate at which `config` (UnlearnConfig or ReftConfig) brings EVERY target's EM to
    at most `level`, each target unlearned in its own run with its own `retain_per_run` retain paragraphs, as
    `unlearning_table` runs them: a bisection on the ascending grid `lrs`, then in log-rate between the two
    grid rates that bracket it until they are within a factor `1 + tolerance`. `level` defaults to the NMEM
    threshold for the targets' continuation length. A rate whose loss diverges counts as an upper bound. With
    `probe`, the probes are scored at the rate chosen and the highest rate tried that did not reach the level
    (`probe_points="bracket"`: the chosen rate's runs are the table's, so its scores are the same as when every
    run is scored; the curve has those two points), or at every rate tried (`"every"`: the whole forgetting
    curve, about a fifth more work). Weight masks are chosen
    once per target (they do not depend on the rate). `on_try(lr, mean target EM)` is called after each
    rate (nan when it diverged). `strategy`: "predict" (see the module docstring; weight-editing configs) or
    "bisect". `metric="log10p"`: every target's log10 p must fall to `level` instead of its EM (the level is then
    required). `model` is not changed."""
    check_metric(metric, level)
    if probe_points not in PROBE_POINTS:
        raise UserError(f"unknown probe points {probe_points!r}: use one of {', '.join(PROBE_POINTS)}")
    if strategy not in STRATEGIES:
        raise UserError(f"unknown calibration strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    lrs = sorted(lrs)
    if not lrs or lrs[0] <= 0:
        raise UserError("the learning-rate grid must hold positive rates")
    if not tolerance > 0:
        raise UserError(
            f"the calibration tolerance must be positive (0.4 = rates within a factor 1.4), got {tolerance}"
        )
    if len(retain) < retain_per_run * len(targets):
        raise UserError(
            f"{len(targets)} targets x {retain_per_run} retain paragraphs need {retain_per_run * len(targets)} "
            f"retain (NMEM) paragraphs, got {len(retain)}"
        )
    if level is None:
        level = mem_nmem_thresholds(targets.continuation_len)[1]
    runs = []
    for i in range(len(targets)):
        target = targets.select([i])
        edit = edit_targets.select([i]) if edit_targets is not None else None
        kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
        mask = (
            select_weights(model, target, kept, config, edit_targets=edit)
            if isinstance(config, UnlearnConfig)
            else None
        )
        runs.append((target, edit, kept, mask, evaluate(model, target, None, edit_targets=edit)))
    tried: dict[float, TracePoint] = {}
    kept_runs: dict[float, tuple] = {}  # the runs of the rates the probes would be scored at if the search stopped now

    predicting = strategy == "predict" and isinstance(config, UnlearnConfig)
    scored_along = probe if probe_points == "every" else None  # the probe each run scores itself

    def attempt(lr: float) -> TracePoint:
        trial = replace(config, lr=lr)
        ems, log10ps, summaries, results, settled = [], [], [], [], []
        try:
            for target, edit, kept, mask, before in runs:
                along: list[float] = []  # the target's EM after every step (predicting search)
                if mask is not None:
                    result = unlearn(
                        model,
                        target,
                        kept,
                        trial,
                        edit_targets=edit,
                        mask=mask,
                        before=before,
                        probe=scored_along,
                        on_step=(lambda m, t=target, a=along: a.append(_score(m, t, metric))) if predicting else None,
                    )
                else:
                    result = trial.run(model, target, kept, edit_targets=edit, before=before, probe=scored_along)
                ems.append(float(result.after.target_em.float().mean()))
                log10ps.append(float(result.after.target_log10p.double().mean()))
                summaries.append(result.after.summary())
                results.append(result)
                settled.append(_settled_step(along, level))
        except Diverged:
            point = TracePoint(lr, (), diverged=True)
        else:
            scores = _mean_scores(summaries) if scored_along is not None else {}
            point = TracePoint(
                lr,
                tuple(ems),
                scores=scores,
                settled=tuple(settled) if predicting else (),
                target_log10p=tuple(log10ps),
            )
            kept_runs[lr] = tuple(results)
        tried[lr] = point
        wanted = _probe_rates(tried.values(), level, metric, scored_along is None and probe is not None)
        for other in [r for r in kept_runs if r not in wanted]:
            del kept_runs[other]  # at most three rates' edited models are held at once
        if on_try is not None:
            on_try(lr, point.mean_em)
        return point

    def stops(point: TracePoint) -> bool:  # reached, or diverged: the rate sought is not above it
        return point.diverged or point.worst(metric) <= level

    if predicting:
        _predicting_search(attempt, stops, lrs, tolerance, config.steps)
    else:
        _bisection(attempt, stops, lrs, tolerance)
    if probe is not None and scored_along is None:
        for lr in _probe_rates(tried.values(), level, metric, True) & kept_runs.keys():
            scored = tuple(_with_probe(result, run[0], run[1], probe) for result, run in zip(kept_runs[lr], runs))
            kept_runs[lr] = scored
            tried[lr] = replace(tried[lr], scores=_mean_scores([r.after.summary() for r in scored]))
    points = tuple(tried[lr] for lr in sorted(tried))
    reached = any(not p.diverged and p.worst(metric) <= level for p in points)
    chosen = _chosen(points, level, metric)
    return Calibration(
        config.label,
        float(level),
        _trace(points),
        chosen,
        reached,
        tuple(lrs),
        points,
        tolerance,
        strategy="predict" if predicting else "bisect",
        metric=metric,
        runs=kept_runs.get(chosen, ()),
    )


def _mean_scores(summaries: Sequence[dict]) -> dict[str, float]:
    return {k: fmean(s[k] for s in summaries) for k in summaries[0]}


def _probe_rates(points: Iterable[TracePoint], level: float | int, metric: str, bracket: bool) -> set[float]:
    """The rates whose runs are kept: the one a search over `points` chooses and, with `bracket`, the highest
    rate that did not reach the level (the two points of the forgetting curve that `probe_points="bracket"`
    scores)."""
    points = list(points)
    wanted = {_chosen(points, level, metric)}
    below = [p.lr for p in points if not p.diverged and p.worst(metric) > level]
    if bracket and below:
        wanted.add(max(below))
    return wanted


def _with_probe(result, target: Paragraphs, edit: Paragraphs | None, probe: Probe):
    """`result` with its after-scores on the targets and the probes, in the batched pass the run would have made
    had it been given the probes (edit targets as the run scored them)."""
    edit = edit if result.after.edit_em.numel() else None
    return replace(result, after=evaluate(result.model, target, probe, edit_targets=edit, hooks=result.hooks()))


def _score(model: Model, target: Paragraphs, metric: str) -> float:
    scores = score_paragraphs(model, target)
    return float(scores.em.float().mean() if metric == "em" else scores.log10_p.double().mean())


def _settled_step(em_along: Sequence[float], level: float | int) -> int | None:
    """The first step (1-based) from which the EM stayed <= level to the last step; None if above it at the end."""
    if not em_along or em_along[-1] > level:
        return None
    above = [i for i, em in enumerate(em_along) if em > level]
    return above[-1] + 2 if above else 1


def _predicting_search(
    attempt: Callable[[float], TracePoint],
    stops: Callable[[TracePoint], bool],
    lrs: Sequence[float],
    tolerance: float,
    steps: int,
) -> None:
    """Rates tried: the grid's middle, then x10 until one stops the search (reaches the level, or diverges), then
    the rate that run predicts (its slowest target's settled step / `steps`, times PREDICTION_MARGIN), kept at
    least a factor `1 + tolerance` below the lowest stopping rate and above the highest rate that did not; ends
    when those two are within a factor `1 + tolerance`, or at the grid's ends."""
    ratio = 1 + tolerance
    low: float | None = None  # the largest rate known not to stop the search
    high: tuple[float, TracePoint] | None = None  # the smallest rate known to stop it, and its point
    lr = lrs[len(lrs) // 2]
    while True:
        point = attempt(lr)
        if stops(point):
            high = (lr, point)
        else:
            low = lr
        if high is None:
            if lr >= lrs[-1]:
                return  # not reached within the grid
            lr = min(lr * 10, lrs[-1])
            continue
        top, top_point = high
        if low is not None and top / low <= ratio * (1 + 1e-9):
            return
        if top_point.diverged or None in top_point.settled or max(top_point.settled) == 1:
            guess = top / 10  # no step count to read: a grid-sized step down
        else:
            guess = top * max(top_point.settled) / steps * PREDICTION_MARGIN
        lr = min(guess, top / ratio * (1 + 1e-9))  # at least one tolerance step below what stops it
        if low is not None:
            lr = math.sqrt(low * top) if low * ratio > top / ratio else max(lr, low * ratio)
        elif lr < lrs[0]:
            if top <= lrs[0]:
                return  # the grid's smallest rate reaches it: a smaller one may too (Calibration.describe says so)
            lr = lrs[0]


def _bisection(
    attempt: Callable[[float], TracePoint],
    stops: Callable[[TracePoint], bool],
    lrs: Sequence[float],
    tolerance: float,
) -> None:
    """Rates tried: a bisection on the grid `lrs`, then in log-rate between the two grid rates that bracket the
    level until they are within a factor `1 + tolerance`."""
    lo, hi = -1, len(lrs)  # lrs[lo] is known not to stop the search, lrs[hi] to stop it (-1 / len: unknown)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if stops(attempt(lrs[mid])):
            hi = mid
        else:
            lo = mid
    if 0 <= lo and hi < len(lrs):
        low, high = lrs[lo], lrs[hi]
        while high / low > 1 + tolerance:
            mid = math.exp((math.log(low) + math.log(high)) / 2)
            if stops(attempt(mid)):
                high = mid
            else:
                low = mid


def _chosen(points: Iterable[TracePoint], level: float | int, metric: str = "em") -> float:
    """The rate a search over `points` chooses: the smallest that reached `level`, else the largest that did not
    diverge, else the smallest tried."""
    points = sorted(points, key=lambda p: p.lr)
    reached_at = [p.lr for p in points if not p.diverged and p.worst(metric) <= level]
    usable = [p.lr for p in points if not p.diverged]
    return min(reached_at) if reached_at else max(usable) if usable else points[0].lr


def calibrated_configs(
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    configs: Sequence,
    **options,
) -> tuple[list, list[Calibration]]:
    """Every config at its calibrated rate (see `calibrate`; options are passed on), and the searches."""
    searches = [calibrate(model, targets, retain, c, **options) for c in configs]
    return [replace(c, lr=s.lr) for c, s in zip(configs, searches)], searches
