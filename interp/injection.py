"""Forcing new paragraphs into a COPY of a model through a known place: one head, or chosen MLP neurons.

The known-answer half of the locator benchmark (interp.locator_validation). Paragraphs the model
cannot recite are trained into a deep copy until it recites every one of them (teacher-forced EM
= the full continuation), while ONLY the chosen weights move:
- `inject_head`: the head's slices of W_Q, W_K, W_V, W_O and b_Q, b_K, b_V (b_O is shared by all
  heads and stays);
- `inject_neurons`: the W_out rows of the chosen MLP neurons (MemPi's INJ: `inject.py` trains the
  FFN output weights with the gradient masked to a random set of neurons), so the neurons' values
  change while what makes them fire does not.
Every other gradient is zeroed before each Adam step (no weight decay, so untouched weights stay
bit-for-bit). A KL term KL(original || copy) on other text (`retain`, continuation positions)
keeps the rest of the model's behaviour; how far it still moved is reported as the perplexity
of held-out paragraphs before and after. The model given is never changed.

Layers below the lowest trained one cannot change, so their output (the residual stream entering
that layer) is computed once and every step starts there (`start_at_layer`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.errors import UserError
from interp.metrics import em_from_hits, score_paragraphs
from interp.unit_scores import Stopwatch, unit_count

HEAD_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")


@dataclass(frozen=True)
class Injection:
    """What was forced where, and what it cost the rest of the model.

    `units` are the trained (layer, index) cells of kind `unit`; `em_before` / `em_after` the
    injected paragraphs' EM on the original model and on the copy; held-out perplexity =
    exp(mean continuation NLL) of paragraphs used neither for injection nor for the KL term.
    """

    unit: str
    units: Int[Tensor, "k 2"]
    parameters: tuple[str, ...]
    ids: tuple[str, ...]
    continuation_len: int
    steps: int
    em_before: Int[Tensor, "n"]
    em_after: Int[Tensor, "n"]
    heldout_ppl_before: float
    heldout_ppl_after: float
    kl_weight: float
    lr: float
    seconds: float
    loss: tuple[float, ...]

    @property
    def recited(self) -> bool:
        """Whether the copy recites every injected paragraph in full."""
        return bool((self.em_after == self.continuation_len).all())

    @property
    def recited_mask(self) -> Bool[Tensor, "n"]:
        """Which injected paragraphs the copy recites in full (the ones whose storage is known)."""
        return self.em_after == self.continuation_len

    @property
    def n_recited(self) -> int:
        return int(self.recited_mask.sum())

    def gold(self, n_layers: int, n_units: int) -> Bool[Tensor, "layer index"]:
        """The trained units as a [layer, index] mask (the answer a locator should find)."""
        mask = torch.zeros(n_layers, n_units, dtype=torch.bool)
        mask[self.units[:, 0], self.units[:, 1]] = True
        return mask

    def to_json(self) -> dict:
        return {
            "unit": self.unit,
            "units": self.units,
            "parameters": list(self.parameters),
            "ids": list(self.ids),
            "steps": self.steps,
            "recited": self.recited,
            "n_recited": self.n_recited,
            "em_before": self.em_before,
            "em_after": self.em_after,
            "heldout_ppl_before": self.heldout_ppl_before,
            "heldout_ppl_after": self.heldout_ppl_after,
            "kl_weight": self.kl_weight,
            "lr": self.lr,
            "seconds": self.seconds,
            "loss_first_last": [self.loss[0], self.loss[-1]],
        }


def _check_sets(paragraphs: Paragraphs, retain: Paragraphs, heldout: Paragraphs) -> None:
    if len(paragraphs) == 0:
        raise UserError("nothing to inject: the paragraph set is empty")
    for name, other in (("retain", retain), ("held-out", heldout)):
        if len(other) == 0:
            raise UserError(
                f"the {name} set is empty: injection needs other text to keep the model's behaviour and measure it"
            )
        if (other.prefix_len, other.seq_len) != (paragraphs.prefix_len, paragraphs.seq_len):
            raise UserError(f"{name} paragraphs must have the injected paragraphs' prefix and continuation lengths")
        shared = set(other.ids) & set(paragraphs.ids)
        if shared:
            raise UserError(f"{name} paragraphs must differ from the injected ones; shared ids: {sorted(shared)[:5]}")


@torch.no_grad()
def _resid_at(model: HookedTransformer, tokens: Int[Tensor, "n seq"], layer: int) -> Tensor:
    return model(tokens.to(model.cfg.device), stop_at_layer=layer)


def _heldout_ppl(model: HookedTransformer, heldout: Paragraphs, batch_size: int) -> float:
    return math.exp(float(score_paragraphs(model, heldout, batch_size).nll.mean()))


def _force(
    model: HookedTransformer,
    unit: str,
    units: Tensor,
    grad_masks: dict[str, Tensor],
    paragraphs: Paragraphs,
    retain: Paragraphs,
    heldout: Paragraphs,
    lr: float,
    max_steps: int,
    kl_weight: float,
    batch_size: int,
) -> tuple[HookedTransformer, Injection]:
    """Train a deep copy's `grad_masks` entries (name -> which elements may move) until every paragraph is recited."""
    _check_sets(paragraphs, retain, heldout)
    if max_steps < 1 or lr <= 0 or kl_weight < 0:
        raise UserError("injection needs max_steps >= 1, lr > 0 and kl_weight >= 0")
    clock = Stopwatch()
    p, cont = paragraphs.prefix_len, paragraphs.continuation_len
    em_before = score_paragraphs(model, paragraphs, batch_size).em
    ppl_before = _heldout_ppl(model, heldout, batch_size)
    forced = copy.deepcopy(model)
    named = dict(forced.named_parameters())
    params = [named[n] for n in grad_masks]
    start = min(int(n.split(".")[1]) for n in grad_masks)
    tokens = paragraphs.tokens.to(model.cfg.device)
    retain_tokens = retain.tokens.to(model.cfg.device)
    resid = _resid_at(model, tokens, start)
    retain_resid = _resid_at(model, retain_tokens, start)
    with torch.no_grad():
        reference = torch.cat(
            [
                model(retain_resid[i : i + batch_size], start_at_layer=start)[:, p - 1 : -1].float().log_softmax(-1)
                for i in range(0, len(retain), batch_size)
            ]
        )
    for q in forced.parameters():
        q.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    losses: list[float] = []
    steps = 0
    try:
        for steps in range(max_steps + 1):
            logits = forced(resid, start_at_layer=start)[:, p - 1 : -1].float()
            if (em_from_hits(logits.argmax(-1) == tokens[:, p:]) == cont).all() or steps == max_steps:
                break
            loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, p:].flatten())
            if kl_weight > 0:
                current = forced(retain_resid, start_at_layer=start)[:, p - 1 : -1].float().log_softmax(-1)
                loss = loss + kl_weight * F.kl_div(current, reference, log_target=True, reduction="none").sum(-1).mean()
            opt.zero_grad(set_to_none=False)
            loss.backward()
            for q, keep in zip(params, grad_masks.values()):
                q.grad.mul_(keep.to(q.grad.dtype))
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        for q in forced.parameters():
            q.requires_grad_(True)
            q.grad = None
    forced.eval()
    em_after = score_paragraphs(forced, paragraphs, batch_size).em
    info = Injection(
        unit,
        units,
        tuple(grad_masks),
        paragraphs.ids,
        cont,
        steps,
        em_before,
        em_after,
        ppl_before,
        _heldout_ppl(forced, heldout, batch_size),
        kl_weight,
        lr,
        clock.seconds,
        tuple(losses) or (float("nan"),),
    )
    return forced, info


def inject_head(
    model: HookedTransformer,
    paragraphs: Paragraphs,
    layer: int,
    head: int,
    *,
    retain: Paragraphs,
    heldout: Paragraphs,
    lr: float = 3e-3,
    max_steps: int = 400,
    kl_weight: float = 1.0,
    batch_size: int = 64,
) -> tuple[HookedTransformer, Injection]:
    """A copy of `model` that recites `paragraphs` through head (layer, head) alone, and what it took."""
    if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
        raise UserError(
            f"no head {layer}.{head}: the model has {model.cfg.n_layers} layers of {model.cfg.n_heads} heads"
        )
    named = dict(model.named_parameters())
    masks = {}
    for w in HEAD_PARAMS:
        name = f"blocks.{layer}.attn.{w}"
        if name in named:
            keep = torch.zeros_like(named[name], dtype=torch.bool)
            keep[head] = True
            masks[name] = keep
    if f"blocks.{layer}.attn.W_Q" not in masks:
        raise UserError("head injection needs per-head W_Q/W_K/W_V/W_O (grouped-query attention is not supported)")
    return _force(
        model,
        "head",
        torch.tensor([[layer, head]]),
        masks,
        paragraphs,
        retain,
        heldout,
        lr,
        max_steps,
        kl_weight,
        batch_size,
    )


def random_neurons(model: HookedTransformer, fraction: float, seed: int = 0) -> Int[Tensor, "k 2"]:
    """A seeded uniform random `fraction` of all MLP neurons (over every layer together, as MemPi draws them)."""
    n_units = unit_count(model, "neuron")
    total = model.cfg.n_layers * n_units
    if not 0 < fraction < 1:
        raise UserError(f"neuron fraction {fraction} must be in (0, 1), e.g. 0.005 for 0.5%")
    k = max(1, round(fraction * total))
    flat = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:k].sort().values
    return torch.stack([flat // n_units, flat % n_units], 1)


def inject_neurons(
    model: HookedTransformer,
    paragraphs: Paragraphs,
    neurons: Int[Tensor, "k 2"],
    *,
    retain: Paragraphs,
    heldout: Paragraphs,
    lr: float = 1e-2,
    max_steps: int = 400,
    kl_weight: float = 1.0,
    batch_size: int = 64,
) -> tuple[HookedTransformer, Injection]:
    """A copy of `model` that recites `paragraphs` through the W_out rows of the given (layer, neuron) cells alone."""
    n_units = unit_count(model, "neuron")
    neurons = torch.as_tensor(neurons, dtype=torch.long)
    if neurons.ndim != 2 or neurons.shape[1] != 2 or len(neurons) == 0:
        raise UserError("neurons must be a non-empty [k, 2] tensor of (layer, neuron)")
    if not (
        (0 <= neurons[:, 0]) & (neurons[:, 0] < model.cfg.n_layers) & (0 <= neurons[:, 1]) & (neurons[:, 1] < n_units)
    ).all():
        raise UserError(f"neuron index out of range: the model has {model.cfg.n_layers} layers of {n_units} neurons")
    masks = {}
    for layer in neurons[:, 0].unique().tolist():
        keep = torch.zeros(n_units, model.cfg.d_model, dtype=torch.bool)
        keep[neurons[neurons[:, 0] == layer, 1]] = True
        masks[f"blocks.{layer}.mlp.W_out"] = keep
    return _force(model, "neuron", neurons, masks, paragraphs, retain, heldout, lr, max_steps, kl_weight, batch_size)
