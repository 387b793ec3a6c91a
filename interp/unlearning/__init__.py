"""Unlearning memorized paragraphs and measuring what it costs (Stoehr et al. 2024 section 5.3,
Hong et al. 2024).

- `training`: the objective dispatch (Eq. 3 `unlearn`, Eq. 4 `edit`, `ga`, `graddiff`, `npo`) and
  the Adam loop that every method trains through.
- `masked`: `unlearn`, fine-tuning only the weights of a fixed mask on a COPY of the model.
- `evaluation`: `evaluate` on the targets and fixed collateral-damage probes (`probe_sets`).
- `relearning`: `relearn`, the recovery attack.
- `calibration`: `calibrate`, the learning rate at which a method brings every target to a stated
  forgetting, so methods are compared at matched strength; its trace is the method's forgetting curve.
  `MatchedForgetting` holds its options for `unlearning_table`.
- `sets`: `unlearning_sets`, the targets, retain sets and probes of one table, chosen by one rule for
  `interp unlearn` and the report.
- `experiments`: `unlearning_table`, the paper's Figure 5 over many configurations and targets,
  with the relearning attack's controls.
- `config`: the methods' settings (`UnlearnConfig`, `MatchedForgetting`, `RelearnConfig`, `ProxyConfig`,
  `ReftConfig`), apart from torch.
- `method`: what any method is to the rest (`UnlearningMethod`, `UnlearningRun`): how to add one.
- `reft`: LoReFT, the representation method trained with the same loop (`reft_unlearn`).
- `proxy`: decoding-time unlearning (a small unlearned model's logit difference).

Names are imported on first use: `interp.unlearning.config` alone does not load torch.
"""

from __future__ import annotations

from interp._lazy import lazy_names

_SOURCES = {
    "interp.unlearning.config": (
        "BASELINES",
        "METHODS",
        "RETAIN_PER_RUN",
        "SELECTIONS",
        "TOLERANCE",
        "MatchedForgetting",
        "RelearnConfig",
        "UnlearnConfig",
        "check_training_settings",
    ),
    "interp.unlearning.calibration": ("LR_GRID", "Calibration", "TracePoint", "calibrate", "calibrated_configs"),
    "interp.unlearning.evaluation": ("Evaluation", "Hook", "Probe", "evaluate", "probe_sets"),
    "interp.unlearning.experiments": (
        "COLUMNS",
        "UnlearningTable",
        "heldout_pipeline",
        "paper_configs",
        "unlearning_table",
    ),
    "interp.unlearning.masked": ("UnlearnResult", "select_weights", "unlearn"),
    "interp.unlearning.method": ("UnlearningMethod", "UnlearningRun"),
    "interp.unlearning.reft": ("LoReFT", "ReftResult", "reft_unlearn"),
    "interp.unlearning.relearning": ("relearn",),
    "interp.unlearning.sets": ("UnlearningSets", "unlearning_sets"),
    "interp.unlearning.training": ("Diverged", "objective", "optimise"),
}

__all__ = sorted(name for names in _SOURCES.values() for name in names)

__getattr__, __dir__ = lazy_names(globals(), _SOURCES)
