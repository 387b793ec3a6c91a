"""The paper's Figure 5: many unlearning configurations, each run over several targets and averaged.

`unlearning_table` runs every configuration once per target (1 MEM + 10 NMEM per run, as in the
paper), scores each run with the same probes, optionally attacks it by relearning, and averages.
The relearning attack comes with its two controls, run on the ORIGINAL model: the same relearning
on each target (does relearning itself break or keep recitation?) and on a paragraph the model never
saw (does relearning teach the text?). Pass `calibrations` (interp.unlearning.calibration) to show
the learning rate each row needed to reach matched forgetting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.errors import UserError
from interp.unlearning.calibration import Calibration
from interp.unlearning.evaluation import Probe, evaluate
from interp.unlearning.masked import UnlearnConfig
from interp.unlearning.relearning import RelearnConfig, relearn

COLUMNS = ("target_em", "target_nll", "edit_em", "other_mem_em", "nmem_em", "heldout_ppl")


@dataclass(frozen=True)
class UnlearningTable:
    """Mean scores per configuration over runs (1 target + retain paragraphs each).

    `before` = the original model; `after[i]`, `relearned[i]` = row i after unlearning and after the
    relearning attack; `per_run` keeps every run's numbers. `relearn_controls`: mean target EM of the
    original model before / after the same relearning, and of never-seen paragraphs before / after
    relearning on their prefixes. `calibrations`: per row, the learning-rate search behind it."""

    labels: tuple[str, ...]
    configs: tuple[dict, ...]
    before: dict[str, float]
    after: tuple[dict[str, float], ...]
    relearned: tuple[dict[str, float], ...]
    trained: tuple[float, ...]
    weights_changed: tuple[float, ...]
    per_run: tuple[dict, ...]
    settings: dict
    relearn_controls: dict[str, float] = field(default_factory=dict)
    calibrations: tuple[Calibration, ...] = ()

    def to_json(self) -> dict:
        rows = [
            {"label": lab, "config": cfg, "after": a, "relearned": r, "trained": t, "weights_changed": w}
            for lab, cfg, a, r, t, w in zip(
                self.labels, self.configs, self.after, self.relearned, self.trained, self.weights_changed
            )
        ]
        for row, cal in zip(rows, self.calibrations):
            row["calibration"] = cal.to_json()
        return {
            "before": self.before,
            "rows": rows,
            "per_run": list(self.per_run),
            "settings": self.settings,
            "relearn_controls": self.relearn_controls,
        }

    def format(self) -> str:
        """A plain-text table: EM and NLL of the target, collateral, weights changed, EM after relearning."""
        head = (
            f"{'run':<28} {'lr':>7} {'tgt EM':>7} {'tgt NLL':>8} {'edit EM':>7} {'MEM EM':>7} {'NMEM EM':>8} {'ppl':>7} "
            f"{'changed':>9} {'relearn EM':>10}"
        )
        b = self.before
        lines = [
            head,
            f"{'original':<28} {'':>7} {b['target_em']:>7.2f} {b['target_nll']:>8.3f} {'':>7} {b['other_mem_em']:>7.2f} "
            f"{b['nmem_em']:>8.2f} {b['heldout_ppl']:>7.2f} {0:>9} {'':>10}",
        ]
        for i, (lab, cfg, a, r, w) in enumerate(
            zip(self.labels, self.configs, self.after, self.relearned, self.weights_changed)
        ):
            edit = f"{a['edit_em']:>7.2f}" if math.isfinite(a["edit_em"]) else f"{'':>7}"
            rel = f"{r['target_em']:>10.2f}" if r else f"{'':>10}"
            lr = f"{cfg.get('lr', float('nan')):.0e}"
            if i < len(self.calibrations) and not self.calibrations[i].reached:
                lr += "*"
            lines.append(
                f"{lab:<28} {lr:>7} {a['target_em']:>7.2f} {a['target_nll']:>8.3f} {edit} {a['other_mem_em']:>7.2f} "
                f"{a['nmem_em']:>8.2f} {a['heldout_ppl']:>7.2f} {w:>9.0f} {rel}"
            )
        if any(not c.reached for c in self.calibrations):
            lines.append(
                f"* did not reach target EM <= {self.calibrations[0].level:g} within the learning-rate grid: "
                "shown at the largest rate tried"
            )
        c = self.relearn_controls
        if c:
            lines.append(
                f"relearning controls (original model): target EM {c['original_before']:.2f} -> {c['original_after']:.2f}; "
                f"never-seen paragraphs EM {c['unseen_before']:.2f} -> {c['unseen_after']:.2f}"
            )
        return "\n".join(lines)


def paper_configs(
    *,
    lr: float = 1e-5,
    steps: int = 5,
    weight_decay: float = 1.0,
    fraction: float = 0.001,
    decay_outside_mask: bool = False,
) -> list[UnlearnConfig]:
    """The six runs of the paper's Figure 5: unlearn / edit x all / top-fraction / random-fraction."""
    return [
        UnlearnConfig(
            method=m,
            select=s,
            fraction=fraction,
            lr=lr,
            steps=steps,
            weight_decay=weight_decay,
            decay_outside_mask=decay_outside_mask,
        )
        for m in ("unlearn", "edit")
        for s in ("all", "topk", "random")
    ]


def _mean_summaries(evals: Sequence[dict]) -> dict[str, float]:
    return {k: float(torch.tensor([e[k] for e in evals], dtype=torch.float64).nanmean()) for k in COLUMNS}


def unlearning_table(
    model: HookedTransformer,
    targets: Paragraphs,
    retain: Paragraphs,
    configs: Sequence,
    probe: Probe,
    *,
    edit_targets: Paragraphs | None = None,
    retain_per_run: int = 10,
    relearn_config: RelearnConfig | None = RelearnConfig(),
    on_run: Callable | None = None,
    calibrations: Sequence[Calibration] = (),
    progress: bool = False,
) -> UnlearningTable:
    """Run every config once per target (target i with retain paragraphs [i*k, (i+1)*k)), then average.

    `configs` are UnlearnConfig or interp.reft.ReftConfig (anything with `.run(...)`, `.label`,
    `.to_dict()`); `edit_targets` aligns with `targets` and is needed for edit configs. `on_run` is
    called with every run's result (e.g. to keep an edited model); results are not kept otherwise.
    The relearning controls use `probe.heldout` as the never-seen paragraphs (one per target)."""
    if calibrations and len(calibrations) != len(configs):
        raise UserError(f"{len(calibrations)} calibrations for {len(configs)} configurations")
    if len(retain) < retain_per_run * len(targets):
        raise UserError(
            f"{len(targets)} runs x {retain_per_run} retain paragraphs need {retain_per_run * len(targets)} "
            f"retain (NMEM) paragraphs, got {len(retain)}"
        )
    before = evaluate(model, targets, probe, edit_targets=edit_targets)
    after, relearned, trained, changed, per_run = [], [], [], [], []
    bar = tqdm(total=len(configs) * len(targets), desc="unlearning runs", unit="run", leave=False, disable=not progress)
    for config in configs:
        runs_after, runs_relearn, n_trained, n_changed = [], [], [], []
        for i in range(len(targets)):
            target = targets.select([i])
            edit = edit_targets.select([i]) if edit_targets is not None else None
            kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
            result = config.run(model, target, kept, edit_targets=edit, probe=probe, before=before)
            if on_run is not None:
                on_run(result)
            record = {
                "label": config.label,
                "target": target.ids[0],
                "before": before.summary()
                | {"target_em": float(before.target_em[i]), "target_nll": float(before.target_nll[i])},
                "after": result.after.summary(),
                "trained": result.trained,
                "weights_changed": result.weights_changed,
                "losses": result.losses.tolist(),
            }
            if relearn_config is not None:
                attacked = relearn(result.model, target, kept, relearn_config, hooks=result.hooks())
                record["relearned"] = evaluate(attacked, target, None, hooks=result.hooks()).summary()
                runs_relearn.append(record["relearned"])
            runs_after.append(result.after.summary())
            n_trained.append(result.trained)
            n_changed.append(result.weights_changed)
            per_run.append(record)
            bar.set_postfix_str(config.label)
            bar.update()
        after.append(_mean_summaries(runs_after))
        relearned.append(_mean_summaries(runs_relearn) if runs_relearn else {})
        trained.append(sum(n_trained) / len(n_trained))
        changed.append(sum(n_changed) / len(n_changed))
    bar.close()
    return UnlearningTable(
        labels=tuple(c.label for c in configs),
        configs=tuple(c.to_dict() for c in configs),
        before=before.summary(),
        after=tuple(after),
        relearned=tuple(relearned),
        trained=tuple(trained),
        weights_changed=tuple(changed),
        per_run=tuple(per_run),
        relearn_controls=relearn_controls(model, targets, retain, probe, relearn_config, retain_per_run)
        if relearn_config is not None
        else {},
        calibrations=tuple(calibrations),
        settings={
            "targets": list(targets.ids),
            "retain_per_run": retain_per_run,
            "probe_mem": len(probe.mem),
            "probe_nmem": len(probe.nmem),
            "probe_heldout": len(probe.heldout),
            "relearn": asdict(relearn_config) if relearn_config else None,
        },
    )


def relearn_controls(
    model: HookedTransformer,
    targets: Paragraphs,
    retain: Paragraphs,
    probe: Probe,
    config: RelearnConfig,
    retain_per_run: int,
) -> dict[str, float]:
    """The relearning attack's controls on the ORIGINAL model, target by target as the attack runs:
    (a) the same relearning applied to it (recitation should survive: if it falls, the attack's
    recovered EM understates what came back); (b) relearning on the prefix of a paragraph it never
    saw (EM should stay low: if it rises, relearning teaches text rather than revealing it)."""
    unseen = probe.heldout
    if len(unseen) == 0:
        raise UserError("the relearning controls need never-seen paragraphs: give the probe held-out paragraphs")
    before, after, unseen_before, unseen_after = [], [], [], []
    for i in range(len(targets)):
        target = targets.select([i])
        kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
        before.append(float(evaluate(model, target).target_em.float().mean()))
        after.append(float(evaluate(relearn(model, target, kept, config), target).target_em.float().mean()))
        other = unseen.select([i % len(unseen)])
        unseen_before.append(float(evaluate(model, other).target_em.float().mean()))
        unseen_after.append(float(evaluate(relearn(model, other, kept, config), other).target_em.float().mean()))
    return {
        "original_before": fmean(before),
        "original_after": fmean(after),
        "unseen_before": fmean(unseen_before),
        "unseen_after": fmean(unseen_after),
    }
