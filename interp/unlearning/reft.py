"""Unlearning without touching weights: a LoReFT intervention on one layer's residual stream.

LoReFT (Wu et al. 2024): h' = h + R^T (W h + b - R h), with R [rank, d_model] having orthonormal
rows (torch's orthogonal parametrization), W [rank, d_model] and b [rank] free. It edits h only
inside the rank-dimensional subspace spanned by R. It is applied at `blocks.L.hook_resid_post`,
every position, through TransformerLens hooks on the FROZEN model, and trained with the same
objectives as the weight edits (interp.unlearning.objective). W starts equal to R and b at 0, so the
intervention starts as the identity and every change in behaviour comes from training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from interp.backend import Model, act_name, hooks_on
from interp.data import Paragraphs
from interp.errors import UserError
from interp.unlearning import Evaluation, Hook, Probe, check_training_settings, evaluate, objective, optimise  # noqa: F401
from interp.unlearning.config import ReftConfig
from interp.unlearning.method import run_json
from interp.unlearning.training import config_objective, config_optimise


class LoReFT(nn.Module):
    """h + R^T (W h + b - R h) with orthonormal rows in R; the identity at initialisation."""

    def __init__(self, d_model: int, rank: int):
        super().__init__()
        self.rotate = orthogonal(nn.Linear(d_model, rank, bias=False))  # R
        self.source = nn.Linear(d_model, rank)  # W, b
        with torch.no_grad():
            self.source.weight.copy_(self.rotate.weight)
            self.source.bias.zero_()

    def forward(self, h: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_model"]:
        r = self.rotate.weight
        return h + (self.source(h) - h @ r.T) @ r


@dataclass(frozen=True)
class ReftResult:
    """The trained intervention and the scores of the frozen model with it on. `model` is the
    original model itself (unchanged); apply the intervention with `interp.backend.hooks_on(model, result.hooks())`."""

    config: ReftConfig
    layer: int
    target_ids: tuple[str, ...]
    model: Model = field(repr=False)
    intervention: LoReFT = field(repr=False)
    before: Evaluation
    after: Evaluation
    losses: Float[Tensor, "steps"]
    trained: int  # intervention parameters
    weights_changed: int = 0  # the model's weights are frozen; interp's tests check they stay bit-identical

    @property
    def hook_name(self) -> str:
        return act_name("resid_post", self.layer)

    def hooks(self) -> list[Hook]:
        return intervention_hooks(self.intervention, self.layer)

    def to_json(self) -> dict:
        return run_json(self) | {
            "layer": self.layer,
            "losses": self.losses,
            "trained": self.trained,
            "weights_changed": self.weights_changed,
        }


class InterventionHook(nn.Module):
    """A forward hook applying `intervention` to the activation it is attached to; a module, so that copies
    and attacks of the unlearned system (interp.audit) reach the intervention's parameters."""

    def __init__(self, intervention: nn.Module):
        super().__init__()
        self.intervention = intervention

    def forward(self, act: Float[Tensor, "*batch d_model"], hook=None) -> Float[Tensor, "*batch d_model"]:
        return self.intervention(act)


def intervention_hooks(intervention: LoReFT, layer: int) -> list[Hook]:
    """Forward hooks that replace layer `layer`'s residual stream output by the intervention's."""
    return [(act_name("resid_post", layer), InterventionHook(intervention))]


def reft_unlearn(
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    config: ReftConfig = ReftConfig(),
    *,
    edit_targets: Paragraphs | None = None,
    probe: Probe | None = None,
    before: Evaluation | None = None,
) -> ReftResult:
    """Train a LoReFT intervention on the frozen `model` for `config.method`; the model is not changed."""
    if len(targets) == 0:
        raise UserError("no target paragraphs to unlearn")
    layer = model.cfg.n_layers // 2 if config.layer is None else config.layer
    if not 0 <= layer < model.cfg.n_layers:
        raise UserError(f"ReFT layer {layer} out of range: the model has layers 0..{model.cfg.n_layers - 1}")
    if not config.rank <= model.cfg.d_model:
        raise UserError(f"ReFT rank {config.rank} exceeds d_model {model.cfg.d_model}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        intervention = LoReFT(model.cfg.d_model, config.rank).to(model.cfg.device)
    hooks = intervention_hooks(intervention, layer)
    if before is None:
        before = evaluate(model, targets, probe, edit_targets=edit_targets)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        loss_fn = config_objective(config, model, targets, retain, edit_targets=edit_targets)

        def hooked_loss() -> Tensor:
            with hooks_on(model, hooks):
                return loss_fn()

        losses = config_optimise(config, hooked_loss, list(intervention.parameters()))
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
    intervention.requires_grad_(False)
    return ReftResult(
        config=config,
        layer=layer,
        target_ids=targets.ids,
        model=model,
        intervention=intervention,
        before=before,
        after=evaluate(model, targets, probe, edit_targets=edit_targets, hooks=hooks),
        losses=losses,
        trained=sum(p.numel() for p in intervention.parameters()),
    )
