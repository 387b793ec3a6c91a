"""Unlearning by fine-tuning only selected weights of a COPY of the model.

`unlearn` deep-copies the model, picks a fixed weight mask (the top fraction by |gradient| of the
paper's contrastive objective, a random mask of the same size, or all weights; optionally
restricted to layers, MLP / attention, one head), and runs a few Adam steps of one objective
(paper Eq. 3 `unlearn`, Eq. 4 `edit`, `ga`, `graddiff`, `npo`). After every step the weights
outside the mask are copied back from the original, so neither the gradient nor Adam's weight
decay can move them: they stay bit-identical. `decay_outside_mask=True` reproduces the paper's
public code instead: the gradient outside the mask is zeroed before every step, so with weight
decay 0 only the masked weights move, and with weight decay > 0 Adam's coupled decay also shrinks
the unmasked weights of every tensor the mask touches toward 0 (tensors it does not touch are
never trained).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.backend import Model, copy_model, leaf_masks, named_weights
from interp.conventions import PAPER, TOOLKIT  # noqa: F401 (names here before UnlearnConfig moved)
from interp.data import Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.gradients import parameter_gradients, selected_parameters
from interp.masks import SCOPES, candidate_mask, matched_random_mask, top_k_mask, uniform_random_mask  # noqa: F401
from interp.unlearning.config import SELECTIONS, UnlearnConfig  # noqa: F401 (public names kept here)
from interp.unlearning.evaluation import Evaluation, Hook, Probe, evaluate
from interp.unlearning.method import run_json
from interp.unlearning.training import check_training_settings, config_objective, config_optimise, objective, optimise  # noqa: F401


def select_weights(
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    config: UnlearnConfig,
    *,
    edit_targets: Paragraphs | None = None,
) -> dict[str, Bool[Tensor, "..."]]:
    """The config's fixed mask, chosen AMONG the candidate weights (layers / components / head restriction
    first, as the paper's code). The candidates are the paper's weights: W_Q, W_K, W_V, W_O, W_in, W_out
    (no embeddings, biases, LayerNorms). top-k ranks |gradient| of Eq. 3 at the start (for `edit`: of
    Eq. 4 on the edit targets; at the start both equal a scaled target NLL gradient, the KL gradient
    being 0); "random" draws the same fraction uniformly over the candidates (the paper's control);
    "random_matched" keeps the top-k mask's count in every tensor at random places."""
    candidates = candidate_mask(
        selected_parameters(model), layers=config.layers, components=config.components, head=config.head
    )
    if config.select == "all":
        return candidates
    if config.select == "random":
        return uniform_random_mask(candidates, config.fraction, seed=config.seed)
    source = edit_targets if config.method == "edit" and edit_targets is not None else targets
    grads = parameter_gradients(model, source, retain, objective="contrastive")
    top = top_k_mask(grads, fraction=config.fraction, scope=config.scope, candidates=candidates)
    if config.select == "random_matched":
        return matched_random_mask(top, seed=config.seed, candidates=candidates)
    return top


@dataclass(frozen=True)
class UnlearnResult(Displayed):
    """A masked fine-tuning run: the edited COPY, the scores before and after, and what changed."""

    _view = "interp.views.unlearning:figure_unlearn_run"

    config: UnlearnConfig
    target_ids: tuple[str, ...]
    model: Model = field(repr=False)  # the edited copy
    before: Evaluation
    after: Evaluation
    losses: Float[Tensor, "steps"]
    trained: int  # weights selected by the mask
    weights_changed: int  # weights whose value differs from the original, over the whole model

    def hooks(self) -> list[Hook]:
        return []

    def to_json(self) -> dict:
        return run_json(self) | {
            "losses": self.losses,
            "trained": self.trained,
            "weights_changed": self.weights_changed,
        }


def unlearn(
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    config: UnlearnConfig = UnlearnConfig(),
    *,
    edit_targets: Paragraphs | None = None,
    mask: dict[str, Bool[Tensor, "..."]] | None = None,
    probe: Probe | None = None,
    before: Evaluation | None = None,
    on_step: Callable[[Model], None] | None = None,
) -> UnlearnResult:
    """Fine-tune a deep copy of `model` on `config.method`, updating only the masked weights.

    `mask` overrides the config's selection (keys: TransformerLens parameter names). `on_step(edited)`
    is called after every optimiser step with the edited copy (e.g. to score the targets along the run).
    `model` is left untouched (weights, gradients, requires_grad flags)."""
    if len(targets) == 0:
        raise UserError("no target paragraphs to unlearn")
    if mask is None:
        mask = select_weights(model, targets, retain, config, edit_targets=edit_targets)
    edited = copy_model(model)
    named = named_weights(edited)
    unknown = sorted(set(mask) - set(named))
    if unknown:
        raise UserError(f"the mask names parameters the model does not have: {unknown[:3]}")
    mask = {n: m.to(named[n].leaf.device) for n, m in mask.items() if bool(m.any())}
    if not mask:
        raise UserError("the mask selects no weights: widen --fraction or the layer/component restriction")
    leaves, masks = leaf_masks(named, mask)  # per leaf parameter (one leaf may hold several named weights)
    flags = [(p, p.requires_grad) for p in edited.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    for p in leaves:
        p.requires_grad_(True)
    originals = [p.detach().clone() for p in leaves]

    def keep_unmasked() -> None:
        with torch.no_grad():
            for p, m, original in zip(leaves, masks, originals):
                p.copy_(torch.where(m, p, original))

    def zero_grad_outside_mask() -> None:
        for p, m in zip(leaves, masks):
            if p.grad is not None:
                p.grad.mul_(m.to(p.grad.dtype))

    loss_fn = config_objective(config, edited, targets, retain, edit_targets=edit_targets)
    if before is None:
        before = evaluate(model, targets, probe, edit_targets=edit_targets)

    def after_step() -> None:
        if not config.decay_outside_mask:
            keep_unmasked()
        if on_step is not None:
            on_step(edited)

    try:
        losses = config_optimise(
            config,
            loss_fn,
            leaves,
            before_step=zero_grad_outside_mask if config.decay_outside_mask else None,
            after_step=after_step,
        )
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = None
    changed = sum(int((p.detach() != q.detach()).sum()) for p, q in zip(edited.parameters(), model.parameters()))
    return UnlearnResult(
        config=config,
        target_ids=targets.ids,
        model=edited,
        before=before,
        after=evaluate(edited, targets, probe, edit_targets=edit_targets),
        losses=losses,
        trained=int(sum(int(m.sum()) for m in mask.values())),
        weights_changed=changed,
    )
