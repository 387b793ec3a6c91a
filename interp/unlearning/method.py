"""What an unlearning method is to the rest of the toolkit: a settings object that runs (`UnlearningMethod`) and
the run it returns (`UnlearningRun`).

`calibrate`, `unlearning_table`, the report's unlearning and audit steps and `interp.audit` read nothing else of a
method, so a new one (weights, an intervention, decoding-time) is a frozen dataclass with these members, and its
run a result with these; docs/architecture.md has the recipe and tests/test_unlearning_method.py adds a toy one.
The three methods shipped: `UnlearnConfig` (masked fine-tuning of the weights), `ReftConfig` (a LoReFT
intervention) and `ProxyMethod` (decoding-time, a small unlearned model's logit difference).

This module imports nothing heavy (the command line's parsers read the configs without torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from interp.backend import Hook, Model
    from interp.data import Paragraphs
    from interp.unlearning.evaluation import Evaluation, Probe


@runtime_checkable
class UnlearningMethod(Protocol):
    """A method's settings. `lr` is the strength `calibrate` searches (a dataclass field, so that
    `dataclasses.replace(method, lr=...)` makes the method at another strength); `label` names its row."""

    lr: float

    @property
    def label(self) -> str: ...

    def to_dict(self) -> dict: ...

    def run(
        self,
        model: Model,
        targets: Paragraphs,
        retain: Paragraphs,
        *,
        edit_targets: Paragraphs | None = None,
        probe: Probe | None = None,
        before: Evaluation | None = None,
    ) -> UnlearningRun:
        """Unlearn `targets` (one run), keeping `retain`; the model given is not changed. `before` is its
        evaluation when the caller has it already; `after` is scored with `probe` when one is given."""
        ...


@runtime_checkable
class UnlearningRun(Protocol):
    """One run: `model` and `hooks()` together are the unlearned system (an edited copy and no hooks, or the
    original and its intervention hooks, or a decoding-time ensemble), which the audit attacks; `before` /
    `after` its scores; `trained` the parameters it trained, `weights_changed` the model's weights it changed."""

    config: Any
    target_ids: tuple[str, ...]
    model: Any
    before: Evaluation
    after: Evaluation
    weights_changed: int

    def hooks(self) -> list[Hook]: ...

    def to_json(self) -> dict: ...


def run_json(run: UnlearningRun) -> dict:
    """The fields every run's `to_json` starts with: its settings, label, targets and scores."""
    return {
        "config": run.config.to_dict(),
        "label": run.config.label,
        "target_ids": list(run.target_ids),
        "before": run.before.to_json(),
        "after": run.after.to_json(),
    }
