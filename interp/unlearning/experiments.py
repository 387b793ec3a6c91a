"""The paper's Figure 5: many unlearning configurations, each run over several targets and averaged.

`unlearning_table` runs every configuration once per target (1 MEM + 10 NMEM per run, as in the
paper), scores each run with the same probes, optionally attacks it by relearning, and averages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.errors import UserError
from interp.unlearning.evaluation import Probe, evaluate
from interp.unlearning.masked import UnlearnConfig
from interp.unlearning.relearning import RelearnConfig, relearn

COLUMNS = ("target_em", "target_nll", "edit_em", "other_mem_em", "nmem_em", "heldout_ppl")


@dataclass(frozen=True)
class UnlearningTable:
    """Mean scores per configuration over runs (1 target + retain paragraphs each).

    `before` = the original model; `after[i]`, `relearned[i]` = row i after unlearning and after the
    relearning attack; `per_run` keeps every run's numbers."""

    labels: tuple[str, ...]
    configs: tuple[dict, ...]
    before: dict[str, float]
    after: tuple[dict[str, float], ...]
    relearned: tuple[dict[str, float], ...]
    trained: tuple[float, ...]
    weights_changed: tuple[float, ...]
    per_run: tuple[dict, ...]
    settings: dict

    def to_json(self) -> dict:
        rows = [{"label": lab, "config": cfg, "after": a, "relearned": r, "trained": t, "weights_changed": w}
                for lab, cfg, a, r, t, w in zip(self.labels, self.configs, self.after, self.relearned, self.trained, self.weights_changed)]
        return {"before": self.before, "rows": rows, "per_run": list(self.per_run), "settings": self.settings}

    def format(self) -> str:
        """A plain-text table: EM and NLL of the target, collateral, weights changed, EM after relearning."""
        head = f"{'run':<28} {'tgt EM':>7} {'tgt NLL':>8} {'edit EM':>7} {'MEM EM':>7} {'NMEM EM':>8} {'ppl':>7} {'changed':>9} {'relearn EM':>10}"
        b = self.before
        lines = [head, f"{'original':<28} {b['target_em']:>7.2f} {b['target_nll']:>8.3f} {'':>7} {b['other_mem_em']:>7.2f} "
                       f"{b['nmem_em']:>8.2f} {b['heldout_ppl']:>7.2f} {0:>9} {'':>10}"]
        for lab, a, r, w in zip(self.labels, self.after, self.relearned, self.weights_changed):
            edit = f"{a['edit_em']:>7.2f}" if math.isfinite(a["edit_em"]) else f"{'':>7}"
            rel = f"{r['target_em']:>10.2f}" if r else f"{'':>10}"
            lines.append(f"{lab:<28} {a['target_em']:>7.2f} {a['target_nll']:>8.3f} {edit} {a['other_mem_em']:>7.2f} "
                         f"{a['nmem_em']:>8.2f} {a['heldout_ppl']:>7.2f} {w:>9.0f} {rel}")
        return "\n".join(lines)


def paper_configs(*, lr: float = 1e-5, steps: int = 5, weight_decay: float = 1.0, fraction: float = 0.001) -> list[UnlearnConfig]:
    """The six runs of the paper's Figure 5: unlearn / edit x all / top-fraction / random-fraction."""
    return [UnlearnConfig(method=m, select=s, fraction=fraction, lr=lr, steps=steps, weight_decay=weight_decay)
            for m in ("unlearn", "edit") for s in ("all", "topk", "random")]


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
) -> UnlearningTable:
    """Run every config once per target (target i with retain paragraphs [i*k, (i+1)*k)), then average.

    `configs` are UnlearnConfig or interp.reft.ReftConfig (anything with `.run(...)`, `.label`,
    `.to_dict()`); `edit_targets` aligns with `targets` and is needed for edit configs. `on_run` is
    called with every run's result (e.g. to keep an edited model); results are not kept otherwise."""
    if len(retain) < retain_per_run * len(targets):
        raise UserError(f"{len(targets)} runs x {retain_per_run} retain paragraphs need {retain_per_run * len(targets)} "
                        f"retain (NMEM) paragraphs, got {len(retain)}")
    before = evaluate(model, targets, probe, edit_targets=edit_targets)
    after, relearned, trained, changed, per_run = [], [], [], [], []
    for config in configs:
        runs_after, runs_relearn, n_trained, n_changed = [], [], [], []
        for i in range(len(targets)):
            target = targets.select([i])
            edit = edit_targets.select([i]) if edit_targets is not None else None
            kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
            result = config.run(model, target, kept, edit_targets=edit, probe=probe, before=before)
            if on_run is not None:
                on_run(result)
            record = {"label": config.label, "target": target.ids[0], "before": before.summary() | {
                "target_em": float(before.target_em[i]), "target_nll": float(before.target_nll[i])}, "after": result.after.summary(),
                "trained": result.trained, "weights_changed": result.weights_changed, "losses": result.losses.tolist()}
            if relearn_config is not None:
                attacked = relearn(result.model, target, kept, relearn_config, hooks=result.hooks())
                record["relearned"] = evaluate(attacked, target, None, hooks=result.hooks()).summary()
                runs_relearn.append(record["relearned"])
            runs_after.append(result.after.summary())
            n_trained.append(result.trained)
            n_changed.append(result.weights_changed)
            per_run.append(record)
        after.append(_mean_summaries(runs_after))
        relearned.append(_mean_summaries(runs_relearn) if runs_relearn else {})
        trained.append(sum(n_trained) / len(n_trained))
        changed.append(sum(n_changed) / len(n_changed))
    return UnlearningTable(
        labels=tuple(c.label for c in configs), configs=tuple(c.to_dict() for c in configs),
        before=before.summary(), after=tuple(after), relearned=tuple(relearned), trained=tuple(trained),
        weights_changed=tuple(changed), per_run=tuple(per_run),
        settings={"targets": list(targets.ids), "retain_per_run": retain_per_run, "probe_mem": len(probe.mem),
                  "probe_nmem": len(probe.nmem), "probe_heldout": len(probe.heldout),
                  "relearn": asdict(relearn_config) if relearn_config else None},
    )
