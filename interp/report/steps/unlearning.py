"""Step 5: every unlearning method calibrated to matched forgetting, then tabulated with its collateral
damage and the relearning attack; the runs are handed to the audit step (`Transient`, never cached)."""

from __future__ import annotations

from dataclasses import replace

import torch

from interp.conventions import conventions
from interp.memorization import heldout_indices
from interp.report.steps.audit import AuditedRows, audited, audited_decay, keep_runs, proxy_row
from interp.report.steps.memorization import mem_nmem_sets, set_step
from interp.report.types import Bundle, Skipped, StepInputs, Transient, perturbation_parts
from interp.unlearning import (
    RETAIN_PER_RUN,
    MatchedForgetting,
    RelearnConfig,
    UnlearnConfig,
    paper_configs,
    unlearning_table,
)
from interp.unlearning.reft import ReftConfig
from interp.unlearning.sets import unlearning_sets
from interp.views.sections import unlearning_section


def _unlearning(inputs: StepInputs) -> Bundle | Skipped:
    picked = mem_nmem_sets(inputs)
    if isinstance(picked, Skipped):
        return picked
    o, model, split = inputs.options, inputs.model, inputs.results["memorization"]
    mem, nmem = picked
    perturbed_mem, _ = perturbation_parts(inputs.results["perturbation"])
    n_targets = min(o.unlearn_targets, len(mem), len(perturbed_mem.ids))
    retain_per_run = RETAIN_PER_RUN
    need = n_targets * retain_per_run + 1
    if len(nmem) < need:
        have = len(split.nmem_idx)
        fix = (
            f"raise n_nmem (now {o.n_nmem}; the set has {have} NMEM paragraphs)"
            if have >= need
            else f"the paragraph set has only {have} NMEM paragraphs: give a larger set (e.g. from `interp scan`) or "
            f"lower unlearn_targets (now {o.unlearn_targets})"
        )
        return Skipped(f"needs {need} NMEM paragraphs ({retain_per_run} per run + probes); {fix}")
    weights = dict(
        lr=UnlearnConfig.lr if o.unlearn_lr is None else o.unlearn_lr,  # None: each row's rate is calibrated
        steps=o.unlearn_steps,
        weight_decay=conventions(o.conventions).weight_decay,
        decay_outside_mask=conventions(o.conventions).decay_outside_mask,
    )
    configs = [c for c in paper_configs(**weights) if c.method in o.unlearn_methods]
    configs += [UnlearnConfig(method=m, select="all", **weights) for m in o.unlearn_baselines]
    if o.reft:
        configs.append(ReftConfig(method="unlearn", seed=o.seed))
    proxy = proxy_row(model, o.proxy)
    if proxy is not None:
        configs.append(proxy)
    held = heldout_indices(split)
    # relearning control (b) needs text the model was never trained on: the 'heldout' split, never NMEM text
    sets = unlearning_sets(
        model,
        mem.select(range(n_targets)),
        mem.select(range(n_targets, len(mem))),
        nmem,
        inputs.paragraphs.select(held) if len(held) else None,
        retain_per_run=retain_per_run,
        probe=o.probe,
        batch_size=o.batch_size,
        relearn=bool(o.relearn_steps),
        edit=any(getattr(c, "method", None) == "edit" for c in configs),
        perturb_samples=o.perturb_samples,
        seed=o.seed,
        edit_targets=perturbed_mem.editing_targets.select(torch.arange(n_targets)),
    )

    runs, keep = keep_runs([c for c in configs if audited(c, None)])
    table = unlearning_table(
        model,
        configs=configs,
        **sets.table_arguments(),
        relearn_config=RelearnConfig(steps=o.relearn_steps) if o.relearn_steps else None,
        # matched forgetting, not one arbitrary rate; the probes scored at the rate chosen and the one below it
        calibrate=MatchedForgetting(level=o.unlearn_level) if o.unlearn_lr is None else None,
        progress=o.progress,
        on_run=keep if o.audit else None,
        decay_control=any(getattr(c, "select", None) == "all" for c in configs),
    )
    if table.calibrations:
        configs = [replace(c, lr=cal.lr) for c, cal in zip(configs, table.calibrations)]
    chosen = [c for c, cal in zip(configs, table.calibrations or [None] * len(configs)) if audited(c, cal)]
    decay = audited_decay(configs, table)
    chosen += [decay] if decay is not None else []
    runs = {label: r for label, r in runs.items() if label in {c.label for c in chosen}}
    return Bundle(
        {"table": table, "audited": AuditedRows(chosen), "runs": Transient(runs), "retain": list(sets.retain.ids)}
    )


STEP = set_step(
    "unlearning",
    _unlearning,
    unlearning_section,
    "unlearn_targets",
    "unlearn_lr",
    "unlearn_level",
    "unlearn_steps",
    "unlearn_methods",
    "unlearn_baselines",
    "reft",
    "proxy",
    "audit",
    "relearn_steps",
    "probe",
    "perturb_samples",
    "batch_size",
    "conventions",
    after=("perturbation",),
)
