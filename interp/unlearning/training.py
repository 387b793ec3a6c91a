"""The training loop and the objective dispatch shared by every unlearning method.

`objective` turns a method name (paper Eq. 3 `unlearn`, Eq. 4 `edit`, `ga`, `graddiff`, `npo`) and
the target / retain paragraphs into a loss closure; `optimise` runs a few Adam steps of it. Masked
fine-tuning (`interp.unlearning.masked`), LoReFT (`interp.unlearning.reft`) and the relearning attack
(`interp.unlearning.relearning`) all train through these two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.backend import Model
from interp.data import Paragraphs
from interp.errors import UserError
from interp.objectives import (
    NLL_WEIGHT,
    contrastive_objective,
    edit_objective,
    gradient_ascent,
    gradient_difference,
    npo,
    reference_log_probs,
    token_nll,
)
from interp.reproducible import deterministic_kernels
from interp.unlearning.config import (  # noqa: F401 (public names kept here)
    BASELINES,
    METHODS,
    RETAIN_PER_RUN,
    ReftConfig,
    UnlearnConfig,
    check_training_settings,
)


class Diverged(UserError):
    """The loss became non-finite during training (the rate is too high for the steps). A UserError, so a
    single run stops with the message; calibration catches it and records the rate as diverged."""

    def __init__(self, loss: float, step: int, steps: int, lr: float):
        super().__init__(
            f"the loss became {loss} at step {step} of {steps}: lower the learning rate (now {lr}) or the steps"
        )
        self.loss, self.step, self.steps, self.lr = loss, step, steps, lr


def optimise(
    loss_fn: Callable[[], Tensor],
    params: Sequence[torch.nn.Parameter],
    *,
    steps: int,
    lr: float,
    weight_decay: float,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> Float[Tensor, "steps"]:
    """`steps` Adam steps (coupled weight decay, as torch.optim.Adam) on `loss_fn`; returns each step's loss.

    `before_step` runs between the backward pass and the optimiser step (e.g. to mask gradients),
    `after_step` after the step (e.g. to restore weights). Raises `Diverged` (a UserError naming the
    step) when the loss is not finite. Runs under `deterministic_kernels`, so the same run ends at the same
    weights twice (training the token embedding is otherwise not reproducible on several CPU threads)."""
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    losses = []
    with deterministic_kernels():
        for step in range(steps):
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn()
            if not torch.isfinite(loss):
                raise Diverged(float(loss), step + 1, steps, lr)
            loss.backward()
            if before_step is not None:
                before_step()
            optimiser.step()
            if after_step is not None:
                after_step()
            losses.append(float(loss.detach()))
    return torch.tensor(losses)


def config_optimise(
    config: UnlearnConfig | ReftConfig,
    loss_fn: Callable[[], Tensor],
    params: Sequence[torch.nn.Parameter],
    **step_hooks: Callable[[], None] | None,
) -> Float[Tensor, "steps"]:
    """`optimise` with a run's settings (`steps`, `lr`, `weight_decay`), which masked fine-tuning and LoReFT share;
    `step_hooks`: `optimise`'s before_step and after_step."""
    return optimise(loss_fn, params, steps=config.steps, lr=config.lr, weight_decay=config.weight_decay, **step_hooks)


def objective(
    method: str,
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    *,
    edit_targets: Paragraphs | None,
    nll_weight: float | None,
    retain_weight: float,
    npo_beta: float,
) -> Callable[[], Tensor]:
    """A closure computing `method`'s loss on `model`; anchors (KL reference, NPO reference) are taken now."""
    p = targets.prefix_len
    if method == "decay":  # a zero loss that reaches every trainable weight, so Adam applies its decay to them
        return lambda: sum(w.sum() * 0.0 for w in model.parameters() if w.requires_grad)
    if method in ("unlearn", "edit", "graddiff") and len(retain) == 0:
        raise UserError(f"method {method!r} needs retain paragraphs (NMEM) for its second term")
    if method == "unlearn":
        ref = reference_log_probs(model, retain.tokens, p)
        w = NLL_WEIGHT if nll_weight is None else nll_weight
        return lambda: contrastive_objective(model, targets.tokens, retain.tokens, p, ref, nll_weight=w)
    if method == "edit":
        if edit_targets is None or len(edit_targets) != len(targets):
            raise UserError(
                "the edit objective needs one edit target per target (prefix + new continuation); "
                "make them with interp.perturbation.prefix_perturbation(...).editing_targets"
            )
        ref = reference_log_probs(model, retain.tokens, p)
        w = 1.0 if nll_weight is None else nll_weight
        return lambda: edit_objective(model, edit_targets.tokens, retain.tokens, p, ref, nll_weight=w)
    if method == "ga":
        return lambda: gradient_ascent(model, targets.tokens, p)
    if method == "graddiff":
        return lambda: gradient_difference(model, targets.tokens, retain.tokens, p, retain_weight=retain_weight)
    with torch.no_grad():
        ref_nll = token_nll(model, targets.tokens, p).sum(dim=1)
    return lambda: npo(model, targets.tokens, p, ref_nll, beta=npo_beta)


def config_objective(
    config: UnlearnConfig | ReftConfig,
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    *,
    edit_targets: Paragraphs | None,
) -> Callable[[], Tensor]:
    """`objective` with a run's settings: its method and loss weights (`nll_weight`, `retain_weight`, `npo_beta`),
    which every method that trains on the objectives shares."""
    return objective(
        config.method,
        model,
        targets,
        retain,
        edit_targets=edit_targets,
        nll_weight=config.nll_weight,
        retain_weight=config.retain_weight,
        npo_beta=config.npo_beta,
    )
