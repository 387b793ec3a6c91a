"""Which attacks the forgetting audit runs, and their budgets (`AuditConfig`), in a module that imports nothing
heavy: `interp audit` builds its flags from it without loading torch. `interp.audit.audit` re-exports every name
here (`interp.audit.audit.AuditConfig` as before)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from interp.constants import BATCH_SIZE
from interp.errors import UserError
from interp.options import option

RESTORED = ("coefficients", "attention", "both")
QUANTIZATIONS = {  # attack -> (bits, group size: None = per output channel, "group" = AuditConfig.group_size, scheme)
    "int8": (8, None, "symmetric"),
    "int4": (4, "group", "symmetric"),
    "int4_g128": (4, 128, "symmetric"),
    "int4_asym": (4, "group", "asymmetric"),
    "nf4": (4, 64, "nf4"),
}
ATTACKS = (*QUANTIZATIONS, "relearn_prefix", "relearn_retain", "relearn_related", "restore", "perturb", "shift")
REFERENCE = "retrained reference"  # the row of a model retrained without the targets, beside the methods'


@dataclass(frozen=True)
class AuditConfig:
    """Which attacks run, and their budgets. Defaults: int4 in groups of 32 input channels (a common
    GPTQ / AWQ size) beside groups of 128, a zero-point variant and NF4 in blocks of 64, relearning 10 Adam
    steps at 1e-4 (the unlearning table's attack; related text: at most 8 paragraphs per run, the largest of 16 /
    8 at which control 1 holds on the testbed's 24 left-out targets: the original's mean EM 50 -> 45.3 at 8,
    44.4 at 16, flagged), K = 32 single-token prefix edits, left-context shifts of 1, 2, 4 and 8
    tokens, restoration windows of interp.restore's default width; the restoration donor fine-tuned on up
    to 4 never-known paragraphs, at most 40 Adam steps at 1e-3."""

    attacks: tuple[str, ...] = option(ATTACKS, "the attacks to run, some of the default")
    group_size: int = option(32, "int4 and int4_asym: input channels per scale")
    relearn_steps: int = option(10, "relearning: Adam steps")
    relearn_lr: float = option(1e-4, "relearning: learning rate")
    related_limit: int = option(8, "relearn_related: paragraphs of related text per run, at most")
    related_ngram: int = option(
        8, "relearn_related: related text sharing this many consecutive tokens with a continuation is dropped"
    )
    width: int | None = option(None, "restoration window width in layers (odd; None: scaled)")
    restore_experiments: tuple[str, ...] = option(RESTORED, f"restoration: some of {','.join(RESTORED)}")
    donor_paragraphs: int = option(4, "restoration's donor: never-known paragraphs it is taught to recite")
    donor_steps: int = option(40, "restoration's donor: Adam steps at most")
    donor_lr: float = option(1e-3, "restoration's donor: learning rate")
    perturb_k: int = option(32, "single-token prefix edits tried")
    shifts: tuple[int, ...] = option((1, 2, 4, 8), "tokens of left context tried before each paragraph")
    partial_targets: bool = option(
        False, "accept targets the original recites only in part (else every target must be recited in full)"
    )
    seed: int = option(0, "seed of the prefix edits, the fillers and the never-known draw")
    batch_size: int = BATCH_SIZE

    def __post_init__(self) -> None:
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise UserError(f"unknown attacks {unknown}: use some of {', '.join(ATTACKS)} (--attacks)")
        if self.relearn_steps < 1 or not (self.relearn_lr > 0 and math.isfinite(self.relearn_lr)):
            raise UserError(
                "relearning needs at least 1 step and a positive rate: change --relearn-steps / --relearn-lr"
            )
        if self.perturb_k < 1 or self.group_size < 1 or self.related_limit < 1 or self.related_ngram < 1:
            raise UserError("--perturb-k, --group-size and the related-text limits must be at least 1")
        if self.donor_paragraphs < 1 or self.donor_steps < 1 or not self.donor_lr > 0:
            raise UserError("--donor-paragraphs, --donor-steps and --donor-lr must be positive")
        bad = [e for e in self.restore_experiments if e not in RESTORED]
        if bad or not self.restore_experiments:
            raise UserError(f"unknown restoration experiments {bad}: use some of {', '.join(RESTORED)}")

    def quantization(self, attack: str) -> tuple[int, int | None, str]:
        bits, group, scheme = QUANTIZATIONS[attack]
        return bits, self.group_size if group == "group" else group, scheme
