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
- `experiments`: `unlearning_table`, the paper's Figure 5 over many configurations and targets,
  with the relearning attack's controls.

LoReFT, the representation method trained with the same loop, is `interp.reft`.
"""

from interp.unlearning.calibration import (
    LR_GRID,
    TOLERANCE,
    Calibration,
    MatchedForgetting,
    TracePoint,
    calibrate,
    calibrated_configs,
)
from interp.unlearning.evaluation import Evaluation, Hook, Probe, evaluate, probe_sets
from interp.unlearning.experiments import COLUMNS, UnlearningTable, heldout_pipeline, paper_configs, unlearning_table
from interp.unlearning.masked import SELECTIONS, UnlearnConfig, UnlearnResult, select_weights, unlearn
from interp.unlearning.relearning import RelearnConfig, relearn
from interp.unlearning.training import (
    BASELINES,
    METHODS,
    RETAIN_PER_RUN,
    Diverged,
    check_training_settings,
    objective,
    optimise,
)

__all__ = [
    "COLUMNS",
    "LR_GRID",
    "TOLERANCE",
    "RETAIN_PER_RUN",
    "Calibration",
    "Diverged",
    "MatchedForgetting",
    "TracePoint",
    "calibrate",
    "calibrated_configs",
    "BASELINES",
    "METHODS",
    "SELECTIONS",
    "Evaluation",
    "Hook",
    "Probe",
    "RelearnConfig",
    "UnlearnConfig",
    "UnlearnResult",
    "UnlearningTable",
    "check_training_settings",
    "evaluate",
    "heldout_pipeline",
    "objective",
    "optimise",
    "paper_configs",
    "probe_sets",
    "relearn",
    "select_weights",
    "unlearn",
    "unlearning_table",
]
