"""What the report pipeline computes and on how much data: one frozen options object.

Every default is written once, here; `interp report` generates its flags from these fields (help
from each field's metadata), `interp report --config FILE` reads them from JSON / TOML (or from a
results.json, which records the exact options it ran with), and `__post_init__` validates them. This module
imports nothing heavy: `interp report` builds its flags from it without loading torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from interp.constants import BATCH_SIZE, GRAD_BATCH_SIZE
from interp.conventions import conventions as conventions_named
from interp.errors import UserError
from interp.locator.options import NULLS
from interp.options import option as _opt
from interp.unlearning.config import BASELINES


@dataclass(frozen=True)
class ReportOptions:
    """What the pipeline computes and on how much data. `quick()` and `paper()` are presets of the same."""

    batch_size: int = _opt(BATCH_SIZE, "paragraphs per forward pass")
    max_paragraphs: int | None = _opt(None, "score a seeded sample of at most this many paragraphs (None = all)")
    nmem_max: int | None = _opt(None, "NMEM = EM at most this (None: 10 of 50 tokens, as the paper, scaled by length)")
    n_mem: int = _opt(16, "MEM paragraphs used by the gradient, head and perturbation steps")
    n_nmem: int = _opt(64, "NMEM paragraphs used beside them")
    n_examples: int = _opt(2, "example paragraphs shown token by token")
    seed: int = _opt(0, "seed of every sample and random draw")
    grad_batch_size: int = _opt(GRAD_BATCH_SIZE, "paragraphs per backward pass")
    n_perturb: int = _opt(8, "MEM and NMEM paragraphs each for prefix perturbation")
    perturb_samples: int = _opt(1, "random tokens per prefix position (the paper: one)")
    unlearn_targets: int = _opt(2, "MEM paragraphs unlearned, one run each (the paper: 1 MEM + 10 NMEM per run)")
    unlearn_lr: float | None = _opt(
        None,
        "None: each method's rate is calibrated to reach unlearn_level (matched "
        "forgetting); a number: every run at this rate",
    )
    unlearn_level: int | None = _opt(None, "calibration's target EM (None: the NMEM threshold, 10 of 50 tokens)")
    unlearn_steps: int = _opt(10, "Adam steps per unlearning run")
    unlearn_methods: tuple[str, ...] = _opt(
        ("unlearn", "edit"), "paper Eq. 3 and Eq. 4, each with all / top / random weights"
    )
    unlearn_baselines: tuple[str, ...] = _opt(
        ("ga",),
        "common unlearning baselines on all weights (some of ga, graddiff, npo), calibrated and audited like the rest",
    )
    reft: bool = _opt(True, "add a LoReFT (representation) unlearning run to the table")
    proxy: str | None = _opt(
        "auto",
        "add a decoding-time (proxy-tuning) row: a small model with the model's tokenizer, unlearned and its logit "
        "difference added at decoding time ('auto': the testbed's companion for the testbed, none otherwise; "
        "None: no row)",
    )
    audit: bool = _opt(
        True,
        "'Is it really gone?': attack the table's calibrated runs (quantization, relearning, restoration, prefixes)",
    )
    audit_never_known: int = _opt(
        4,
        "paragraphs the model never recited, the audit's second control, paired with the targets (each is attacked "
        "on the unlearned model at its target's relearning dose, which is what it costs)",
    )
    never_known: str | None = _opt(
        None,
        "JSONL of paragraphs the model never saw, the audit's second control (None: the paragraphs' 'heldout' "
        "split, else paragraphs the model does not recite, with a caveat)",
    )
    reference_retrained: str | None = _opt(
        None, "a model retrained without the audit's targets (a spec for load_model): its row beside the methods'"
    )
    relearn_steps: int = _opt(10, "relearning attack after each run (0 = none)")
    restore_selects: tuple[str, ...] = _opt(("all", "topk"), "unlearning runs that restoration dissects")
    probe: int = _opt(30, "MEM / NMEM / held-out paragraphs probing collateral damage")
    validate_locator: bool = _opt(
        True, "inject paragraphs through known heads of copies and rank them with the head methods section 3 uses"
    )
    validate_neurons: bool = _opt(False, "also MemPi's neuron injection (Recall@k per neuron method)")
    validation: str | None = _opt(
        None,
        "a `validate-locator --json` result for THIS model's weights: section 7 shows it instead of running the "
        "injection benchmark again",
    )
    rare_token_null: str = _opt(
        "pair_paragraphs",
        "null of the rare-token attention p-values: 'pair_paragraphs' (pairs one paragraph's attention with "
        "another's ranks, keeping positions) or 'shuffle_positions' (shuffles ranks within a paragraph; the old null)",
    )
    conventions: str = _opt("toolkit", "'toolkit' or 'paper' (the authors' code; see the README's conventions table)")
    steps: tuple[str, ...] | None = _opt(None, "the steps to run, each with the steps it needs (None = every step)")
    progress: bool = _opt(True, "progress bars inside steps")

    def __post_init__(self) -> None:
        for name in (
            "batch_size",
            "n_mem",
            "n_nmem",
            "grad_batch_size",
            "n_perturb",
            "perturb_samples",
            "unlearn_targets",
            "unlearn_steps",
            "probe",
            "audit_never_known",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"ReportOptions.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("n_examples", "relearn_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"ReportOptions.{name} must be >= 0, got {getattr(self, name)}")
        if self.validation is not None and not Path(self.validation).is_file():
            raise UserError(f"ReportOptions.validation: {self.validation} is not a file (a validate-locator --json)")
        if self.max_paragraphs is not None and self.max_paragraphs < 1:
            raise UserError(
                f"ReportOptions.max_paragraphs must be at least 1 (or None for all), got {self.max_paragraphs}"
            )
        if self.unlearn_lr is not None and not self.unlearn_lr > 0:
            raise UserError(f"ReportOptions.unlearn_lr must be positive (or None to calibrate), got {self.unlearn_lr}")
        bad = [m for m in self.unlearn_methods if m not in ("unlearn", "edit")]
        if bad:
            raise UserError(f"ReportOptions.unlearn_methods: unknown {bad}; use 'unlearn' and/or 'edit'")
        bad = [m for m in self.unlearn_baselines if m not in BASELINES]
        if bad:
            raise UserError(f"ReportOptions.unlearn_baselines: unknown {bad}; use some of {', '.join(BASELINES)}")
        bad = [s for s in self.restore_selects if s not in ("all", "topk", "random")]
        if bad:
            raise UserError(f"ReportOptions.restore_selects: unknown {bad}; use 'all', 'topk' and/or 'random'")
        if self.rare_token_null not in NULLS:
            raise UserError(
                f"ReportOptions.rare_token_null: unknown {self.rare_token_null!r}; use one of {', '.join(NULLS)}"
            )
        conventions_named(self.conventions)

    @classmethod
    def quick(cls, **overrides: Any) -> ReportOptions:
        """A first look in minutes: fewer paragraphs and runs."""
        return replace(
            cls(
                max_paragraphs=400,
                n_mem=4,
                n_nmem=16,
                n_examples=1,
                n_perturb=3,
                perturb_samples=1,
                unlearn_targets=1,
                probe=5,
                unlearn_steps=5,
                unlearn_methods=("unlearn",),
                unlearn_baselines=(),
                reft=False,
                proxy=None,
                audit=False,
                relearn_steps=0,
                restore_selects=("all",),
                validate_locator=False,
            ),
            **overrides,
        )

    @classmethod
    def paper(cls, **overrides: Any) -> ReportOptions:
        """The authors' code conventions (interp.conventions.PAPER): one rate, 1e-5 x 5 steps, and the rest."""
        p = conventions_named("paper")
        return replace(cls(conventions="paper", unlearn_lr=p.unlearn_lr, unlearn_steps=p.unlearn_steps), **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportOptions:
        """Options from a JSON / TOML mapping (lists become tuples); unknown keys are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"unknown report option(s) {', '.join(unknown)}; the options are {', '.join(sorted(known))}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_dict(self) -> dict:
        return asdict(self)
