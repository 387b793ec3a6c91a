"""Unlearning methods compared at matched forgetting.

A comparison of methods at one learning rate measures the learning rate: top-0.1% may forget
nothing at a rate where all-weights fine-tuning wrecks the model. `calibrate` searches a log grid
of learning rates (steps fixed) by bisection (forgetting grows with the rate) and keeps, for each
configuration, the smallest grid rate at which the targets' mean EM falls to a stated level
(default: the NMEM threshold, EM <= 10 of 50). The table of methods is then run at those rates, so collateral damage (other MEM, NMEM, held-out
perplexity) is compared at the same amount of forgetting. A configuration that never gets there
says so ("not reached at lr <= 1e-1") and is shown at the largest rate tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.errors import UserError
from interp.memorization import mem_nmem_thresholds
from interp.unlearning.evaluation import evaluate
from interp.unlearning.masked import UnlearnConfig, select_weights, unlearn

LR_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@dataclass(frozen=True)
class Calibration:
    """One configuration's search: the rates tried (ascending) with the mean target EM at each, and the
    rate chosen: the smallest grid rate that reached `level`, else the largest rate of the grid."""

    label: str
    level: float
    trace: tuple[tuple[float, float], ...]  # (lr, mean target EM after unlearning), ascending lr
    lr: float
    reached: bool
    grid: tuple[float, ...] = LR_GRID

    def describe(self) -> str:
        lr, em = self.lr, dict(self.trace)[self.lr]
        if self.reached:
            return f"EM <= {self.level:g} reached at lr {lr:.0e} (mean target EM {em:.1f})"
        return f"not reached at lr <= {lr:.0e} (mean target EM {em:.1f} there)"

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "level": self.level,
            "lr": self.lr,
            "reached": self.reached,
            "grid": list(self.grid),
            "trace": [{"lr": lr, "target_em": em} for lr, em in self.trace],
        }


def calibrate(
    model: HookedTransformer,
    targets: Paragraphs,
    retain: Paragraphs,
    config,
    *,
    level: float | int | None = None,
    lrs: Sequence[float] = LR_GRID,
    edit_targets: Paragraphs | None = None,
    retain_per_run: int = 10,
    on_try: Callable[[float, float], None] | None = None,
) -> Calibration:
    """The smallest rate in `lrs` (ascending) at which `config` (UnlearnConfig or ReftConfig) brings the
    targets' mean EM to at most `level`, each target unlearned in its own run with its own
    `retain_per_run` retain paragraphs, as `unlearning_table` runs them. `level` defaults to the NMEM
    threshold for the targets' continuation length. Weight masks are chosen once per target (they do
    not depend on the rate). `model` is not changed."""
    lrs = sorted(lrs)
    if not lrs or lrs[0] <= 0:
        raise UserError("the learning-rate grid must hold positive rates")
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
    tried: dict[int, float] = {}

    def mean_em(i: int) -> float:
        trial = replace(config, lr=lrs[i])
        ems = []
        for target, edit, kept, mask, before in runs:
            if mask is not None:
                result = unlearn(model, target, kept, trial, edit_targets=edit, mask=mask, before=before)
            else:
                result = trial.run(model, target, kept, edit_targets=edit, before=before)
            ems.append(float(result.after.target_em.float().mean()))
        tried[i] = sum(ems) / len(ems)
        if on_try is not None:
            on_try(lrs[i], tried[i])
        return tried[i]

    lo, hi = -1, len(lrs)  # lrs[lo] is known not to reach the level, lrs[hi] to reach it (-1 / len: unknown)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mean_em(mid) <= level:
            hi = mid
        else:
            lo = mid
    reached = hi < len(lrs)
    chosen = hi if reached else len(lrs) - 1
    trace = tuple((lrs[i], tried[i]) for i in sorted(tried))
    return Calibration(config.label, float(level), trace, lrs[chosen], reached, tuple(lrs))


def calibrated_configs(
    model: HookedTransformer,
    targets: Paragraphs,
    retain: Paragraphs,
    configs: Sequence,
    **options,
) -> tuple[list, list[Calibration]]:
    """Every config at its calibrated rate (see `calibrate`; options are passed on), and the searches."""
    searches = [calibrate(model, targets, retain, c, **options) for c in configs]
    return [replace(c, lr=s.lr) for c, s in zip(configs, searches)], searches
