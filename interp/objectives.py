"""Training objectives over continuations, all MINIMISED, all differentiable in the model.

- `continuation_nll`: plain NLL of the continuation (the gradient maps' plain objective).
- `contrastive_objective`: the paper's Eq. 3, -w * NLL(target) + KL(original || current) on
  retain paragraphs; minimising it forgets the target while keeping the rest unchanged.
- `edit_objective`: Eq. 4, +NLL of the target prefix with a NEW continuation, plus the same KL.
- `gradient_ascent`, `gradient_difference`, `npo`: the common unlearning baselines.

The KL term needs the ORIGINAL model's log-probs on the retain paragraphs, computed once and
detached (`reference_log_probs`), so no second model has to stay in memory during training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from interp.backend import Model

NLL_WEIGHT = 0.1  # the public code of the paper weights the NLL term of Eq. 3 by 0.1


def _continuation_logits(model: Model, tokens: Int[Tensor, "n seq"], prefix_len: int) -> Float[Tensor, "n cont vocab"]:
    logits = model(tokens.to(model.cfg.device), return_type="logits")
    return logits[:, prefix_len - 1 : -1].float()


def token_nll(model: Model, tokens: Int[Tensor, "n seq"], prefix_len: int) -> Float[Tensor, "n cont"]:
    """-log p(true token) at every continuation position."""
    logp = _continuation_logits(model, tokens, prefix_len).log_softmax(-1)
    target = tokens[:, prefix_len:].to(logp.device)
    return -logp.gather(-1, target[..., None]).squeeze(-1)


def continuation_nll(model: Model, tokens: Int[Tensor, "n seq"], prefix_len: int, *, reduction: str = "mean") -> Tensor:
    """Mean NLL per paragraph over its continuation, then 'mean' / 'sum' over paragraphs, or 'none'."""
    per_paragraph = token_nll(model, tokens, prefix_len).mean(dim=1)
    if reduction == "none":
        return per_paragraph
    if reduction == "sum":
        return per_paragraph.sum()
    if reduction == "mean":
        return per_paragraph.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


@torch.no_grad()
def reference_log_probs(model: Model, tokens: Int[Tensor, "n seq"], prefix_len: int) -> Float[Tensor, "n cont vocab"]:
    """The model's log-probs over the continuation positions, detached: the KL term's anchor."""
    return _continuation_logits(model, tokens, prefix_len).log_softmax(-1)


def kl_to_reference(
    model: Model,
    tokens: Int[Tensor, "n seq"],
    prefix_len: int,
    reference: Float[Tensor, "n cont vocab"],
) -> Tensor:
    """KL(original || current), summed over the vocabulary, averaged over paragraphs and continuation positions."""
    current = _continuation_logits(model, tokens, prefix_len).log_softmax(-1)
    kl = F.kl_div(current, reference.to(current.device), log_target=True, reduction="none").sum(-1)
    return kl.mean()


def contrastive_objective(
    model: Model,
    targets: Int[Tensor, "n_target seq"],
    retain: Int[Tensor, "n_retain seq"],
    prefix_len: int,
    retain_reference: Float[Tensor, "n_retain cont vocab"],
    *,
    nll_weight: float = NLL_WEIGHT,
) -> Tensor:
    """Eq. 3: -w * NLL(targets) + KL(original || current) on the retain paragraphs: Eq. 4's loss on the targets
    themselves with the NLL's weight negated (forget them rather than learn them)."""
    return edit_objective(model, targets, retain, prefix_len, retain_reference, nll_weight=-nll_weight)


def edit_objective(
    model: Model,
    edit_targets: Int[Tensor, "n_target seq"],
    retain: Int[Tensor, "n_retain seq"],
    prefix_len: int,
    retain_reference: Float[Tensor, "n_retain cont vocab"],
    *,
    nll_weight: float = 1.0,
) -> Tensor:
    """Eq. 4: +w * NLL of the target prefixes followed by their NEW continuations, plus the KL term."""
    return nll_weight * continuation_nll(model, edit_targets, prefix_len) + kl_to_reference(
        model, retain, prefix_len, retain_reference
    )


def gradient_ascent(model: Model, targets: Int[Tensor, "n seq"], prefix_len: int) -> Tensor:
    """-NLL(targets): push the continuation's likelihood down, with nothing holding the rest."""
    return -continuation_nll(model, targets, prefix_len)


def gradient_difference(
    model: Model,
    targets: Int[Tensor, "n_target seq"],
    retain: Int[Tensor, "n_retain seq"],
    prefix_len: int,
    *,
    retain_weight: float = 1.0,
) -> Tensor:
    """-NLL(targets) + w * NLL(retain)."""
    return -continuation_nll(model, targets, prefix_len) + retain_weight * continuation_nll(model, retain, prefix_len)


def npo(
    model: Model,
    targets: Int[Tensor, "n seq"],
    prefix_len: int,
    target_reference_nll: Float[Tensor, "n"],
    *,
    beta: float = 0.1,
) -> Tensor:
    """Negative preference optimisation (Zhang et al. 2024): -(2/beta) log sigmoid(-beta log(pi/pi_ref)).

    `target_reference_nll` is the original model's summed continuation NLL per paragraph
    (`token_nll(...).sum(1)` under no_grad); log(pi/pi_ref) = ref_nll - nll.
    """
    nll_now = token_nll(model, targets, prefix_len).sum(dim=1)
    log_ratio = target_reference_nll.to(nll_now.device) - nll_now
    return (-2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()
