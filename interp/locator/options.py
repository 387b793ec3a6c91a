"""The locator's settings, each default written once: the method names, `LocateOptions` (what
`locate_memorization_head` and `interp locate-head` take) and `ValidateOptions` (the injection
benchmark, `validate_locator` and `interp validate-locator`).
The method names come from the registry of methods (interp.locator.registry).

The functions' keyword defaults read these dataclasses, and the commands' flags are generated from
them (interp.commands.options_cli), so a default changed here changes both. This module imports nothing
heavy: the command line builds its parsers from it without loading torch. The names the methods' modules
share with it are defined here and re-exported there (`interp.locator.injection.LR_GRID` as before).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Any

from interp.errors import UserError
from interp.locator import registry
from interp.options import option

GRADIENT_VARIANTS = ("gradient_l2", "grad_x_weight", "fisher", "perturbed_gradient")
"""interp.locator.gradient_scores.VARIANTS"""
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)  # rates the injection's probe tries when lr="auto" (interp.locator.injection)
SCHEDULES = ("cosine", "constant")  # the head injection's rate schedules (interp.locator.injection)
NULLS = ("pair_paragraphs", "shuffle_positions")  # the rare-token score's nulls (interp.locator.rare_tokens)
DEFAULT_NULL = "pair_paragraphs"

# The method names, read from the registry (interp.locator.registry) when this module is imported.
HEAD_METHODS = registry.names("head")
NEURON_METHODS = registry.names("neuron")
UNIT_METHODS = tuple(m.name for m in registry.METHODS.values() if set(m.units) == {"head", "neuron"})
METHODS = HEAD_METHODS
SCREENED = tuple(m.name for m in registry.METHODS.values() if m.screened)  # run on the screen's candidates
DEFAULT_METHODS = registry.defaults("head")
DEFAULT_RANK_BY = ("patching", "ablation")
DEFAULT_NEURON_METHODS = registry.defaults("neuron")
DEFAULT_NEURON_RANK_BY = ("slimming", "zero_out")

HEAD_LR = 3e-3  # the head injection's rate ("auto": probed on the model's own loss, interp.locator.injection)
MAX_STEPS = 400  # the injection's step budget (it stops as soon as every paragraph is recited)
SCHEDULE = "constant"
RECALL_FRACTION = 0.005  # MemPi's GPT-2 INJ comparison point: Recall@0.5%


def read_rate(text: str) -> float | str:
    """A learning rate, or 'auto' (probe LR_GRID on the model's own loss)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} must be a number or 'auto'") from None


@dataclass(frozen=True)
class LocateOptions:
    """How `locate_memorization_head` ranks heads (interp locate-head's flags)."""

    methods: tuple[str, ...] = option(DEFAULT_METHODS, "evidence to compute", choices=HEAD_METHODS)
    rank_by: tuple[str, ...] | None = option(
        None,
        "methods whose mean rank orders the table (None: from --validation, else patching and ablation)",
        choices=HEAD_METHODS,
    )
    candidates: int = option(8, "heads the attribution screen passes to exact patching and ablation")
    exact_all: bool = option(False, "run exact patching and ablation on every head (no screen)")
    set_size: int = option(16, "cap on paragraphs per set (MEM / NMEM) for the costly methods")
    nmem_max: int | None = option(None, "NMEM: EM at most this (None: a fifth of the continuation, 10 of 50)")
    rare_token_null: str = option(
        DEFAULT_NULL,
        "permutation null of the rare-token score: pair_paragraphs keeps positions, shuffle_positions shuffles "
        "ranks within each paragraph (the old null)",
        choices=NULLS,
    )
    corrupt_fraction: float = option(0.5, "share of prefix tokens replaced in the corrupted run")
    seed: int = option(0, "seed of the paragraph samples and the corruption")


@dataclass(frozen=True)
class ValidateOptions:
    """The injection benchmark's settings (`validate_locator`; interp validate-locator's flags)."""

    neurons: bool = option(False, "also run MemPi's INJ: inject through random MLP neurons, report Recall@k")
    methods: tuple[str, ...] = option(HEAD_METHODS, "head methods", choices=HEAD_METHODS)
    neuron_methods: tuple[str, ...] = option(DEFAULT_NEURON_METHODS, "neuron methods", choices=NEURON_METHODS)
    n_inject: int = option(4, "paragraphs forced through each head")
    neuron_fraction: float = option(
        RECALL_FRACTION,
        f"share of MLP neurons trained ({RECALL_FRACTION}: then Recall@k at k = the injected size is MemPi's "
        "Recall@0.5%)",
    )
    set_size: int = option(8, "cap on paragraphs per set (MEM / NMEM) for the locator's costly methods")
    candidates: int = option(8, "heads the attribution screen passes to the exact methods")
    max_steps: int = option(MAX_STEPS, "injection step budget; it stops as soon as every paragraph is recited")
    lr: float | str = option(
        HEAD_LR,
        f"head injection rate, or 'auto': probe {', '.join(map(str, LR_GRID))} on this model's loss and keep the best",
        parse=read_rate,
    )
    schedule: str = option(
        SCHEDULE, "head injection rate schedule (cosine: warm-up, then decay to a tenth)", choices=SCHEDULES
    )
    with_mlp: bool = option(
        False, "inject through the head AND its layer's MLP (more capacity; the answer is then no longer one head)"
    )
    escalate: bool = option(
        True,
        "when a head injection leaves a paragraph unrecited, try again: the rate from the model's loss, then the "
        "head and its layer's MLP, each with --max-steps (each head's evidence names its variant)",
    )
    seed: int = option(0, "seed of the paragraphs, heads and neurons drawn")
    seeds: tuple[int, ...] | None = option(
        None,
        "repeat the benchmark per seed (own paragraphs, heads, neurons each), e.g. 3 4 5 to validate on seeds "
        "other than those the settings were chosen on (None: --seed)",
    )

    def __post_init__(self) -> None:
        if self.n_inject < 1 or self.max_steps < 1:
            raise UserError("--n-inject and --max-steps must be at least 1")


LOCATE = LocateOptions()
VALIDATE = ValidateOptions()


def keywords_from(
    options: Any, defaults: Any, arguments: dict[str, Any], renamed: dict[str, str] | None = None
) -> dict[str, Any]:
    """The values of an analysis's keyword arguments when it takes its options dataclass whole.

    `arguments`: the analysis's own arguments (its `locals()` on entry); read are those named like a field of
    `defaults` (except `renamed`: field -> keyword). Without `options` they stand; with it, its fields replace them,
    and a keyword also given a value other than its default (`defaults`' field) is a TypeError: one or the other.
    The keywords are kept for one release."""
    keywords = {f.name: (renamed or {}).get(f.name, f.name) for f in fields(defaults)}
    given = {name: arguments[name] for name in keywords.values() if name in arguments}
    if options is None:
        return given
    out = dict(given)
    for field_name, name in keywords.items():
        if name not in given:
            continue
        if given[name] != getattr(defaults, field_name):
            raise TypeError(f"give options= or {name}=, not both")
        out[name] = getattr(options, field_name)
    return out


def renamed_keyword(function: str, old: str, old_value: Any, new: str, value: Any, default: Any) -> Any:
    """The value of keyword `new`, or of `old` (its name until this release; None: not given) with a
    DeprecationWarning. Both given is a TypeError."""
    if old_value is None:
        return value
    warnings.warn(f"{function}({old}=) is now {new}=", DeprecationWarning, stacklevel=3)
    if value != default:
        raise TypeError(f"give {new}= or {old}=, not both")
    return old_value
