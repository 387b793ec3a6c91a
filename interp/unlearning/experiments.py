"""The paper's Figure 5: many unlearning configurations, each run over several targets and averaged.

`unlearning_table` runs every configuration once per target (1 MEM + 10 NMEM per run, as in the
paper), scores each run with the same probes, optionally attacks it by relearning, and averages.
The relearning attack comes with two controls: (a) the same relearning on each target of the
ORIGINAL model (does relearning itself break or keep recitation?); (b) each row's whole
unlearn-then-relearn pipeline applied to paragraphs the model was never trained on (how much EM does
relearning give text the model never knew?). Pass `calibrate=MatchedForgetting(...)`
(interp.unlearning.calibration) to run every row at matched forgetting, or `calibrations` already made
to show the learning rate each row needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from statistics import fmean

import torch
from tqdm.auto import tqdm

from interp.backend import Model
from interp.data import Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.io import float_from_json, nulls_as_nan
from interp.unlearning.calibration import Calibration, MatchedForgetting
from interp.unlearning.evaluation import Probe, evaluate
from interp.unlearning.masked import UnlearnConfig
from interp.unlearning.relearning import RelearnConfig, relearn
from interp.unlearning.training import RETAIN_PER_RUN, Diverged

COLUMNS = ("target_em", "target_nll", "target_log10p", "edit_em", "other_mem_em", "nmem_em", "heldout_ppl")
"""The unlearning table's means per run: target EM, NLL and log10 p (the probability that sampling reproduces the
continuation: a target at EM 0 can still be likely), the edit targets' EM, the collateral scores."""


@dataclass(frozen=True)
class UnlearningTable(Displayed):
    """Mean scores per configuration over runs (1 target + retain paragraphs each).

    `before` = the original model; `after[i]`, `relearned[i]` = row i after unlearning and after the
    relearning attack; `per_run` keeps every run's numbers. `relearn_controls`: mean target EM of the
    original model before / after the same relearning (control a). `heldout_control[i]`: control (b) for
    row i, the row's unlearn-then-relearn pipeline applied to paragraphs the model was never trained on
    (EM before, after unlearning, after relearning; `{"not_run": reason}` when it could not run).
    `diverged[i]`: runs of row i whose loss became non-finite (left out of its means).
    `calibrations`: per row, the learning-rate search behind it."""

    _view = "interp.views.unlearning:figure_unlearning_table"

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
    heldout_control: tuple[dict, ...] = ()
    diverged: tuple[int, ...] = ()

    def to_json(self) -> dict:
        rows = [
            {"label": lab, "config": cfg, "after": a, "relearned": r, "trained": t, "weights_changed": w}
            for lab, cfg, a, r, t, w in zip(
                self.labels, self.configs, self.after, self.relearned, self.trained, self.weights_changed
            )
        ]
        for row, cal in zip(rows, self.calibrations):
            row["calibration"] = cal.to_json()
        for row, control in zip(rows, self.heldout_control):
            row["heldout_control"] = control
        for row, n in zip(rows, self.diverged):
            row["diverged_runs"] = n
        return {
            "before": self.before,
            "rows": rows,
            "per_run": list(self.per_run),
            "settings": self.settings,
            "relearn_controls": self.relearn_controls,
        }

    @classmethod
    def from_json(cls, data: dict) -> UnlearningTable:
        """The table `to_json` wrote: its scores and controls with nulls (non-finite means) back as NaN, each row's
        search read by `Calibration.from_json` (without its runs, as the table keeps it). The configs come back as
        the dicts `to_dict` wrote (tuples as lists), not as configs, and the settings as written."""
        rows = data["rows"]
        return cls(
            labels=tuple(r["label"] for r in rows),
            configs=tuple(r["config"] for r in rows),
            before=nulls_as_nan(data["before"]),
            after=tuple(nulls_as_nan(r["after"]) for r in rows),
            relearned=tuple(nulls_as_nan(r["relearned"]) for r in rows),
            trained=tuple(float_from_json(r["trained"]) for r in rows),
            weights_changed=tuple(float_from_json(r["weights_changed"]) for r in rows),
            per_run=tuple(nulls_as_nan(r) for r in data["per_run"]),
            settings=data["settings"],
            relearn_controls=nulls_as_nan(data["relearn_controls"]),
            calibrations=tuple(Calibration.from_json(r["calibration"]) for r in rows if "calibration" in r),
            heldout_control=tuple(nulls_as_nan(r["heldout_control"]) for r in rows if "heldout_control" in r),
            diverged=tuple(r["diverged_runs"] for r in rows if "diverged_runs" in r),
        )

    def format(self) -> str:
        """A plain-text table: EM and NLL of the target, collateral, weights changed, EM after relearning, and
        control (b): held-out paragraphs' EM after the same unlearning and relearning."""
        head = (
            f"{'run':<28} {'lr':>8} {'tgt EM':>7} {'max':>5} {'tgt NLL':>8} {'log10 p':>8} {'edit EM':>7} {'MEM EM':>7} "
            f"{'NMEM EM':>8} {'ppl':>7} {'changed':>9} {'relearn EM':>10} {'held-out':>14}"
        )
        b = self.before
        lines = [
            head,
            f"{'original':<28} {'':>8} {b['target_em']:>7.2f} {'':>5} {b['target_nll']:>8.3f} "
            f"{b['target_log10p']:>8.2f} {'':>7} "
            f"{b['other_mem_em']:>7.2f} {b['nmem_em']:>8.2f} {b['heldout_ppl']:>7.2f} {0:>9} {'':>10} {'':>14}",
        ]
        for i, (lab, cfg, a, r, w) in enumerate(
            zip(self.labels, self.configs, self.after, self.relearned, self.weights_changed)
        ):
            edit = f"{a['edit_em']:>7.2f}" if math.isfinite(a["edit_em"]) else f"{'':>7}"
            rel = f"{r['target_em']:>10.2f}" if r else f"{'':>10}"
            lr = f"{cfg.get('lr', float('nan')):.2g}"
            if i < len(self.calibrations) and not self.calibrations[i].reached:
                lr += "*"
            if i < len(self.diverged) and self.diverged[i]:
                lab = f"{lab} (diverged {self.diverged[i]})"
            control = self.heldout_control[i] if i < len(self.heldout_control) else {}
            held = (
                f"{control['before']:.1f}->{control['relearned']:.1f}"
                if "relearned" in control
                else ("not run" if control else "")
            )
            lines.append(
                f"{lab:<28} {lr:>8} {a['target_em']:>7.2f} {a.get('target_em_max', float('nan')):>5.0f} "
                f"{a['target_nll']:>8.3f} {a['target_log10p']:>8.2f} {edit} {a['other_mem_em']:>7.2f} "
                f"{a['nmem_em']:>8.2f} "
                f"{a['heldout_ppl']:>7.2f} {w:>9.0f} {rel} {held:>14}"
            )
        if any(not c.reached for c in self.calibrations):
            lines.append(
                f"* no target EM <= {self.calibrations[0].level:g} for every target within the learning-rate "
                "grid: shown at the largest rate tried that did not diverge"
            )
        if any(c.non_monotone for c in self.calibrations):
            lines.append(
                "non-monotone calibration (a target's EM rose with the rate): "
                + ", ".join(c.label for c in self.calibrations if c.non_monotone)
            )
        if any(self.diverged):
            lines.append("(diverged k) = k runs of the row whose loss became non-finite, left out of its means")
        c = self.relearn_controls
        if c:
            lines.append(
                f"relearning control (a), the attack on the original model: target EM {c['original_before']:.2f} -> "
                f"{c['original_after']:.2f}"
            )
            lines.append(heldout_control_note(self))
        return "\n".join(lines)


def heldout_control_note(table: UnlearningTable) -> str:
    """One line on control (b): what the 'held-out' column measures, or why it could not be run."""
    n = int(table.relearn_controls.get("heldout_paragraphs", 0))
    if n == 0:
        return (
            "relearning control (b) could not be run: it needs paragraphs the model was never trained on "
            "(a 'heldout' split); without it the attack's recovery has no baseline for what relearning teaches"
        )
    skipped = [lab for lab, c in zip(table.labels, table.heldout_control) if "not_run" in c]
    return (
        f"relearning control (b), 'held-out' column: each row's own unlearn-then-relearn pipeline applied to {n} "
        "paragraph(s) the model was never trained on, EM before -> after relearning: the EM relearning gives text "
        "the model never knew (a target's relearned EM above it is recovery)"
        + (f"; not run for {', '.join(skipped)} (no edit targets for the held-out paragraphs)" if skipped else "")
    )


def paper_configs(
    *,
    lr: float = UnlearnConfig.lr,
    steps: int = UnlearnConfig.steps,
    weight_decay: float = UnlearnConfig.weight_decay,
    fraction: float = UnlearnConfig.fraction,
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
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    configs: Sequence,
    probe: Probe,
    *,
    edit_targets: Paragraphs | None = None,
    retain_per_run: int = RETAIN_PER_RUN,
    relearn_config: RelearnConfig | None = RelearnConfig(),
    on_run: Callable | None = None,
    calibrations: Sequence[Calibration] = (),
    progress: bool = False,
    heldout: Paragraphs | None = None,
    heldout_edit_targets: Paragraphs | None = None,
    calibrate: MatchedForgetting | Callable[[object], Calibration] | None = None,
    on_try: Callable[[object, float, float], None] | None = None,
    on_calibrated: Callable[[Calibration], None] | None = None,
    decay_control: bool = False,
) -> UnlearningTable:
    """Run every config once per target (target i with retain paragraphs [i*k, (i+1)*k)), then average.

    `configs` are UnlearnConfig or interp.unlearning.reft.ReftConfig (anything with `.run(...)`, `.label`,
    `.to_dict()`); `edit_targets` aligns with `targets` and is needed for edit configs. `on_run` is
    called with every run's result (e.g. to keep an edited model); results are not kept otherwise. A run
    whose loss diverges is counted in `diverged` and left out of its row's means. With a relearning
    attack, `heldout` = paragraphs the model was NEVER trained on (not NMEM text it saw) for control (b):
    each row's pipeline is applied to them (paragraph j with target j's retain set; edit rows need
    `heldout_edit_targets`); without them the table says that control (b) could not be run.

    A calibration's runs at the row's rate (`Calibration.runs`) are the row's runs, not trained again; the
    table keeps the calibrations without them. `calibrate` (instead of `calibrations`): each config's rate is
    searched just before its runs, and only one config's edited models are held at once. A `MatchedForgetting`
    searches it with `interp.unlearning.calibrate` on this table's targets, retain sets, edit targets and probes
    (`on_try(config, lr, mean target EM)` after each rate tried); a function `calibrate(config) -> Calibration`
    searches it itself. `on_calibrated(search)` is called with each row's search when it ends.

    `decay_control`: add a last row, "decay only": the all-weights row with the highest (calibrated) rate
    run again with no loss at all, so that only its weight decay moves the weights (`decay_control_of`
    in the settings names that row). It says how much of that row's forgetting is shrinkage; with no
    weight decay it must leave every score unchanged. No relearning attack is run on it."""
    if calibrations and calibrate is not None:
        raise UserError("pass calibrations already made or calibrate, not both")
    if on_try is not None and callable(calibrate):
        raise UserError("on_try reports the tries of calibrate=MatchedForgetting(...), not of a calibrate function")
    if calibrations and len(calibrations) != len(configs):
        raise UserError(f"{len(calibrations)} calibrations for {len(configs)} configurations")
    calibrations, configs = list(calibrations), list(configs)
    if len(retain) < retain_per_run * len(targets):
        raise UserError(
            f"{len(targets)} runs x {retain_per_run} retain paragraphs need {retain_per_run * len(targets)} "
            f"retain (NMEM) paragraphs, got {len(retain)}"
        )
    before = evaluate(model, targets, probe, edit_targets=edit_targets)
    after, relearned, trained, changed, per_run, diverged, controls = [], [], [], [], [], [], []
    bar = tqdm(total=len(configs) * len(targets), desc="unlearning runs", unit="run", leave=False, disable=not progress)
    decay_of: str | None = None  # the row the decay-only control copies, once it is appended
    k = 0
    while k < len(configs):
        config = configs[k]
        is_decay = decay_of is not None and k == len(configs) - 1  # runs at its source row's rate, uncalibrated
        attack = None if is_decay else relearn_config
        runs_after, runs_relearn, n_trained, n_changed, failed, max_em = [], [], [], [], 0, []
        reuse = calibrations and calibrate is None and not is_decay
        done = _calibrated_runs(calibrations[k], config, targets) if reuse else ()
        if calibrate is not None and not is_decay:
            search = (
                calibrate.search(
                    model,
                    targets,
                    retain,
                    config,
                    edit_targets=edit_targets,
                    retain_per_run=retain_per_run,
                    probe=probe,
                    on_try=None if on_try is None else partial(on_try, config),
                )
                if isinstance(calibrate, MatchedForgetting)
                else calibrate(config)
            )
            if on_calibrated is not None:
                on_calibrated(search)
            configs[k] = config = replace(config, lr=search.lr)
            done = _calibrated_runs(search, config, targets)
            calibrations.append(search.without_runs())
        for i in range(len(targets)):
            target = targets.select([i])
            edit = edit_targets.select([i]) if edit_targets is not None else None
            kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
            record = {
                "label": config.label,
                "target": target.ids[0],
                "before": before.summary()
                | {
                    "target_em": float(before.target_em[i]),
                    "target_nll": float(before.target_nll[i]),
                    "target_log10p": float(before.target_log10p[i]),
                },
            }
            try:
                result = (
                    done[i] if done else config.run(model, target, kept, edit_targets=edit, probe=probe, before=before)
                )
            except Diverged as exc:
                failed += 1
                per_run.append(record | {"diverged": str(exc)})
                bar.update()
                continue
            if on_run is not None:
                on_run(result)
            record |= {
                "after": result.after.summary(),
                "trained": result.trained,
                "weights_changed": result.weights_changed,
                "losses": result.losses.tolist(),
            }
            if attack is not None:
                attacked = relearn(result.model, target, kept, attack, hooks=result.hooks())
                record["relearned"] = evaluate(attacked, target, None, hooks=result.hooks()).summary()
                runs_relearn.append(record["relearned"])
            runs_after.append(result.after.summary())
            max_em.append(record["after"]["target_em"])
            n_trained.append(result.trained)
            n_changed.append(result.weights_changed)
            per_run.append(record)
            bar.set_postfix_str(config.label)
            bar.update()
        nan = {k: float("nan") for k in COLUMNS}
        after.append(
            (_mean_summaries(runs_after) if runs_after else nan) | {"target_em_max": max(max_em, default=float("nan"))}
        )
        relearned.append(_mean_summaries(runs_relearn) if runs_relearn else {})
        trained.append(fmean(n_trained) if n_trained else float("nan"))
        changed.append(fmean(n_changed) if n_changed else float("nan"))
        diverged.append(failed)
        if attack is not None:
            controls.append(
                heldout_pipeline(
                    model, config, heldout, retain, relearn_config, retain_per_run, heldout_edit_targets, len(targets)
                )
            )
        elif relearn_config is not None:
            controls.append({"not_run": "the decay-only control is not attacked"})
        k += 1
        if k == len(configs) and decay_control and decay_of is None:
            source = _decay_source(configs)
            decay_of = source.label
            configs.append(replace(source, method="decay"))
            bar.total += len(targets)
    bar.close()
    n_heldout = min(len(targets), len(heldout)) if heldout is not None and relearn_config is not None else 0
    return UnlearningTable(
        labels=tuple(c.label for c in configs),
        configs=tuple(c.to_dict() for c in configs),
        before=before.summary(),
        after=tuple(after),
        relearned=tuple(relearned),
        trained=tuple(trained),
        weights_changed=tuple(changed),
        per_run=tuple(per_run),
        relearn_controls=relearn_controls(model, targets, retain, relearn_config, retain_per_run)
        | {"heldout_paragraphs": n_heldout}
        if relearn_config is not None
        else {},
        calibrations=tuple(c.without_runs() for c in calibrations),
        heldout_control=tuple(controls),
        diverged=tuple(diverged),
        settings={
            "targets": list(targets.ids),
            "retain_per_run": retain_per_run,
            "probe_mem": len(probe.mem),
            "probe_nmem": len(probe.nmem),
            "probe_heldout": len(probe.heldout),
            "relearn": asdict(relearn_config) if relearn_config else None,
            "heldout_control": list(heldout.ids[:n_heldout]) if n_heldout else None,
            "decay_control_of": decay_of,
        },
    )


def _decay_source(configs: Sequence) -> UnlearnConfig:
    """The all-weights weight-editing row with the highest rate: the one weight decay moves most."""
    rows = [c for c in configs if isinstance(c, UnlearnConfig) and c.select == "all" and c.method != "decay"]
    if not rows:
        raise UserError("the decay-only control copies an all-weights row: add one (e.g. select='all')")
    return max(rows, key=lambda c: c.lr)


def _calibrated_runs(calibration: Calibration, config, targets: Paragraphs) -> tuple:
    """The calibration's runs at `config`'s rate, one per target, when it kept them (the same runs `config.run`
    would train again: same model, target, retain paragraphs, mask and rate); else ()."""
    runs = calibration.runs
    if len(runs) != len(targets) or any(r.config != config or r.target_ids != (t,) for r, t in zip(runs, targets.ids)):
        return ()
    return runs


def heldout_pipeline(
    model: Model,
    config,
    heldout: Paragraphs | None,
    retain: Paragraphs,
    relearn_config: RelearnConfig,
    retain_per_run: int,
    heldout_edit_targets: Paragraphs | None,
    n_runs: int,
) -> dict:
    """Control (b) for one row: unlearn each never-seen paragraph with the row's config (paragraph j with
    run j's retain set), relearn it as the attack does, and score it before, after unlearning and after
    relearning. Text the model never knew can only gain what relearning teaches, so this is the baseline
    the attack's recovery is read against; it can rise (relearning on retain text, or a general repair of
    the damage unlearning did), unlike relearning the original model on a never-seen prefix."""
    if heldout is None or len(heldout) == 0:
        return {"not_run": "no paragraphs the model was never trained on"}
    if getattr(config, "method", None) == "edit" and heldout_edit_targets is None:
        return {"not_run": "no edit targets (new continuations) for the held-out paragraphs"}
    ems: dict[str, list[float]] = {"before": [], "unlearned": [], "relearned": []}
    for j in range(min(n_runs, len(heldout))):
        text = heldout.select([j])
        edit = heldout_edit_targets.select([j]) if heldout_edit_targets is not None else None
        kept = retain.select(range(j * retain_per_run, (j + 1) * retain_per_run))
        try:
            result = config.run(model, text, kept, edit_targets=edit)
        except Diverged:
            return {"not_run": "the loss diverged when unlearning a held-out paragraph"}
        attacked = relearn(result.model, text, kept, relearn_config, hooks=result.hooks())
        ems["before"].append(float(result.before.target_em.float().mean()))
        ems["unlearned"].append(float(result.after.target_em.float().mean()))
        ems["relearned"].append(float(evaluate(attacked, text, None, hooks=result.hooks()).target_em.float().mean()))
    return {k: fmean(v) for k, v in ems.items()} | {"n": len(ems["before"])}


def relearn_controls(
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    config: RelearnConfig,
    retain_per_run: int,
) -> dict[str, float]:
    """Control (a) of the relearning attack, on the ORIGINAL model, target by target as the attack runs:
    the same relearning applied to it (recitation should survive: if it falls, the attack's recovered EM
    understates what came back). Control (b) is `heldout_pipeline`, per row."""
    before, after = [], []
    for i in range(len(targets)):
        target = targets.select([i])
        kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
        before.append(float(evaluate(model, target).target_em.float().mean()))
        after.append(float(evaluate(relearn(model, target, kept, config), target).target_em.float().mean()))
    return {"original_before": fmean(before), "original_after": fmean(after)}
