"""Decoding-time unlearning by proxy-tuning (Liu et al. 2024, "Tuning language models by proxy").

The base model's weights stay frozen. A small companion model sharing the base's tokenizer is
unlearned on the targets (with `unlearn`, on a copy), and at decoding time the base's logits are
shifted by the small models' difference:

    logits = base(x) + alpha * (small_unlearned(x) - small_original(x))

so whatever unlearning changed in the small model's predictions is transferred to the base, and
nothing else is. `ProxyModel` is that ensemble as a `interp.metrics.LogitModel`: EM, NLL,
extraction probability and greedy decoding score it like any model; `proxy_unlearn` builds it
and scores the base before and the ensemble after, as `unlearn` does for a weight edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.backend import Model, ModelConfig
from interp.data import Paragraphs
from interp.errors import UserError
from interp.models import TESTBED_COMPANION, model_name
from interp.unlearning.config import ProxyConfig
from interp.unlearning.evaluation import Evaluation, Hook, Probe, evaluate
from interp.unlearning.masked import UnlearnConfig, UnlearnResult, unlearn  # noqa: F401 (UnlearnConfig: a name here before)
from interp.unlearning.method import run_json
from interp.unlearning.training import check_training_settings


def small_model_spec(base: Model, option: str | None) -> str | None:
    """The small model for `base`: 'auto' = the testbed's companion when `base` is the testbed, else None."""
    if option == "auto":
        return TESTBED_COMPANION if model_name(base) == "testbed" else None
    return option


def check_same_vocabulary(base: Model, small: Model) -> None:
    """Proxy-tuning adds logits token by token: both models must share the vocabulary (and, where
    both carry one, the tokenizer)."""
    if base.cfg.d_vocab_out != small.cfg.d_vocab_out:
        raise UserError(
            f"the small model's vocabulary ({small.cfg.d_vocab_out} tokens) is not the base's "
            f"({base.cfg.d_vocab_out}): --proxy needs a small model with the base's tokenizer"
        )
    tb, ts = getattr(base, "tokenizer", None), getattr(small, "tokenizer", None)
    if tb is not None and ts is not None and tb.get_vocab() != ts.get_vocab():
        raise UserError("the small model's tokenizer differs from the base's: --proxy needs the base's tokenizer")


class ProxyModel(torch.nn.Module):
    """base + alpha * (small_unlearned - small_original), logits at every position.

    A `interp.metrics.LogitModel`: `cfg`, `tokenizer` and hooks (`hooks(...)`, so `evaluate`'s
    hooks act on the base) are the base's. The three models are used as given, never modified."""

    def __init__(
        self,
        base: Model,
        small_original: Model,
        small_unlearned: Model,
        alpha: float = 1.0,
    ):
        super().__init__()
        check_same_vocabulary(base, small_original)
        check_same_vocabulary(base, small_unlearned)
        self.base, self.small_original, self.small_unlearned, self.alpha = base, small_original, small_unlearned, alpha

    @property
    def cfg(self) -> ModelConfig:
        return self.base.cfg

    @property
    def tokenizer(self):
        return self.base.tokenizer

    def with_alpha(self, alpha: float) -> ProxyModel:
        """The same three models at another strength (no retraining)."""
        return ProxyModel(self.base, self.small_original, self.small_unlearned, alpha)

    def with_base(self, base: Model) -> ProxyModel:
        """Another base (e.g. an attacked copy of this one) steered by the same small models' difference."""
        return ProxyModel(base, self.small_original, self.small_unlearned, self.alpha)

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[Hook] = (), **kwargs):
        """Hooks on the base model (the one being steered), removed on exit."""
        with self.base.hooks(fwd_hooks=list(fwd_hooks), **kwargs):
            yield self

    @torch.no_grad()
    def logits(self, tokens: Int[Tensor, "n seq"]) -> Float[Tensor, "n seq vocab"]:
        tokens = tokens.to(self.cfg.device)
        out = self.base(tokens).float()
        if self.alpha:
            small = tokens.to(self.small_original.cfg.device)
            diff = self.small_unlearned(small).float() - self.small_original(small).float()
            out = out + self.alpha * diff.to(out.device)
        return out

    def forward(self, tokens: Int[Tensor, "n seq"]) -> Float[Tensor, "n seq vocab"]:
        return self.logits(tokens)


@dataclass(frozen=True)
class ProxyResult:
    """A decoding-time unlearning run: the ensemble, the small model's own unlearning run, and the
    base before / the ensemble after on the targets and probes."""

    config: ProxyConfig
    target_ids: tuple[str, ...]
    model: ProxyModel = field(repr=False)
    small: UnlearnResult = field(repr=False)  # the small model's run: its target EM before / after
    before: Evaluation  # the base
    after: Evaluation  # the ensemble
    weights_changed: int = 0  # base weights changed: none, by construction (tested)

    @property
    def trained(self) -> int:
        """Weights trained: the small model's (the base is frozen)."""
        return self.small.trained

    @property
    def losses(self) -> Tensor:
        return self.small.losses

    def hooks(self) -> list[Hook]:
        return []

    def to_json(self) -> dict:
        return run_json(self) | {
            "small_before": self.small.before.to_json(),
            "small_after": self.small.after.to_json(),
            "small_losses": self.small.losses,
            "weights_changed": self.weights_changed,
        }


@dataclass(frozen=True)
class ProxyMethod:
    """Decoding-time unlearning as a row of the unlearning table (`calibrate`, `unlearning_table`): the loaded
    small model with its `config`. `lr` is the small model's unlearning rate, the knob `calibrate` searches
    to reach matched forgetting, alpha staying `config.alpha` (1: the proxy-tuning paper's)."""

    small_model: Model = field(repr=False, compare=False)
    config: ProxyConfig = ProxyConfig()
    lr: float | None = None  # None: config.unlearn.lr

    def __post_init__(self) -> None:
        if self.lr is None:
            object.__setattr__(self, "lr", self.config.unlearn.lr)
        u = self.config.unlearn
        check_training_settings(u.method, lr=self.lr, steps=u.steps, weight_decay=u.weight_decay)

    @property
    def settings(self) -> ProxyConfig:
        """The config with the small model's rate set to `lr`."""
        return replace(self.config, unlearn=replace(self.config.unlearn, lr=self.lr))

    @property
    def label(self) -> str:
        return self.config.label

    def to_dict(self) -> dict:
        u = self.config.unlearn
        return {
            **self.settings.to_dict(),
            "lr": self.lr,
            "steps": u.steps,
            "method": u.method,
            "select": u.select,
            "rate_of": "the small model's unlearning (the base is frozen)",
        }

    def run(self, model, targets, retain, *, edit_targets=None, probe=None, before=None) -> ProxyResult:
        if self.config.unlearn.method == "edit":
            raise UserError("decoding-time unlearning runs the 'unlearn', 'ga', 'graddiff' or 'npo' objective")
        return proxy_unlearn(model, self.small_model, targets, retain, self.settings, probe=probe, before=before)


def proxy_unlearn(
    base: Model,
    small: Model,
    targets: Paragraphs,
    retain: Paragraphs,
    config: ProxyConfig = ProxyConfig(),
    *,
    probe: Probe | None = None,
    before: Evaluation | None = None,
) -> ProxyResult:
    """Unlearn a copy of `small` on the targets (`config.unlearn`, retain set for its objective),
    and score `base + alpha * (unlearned - small)` against the base. Neither model is modified."""
    check_same_vocabulary(base, small)
    run = unlearn(small, targets, retain, config.unlearn)
    model = ProxyModel(base, small, run.model, config.alpha)
    if before is None:
        before = evaluate(base, targets, probe)
    return ProxyResult(
        config=config,
        target_ids=targets.ids,
        model=model,
        small=run,
        before=before,
        after=evaluate(model, targets, probe),
    )


def proxy_at_alphas(
    result: ProxyResult, targets: Paragraphs, alphas: Sequence[float], *, probe: Probe | None = None
) -> list[ProxyResult]:
    """The same unlearned small model applied at other strengths, each scored on the targets and
    probes (the small model is trained once)."""
    out = []
    for alpha in alphas:
        model = result.model.with_alpha(alpha)
        out.append(
            replace(
                result,
                config=replace(result.config, alpha=alpha),
                model=model,
                after=evaluate(model, targets, probe),
            )
        )
    return out
