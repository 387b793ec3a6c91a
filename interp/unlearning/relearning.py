"""The relearning attack: a few steps of plain fine-tuning on related text that does not contain
the forgotten continuation. A forgotten paragraph that comes straight back was hidden, not removed.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from interp.backend import Model, copy_model, hooks_on
from interp.data import Paragraphs
from interp.unlearning.config import RelearnConfig
from interp.unlearning.evaluation import Hook
from interp.unlearning.proxy import ProxyModel
from interp.unlearning.training import check_training_settings, optimise  # noqa: F401 (a name here before)


def relearn(
    model: Model | ProxyModel,
    targets: Paragraphs,
    retain: Paragraphs,
    config: RelearnConfig = RelearnConfig(),
    *,
    hooks: Sequence[Hook] = (),
) -> Model | ProxyModel:
    """A copy of `model` fine-tuned (all weights, next-token loss, `hooks` active) on the relearning text. A
    decoding-time ensemble (proxy.ProxyModel) is attacked through its weights, the base's: the copy is the
    relearned base steered by the same small models' difference."""
    if isinstance(model, ProxyModel):
        return model.with_base(relearn(model.base, targets, retain, config, hooks=hooks))
    tokens = targets.prefixes if config.data == "prefix" else retain.tokens
    attacked = copy_model(model)
    params = [p for p in attacked.parameters() if p.requires_grad]

    def loss() -> Tensor:
        with hooks_on(attacked, hooks):
            return attacked(tokens.to(attacked.cfg.device), return_type="loss")

    optimise(loss, params, steps=config.steps, lr=config.lr, weight_decay=0.0)
    for p in params:
        p.grad = None
    return attacked
