"""Step 6: restoration of the unlearning runs: restore MLP coefficients, value vectors or attention of the
original model, a window at a time, and measure how much of the forgotten text comes back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from interp.conventions import conventions
from interp.errors import UserError
from interp.report.steps.memorization import mem_nmem_sets, set_step
from interp.report.types import Bundle, Skipped, StepInputs
from interp.restore import RestorationResult, restoration
from interp.unlearning import RETAIN_PER_RUN, UnlearnConfig, calibrate, unlearn
from interp.views.sections import restoration_section


def _restoration(inputs: StepInputs) -> Bundle | Skipped:
    """Restoration of the runs section 5 calibrated and tabulated: each target unlearned in its OWN run (the
    target + its 10 retain NMEM paragraphs, its own weight mask) at the row's calibrated rate, restored one
    target at a time; the per-paragraph scores are then pooled into one heatmap."""
    sets = mem_nmem_sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model = inputs.options, inputs.model
    mem, nmem = sets
    retain_per_run = RETAIN_PER_RUN
    table = inputs.results.get("unlearning")
    ids = table["table"].settings["targets"] if isinstance(table, Bundle) else None
    n_targets = len(ids) if ids else min(o.unlearn_targets, len(mem), len(nmem) // retain_per_run)
    if n_targets == 0:
        return Skipped(f"needs {retain_per_run} NMEM paragraphs per unlearning run; the sets have {len(nmem)}")
    targets = mem.select(range(n_targets))
    if ids and list(targets.ids) != list(ids):
        raise UserError("the restoration targets differ from section 5's: rerun the report without its cache")
    retain = nmem.select(range(n_targets * retain_per_run))
    paper = conventions(o.conventions)
    parts: dict[str, Any] = {"mode": "per target", "targets": list(targets.ids), "retain_per_run": retain_per_run}
    for select in o.restore_selects:
        config = UnlearnConfig(
            method="unlearn",
            select=select,
            lr=UnlearnConfig.lr if o.unlearn_lr is None else o.unlearn_lr,  # None: the calibrated rate, below
            steps=o.unlearn_steps,
            weight_decay=paper.weight_decay,
            decay_outside_mask=paper.decay_outside_mask,
        )
        source = "fixed (unlearn_lr)"
        if o.unlearn_lr is None:  # the rate section 5 calibrated for these very runs, else calibrate them here
            rates = (
                [
                    c["lr"]
                    for c in table["table"].configs
                    if c.get("kind") == "weights" and c["method"] == "unlearn" and c["select"] == select
                ]
                if isinstance(table, Bundle)
                else []
            )
            if rates:
                lr, source = rates[0], "calibrated in section 5"
            else:
                lr = calibrate(model, targets, retain, config, level=o.unlearn_level, retain_per_run=retain_per_run).lr
                source = "calibrated here, per target as section 5 does"
            config = replace(config, lr=lr)
        per_target, em_after = [], []
        for i in range(n_targets):
            target = targets.select([i])
            kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
            edited = unlearn(model, target, kept, config)
            per_target.append(
                restoration(model, edited.model, target, width=paper.restore_width, batch_size=o.batch_size)
            )
            em_after.append(float(edited.after.target_em.float().mean()))
        parts[select] = RestorationResult.concat(per_target)
        parts[f"{select}_em_after"] = sum(em_after) / len(em_after)
        parts[f"{select}_lr"] = config.lr
        parts[f"{select}_lr_source"] = source
    return Bundle(parts)


STEP = set_step(
    "restoration",
    _restoration,
    restoration_section,
    "unlearn_targets",
    "unlearn_lr",
    "unlearn_level",
    "unlearn_steps",
    "restore_selects",
    "batch_size",
    "conventions",
    after=("unlearning",),
)
