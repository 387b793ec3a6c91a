"""`option(default, help)`: a dataclass field whose help text the command-line flags generated from it show; and
the options of `interp memorized` (`MemorizedOptions`) and of the single-module analyses (`GradMapOptions` of
interp.gradients, `PerturbOptions` of interp.perturbation, `RestoreOptions` of interp.restore), kept here, apart
from their torch code, so that the command line builds its parsers without loading torch. Each analysis module
re-exports its options under the same names (`interp.perturbation.PerturbOptions` as before)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from interp.constants import GRAD_BATCH_SIZE, NMEM_MAX_EM
from interp.errors import UserError


def option(
    default: Any, help: str, *, choices: tuple[str, ...] | None = None, parse: Callable[[str], Any] | None = None
) -> Any:
    """A field defaulting to `default`; `help` is what `interp.commands.options_cli` shows for its flag.

    `choices`: the values a str field (or each item of a tuple field) may take, checked when the flag is read.
    `parse`: reads the flag's text when the field's type alone cannot (e.g. a rate that may also be 'auto')."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if parse is not None:
        metadata["parse"] = parse
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class MemorizedOptions:
    """What interp memorized scores and how it splits MEM / NMEM, each default written once."""

    nmem_max: int = option(NMEM_MAX_EM, "NMEM: EM at most this")
    top_k: int | None = option(
        None, "extraction probability under top-k sampling (None: the full softmax, temperature 1)"
    )

    def __post_init__(self) -> None:
        if self.nmem_max < 0:
            raise UserError(f"--nmem-max must be 0 or more, got {self.nmem_max}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k: must be at least 1, got {self.top_k}")


MEMORIZED = MemorizedOptions()

OBJECTIVES = ("nll", "contrastive")
REDUCTIONS = ("max", "l2", "mean")


@dataclass(frozen=True)
class GradMapOptions:
    """What `gradient_map` (and interp grad-map) computes, each default written once."""

    objective: str = option("nll", "nll, or the paper's contrastive Eq. 3", choices=OBJECTIVES)
    reduce: str = option("max", "score per weight matrix: max |grad| (the paper's), l2, mean", choices=REDUCTIONS)
    set_size: int = option(32, "cap on paragraphs per set (MEM / NMEM), drawn at random")
    nmem_max: int = option(NMEM_MAX_EM, "NMEM: EM at most this")
    include_embeddings: bool = option(False, "also score embeddings, unembedding, biases and LayerNorms")
    per_paragraph: bool = option(True, "also the per-paragraph norms and their MEM vs NMEM test")
    seed: int = option(0, "seed of the paragraph subsample")
    grad_batch_size: int = option(GRAD_BATCH_SIZE, "paragraphs per backward pass")

    def __post_init__(self) -> None:
        if self.set_size < 2:
            raise UserError("--set-size must be at least 2")
        if self.grad_batch_size < 1:
            raise UserError("--grad-batch-size must be at least 1")


GRAD_MAP = GradMapOptions()

REFERENCES = ("greedy", "true")


@dataclass(frozen=True)
class PerturbOptions:
    """What `prefix_perturbation` (and interp perturb) does, each default written once."""

    samples: int = option(4, "random replacement tokens per prefix position")
    set_size: int = option(32, "cap on paragraphs per set (MEM / NMEM)")
    nmem_max: int = option(NMEM_MAX_EM, "NMEM: EM at most this")
    reference: str = option(
        "greedy",
        "continuation EM is measured against: the model's own greedy one (as the paper) or the true one",
        choices=REFERENCES,
    )
    seed: int = option(0, "seed of the paragraph sample and the replacement tokens")

    def __post_init__(self) -> None:
        if self.set_size < 1:
            raise UserError("--set-size must be at least 1")


PERTURB = PerturbOptions()

EXPERIMENTS = ("coefficients", "attention", "both", "values")


@dataclass(frozen=True)
class RestoreOptions:
    """What `restoration` (and interp restore) puts back, each default written once."""

    width: int | None = option(
        None,
        "layers restored at once, centred on each layer (odd; None: Hong et al.'s 5 of 32 layers scaled to the "
        "model's depth, at least 1)",
    )
    experiments: tuple[str, ...] = option(EXPERIMENTS, "what is restored", choices=EXPERIMENTS)


RESTORE = RestoreOptions()
