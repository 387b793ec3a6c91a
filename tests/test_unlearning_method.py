"""The recipe "add an unlearning method" (docs/architecture.md), exercised: a toy method written in this file alone
(its settings and its run, as `interp.unlearning.method` asks) is calibrated to matched forgetting, tabulated with
the relearning attack beside the shipped methods, and leaves the model as it found it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
from factories import tiny_model

from interp.backend import act_name, hooks_on
from interp.data import Paragraphs
from interp.metrics import greedy_continuations
from interp.unlearning import (
    RelearnConfig,
    UnlearnConfig,
    UnlearningMethod,
    UnlearningRun,
    calibrate,
    evaluate,
    probe_sets,
    unlearning_table,
)
from interp.unlearning.method import run_json

PREFIX, CONT = 6, 10


@dataclass(frozen=True)
class PushConfig:
    """Toy method: push the last residual stream along one fixed direction, lr x 4 times its norm (the larger lr,
    the more every position's logits are the direction's)."""

    lr: float = 0.5

    @property
    def label(self) -> str:
        return "push last residual"

    def to_dict(self) -> dict:
        return {"kind": "push", "lr": self.lr}

    def run(self, model, targets, retain, *, edit_targets=None, probe=None, before=None):
        if before is None:
            before = evaluate(model, targets, probe, edit_targets=edit_targets)
        hooks = push_hooks(model, self.lr)
        after = evaluate(model, targets, probe, edit_targets=edit_targets, hooks=hooks)
        return PushRun(self, targets.ids, model, before, after)


def push_hooks(model, lr: float) -> list:
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    direction = direction / direction.norm()

    def push(act, hook):
        return act + 4 * lr * act.norm(dim=-1, keepdim=True) * direction

    return [(act_name("resid_post", model.cfg.n_layers - 1), push)]


@dataclass(frozen=True)
class PushRun:
    config: PushConfig
    target_ids: tuple[str, ...]
    model: object
    before: object
    after: object
    weights_changed: int = 0
    trained: int = 0
    losses: torch.Tensor = torch.zeros(0)

    def hooks(self) -> list:
        return push_hooks(self.model, self.config.lr)

    def to_json(self) -> dict:
        return run_json(self) | {"trained": 0}


def recited(model, n: int, seed: int, tag: str) -> Paragraphs:
    prefixes = torch.randint(0, model.cfg.d_vocab, (n, PREFIX), generator=torch.Generator().manual_seed(seed))
    tokens = torch.cat([prefixes, greedy_continuations(model, prefixes, CONT)], 1)
    return Paragraphs(tokens, PREFIX, tuple(f"{tag}{i}" for i in range(n)))


@pytest.fixture
def sets():
    model = tiny_model(initializer_range=0.3, seed=0)
    mem = recited(model, 4, 1, "m")
    nmem = Paragraphs(
        torch.randint(0, model.cfg.d_vocab, (30, PREFIX + CONT), generator=torch.Generator().manual_seed(3)),
        PREFIX,
        tuple(f"n{i}" for i in range(30)),
    )
    probe = probe_sets(model, mem.select([2, 3]), nmem.select(range(20, 30)), nmem.select(range(20, 24)))
    return model, mem.select([0, 1]), nmem.select(range(20)), probe


def test_a_toy_method_is_calibrated_and_tabulated_beside_the_shipped_ones(sets, assert_untouched):
    model, targets, retain, probe = sets
    assert all(e == CONT for e in evaluate(model, targets).target_em.tolist())
    toy = PushConfig()
    assert isinstance(toy, UnlearningMethod) and isinstance(toy.run(model, targets, retain), UnlearningRun)
    with assert_untouched(model):  # rates from where the targets still recite (<= 0.02 here) to far past it
        search = calibrate(
            model,
            targets,
            retain,
            toy,
            lrs=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.95),
            level=3,
            probe=probe,
            strategy="bisect",
        )
        assert search.reached and max(search.chosen.target_em) <= 3
        low, high = search.bracket
        assert low is not None and high / low <= 1 + search.tolerance
        with hooks_on(model, push_hooks(model, search.lr)):  # the chosen strength forgets, as the search says
            assert evaluate(model, targets).target_em.max() <= 3
        shipped = UnlearnConfig(method="ga", select="all", steps=2, lr=1e-2)
        table = unlearning_table(
            model,
            targets,
            retain,
            [replace(toy, lr=search.lr), shipped],
            probe,
            relearn_config=RelearnConfig(steps=1),
        )
    assert table.labels[0] == "push last residual" and len(table.after) == 2
    assert table.after[0]["target_em"] <= 3 and table.after[0]["target_em"] == pytest.approx(search.chosen.mean_em)
    assert table.relearned[0]["target_em"] >= 0  # the relearning attack ran through the toy's hooks
    record = next(r for r in table.per_run if r["label"] == "push last residual")
    assert record["trained"] == 0 and record["weights_changed"] == 0
