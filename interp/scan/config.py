"""`ScanConfig`: what a scan looks for and how. Apart from the engine, which imports torch, so that the
`interp scan` command builds its flags from it without loading the library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp.constants import BOILERPLATE_PATTERNS, DEFAULT_CONTINUATION_LEN, DEFAULT_PREFIX_LEN, NMEM_MAX_EM
from interp.errors import UserError
from interp.options import option

if TYPE_CHECKING:
    from interp.backend import Model


@dataclass(frozen=True)
class ScanConfig:
    """What a scan looks for and how. Everything here is part of the resume fingerprint."""

    prefix_len: int = option(DEFAULT_PREFIX_LEN, "prefix tokens")
    continuation_len: int = option(DEFAULT_CONTINUATION_LEN, "continuation tokens")
    stride: int = option(1, "consider windows starting at multiples of this token offset")
    exact: bool = option(False, "score every window exactly instead of screening (slow; no screening misses)")
    screen_step: int = option(
        20,
        "a screening chunk every this many tokens; each window is screened with at most step - 1 tokens before it "
        "(1 = exhaustive)",
    )
    screen_tolerance: int = option(0, "verify windows whose screened continuation has at most this many misses")
    nmem_max: int = option(NMEM_MAX_EM, "NMEM: EM at most this")
    n_controls: int = option(1000, "NMEM controls to sample")
    intermediate: bool = option(False, "also write windows with NMEM < EM < full")
    filters: bool = option(True, "drop low-diversity and boilerplate windows")
    min_unique: float = option(0.5, "drop windows with a smaller fraction of distinct tokens")
    boilerplate_patterns: tuple[str, ...] = BOILERPLATE_PATTERNS
    merge: bool = option(True, "one record per span of overlapping memorized windows instead of per window")
    recall_sample: float = option(
        0.01, "screen mode: fraction of windows also scored exactly to measure the screen's recall (the recall audit)"
    )
    recall_min_mem: int = option(10, "MEM windows the recall sample must hold before a recall is stated")
    seed: int = option(0, "seed of the NMEM sample and the recall sample")
    group_tokens: int = 32768

    def __post_init__(self) -> None:
        if self.prefix_len < 1 or self.continuation_len < 1:
            raise UserError("--prefix-len and --continuation-len must be positive")
        if self.stride < 1:
            raise UserError(f"--stride must be at least 1, got {self.stride}")
        if self.screen_step < 1:
            raise UserError(f"--screen-step must be at least 1, got {self.screen_step}")
        if not 0 <= self.screen_tolerance < self.continuation_len:
            raise UserError(f"--screen-tolerance must be between 0 and {self.continuation_len - 1}")
        if not 0 <= self.nmem_max < self.continuation_len:
            raise UserError(f"--nmem-max must be between 0 and {self.continuation_len - 1}")
        if self.n_controls < 0:
            raise UserError("--n-controls must be 0 or more")
        if not 0 <= self.min_unique <= 1:
            raise UserError("--min-unique must be a fraction between 0 and 1")
        if not 0 <= self.recall_sample <= 1:
            raise UserError("--recall-sample must be a fraction between 0 and 1")
        if self.recall_min_mem < 1:
            raise UserError("--recall-min-mem must be at least 1")

    @property
    def window_len(self) -> int:
        return self.prefix_len + self.continuation_len

    @property
    def chunk_len(self) -> int:
        """Length of a screening chunk: every window starting in its first `screen_step` tokens fits."""
        return self.window_len + self.screen_step - 1

    @property
    def mode(self) -> str:
        return "exact" if self.exact else "screen"

    def check_model(self, model: Model) -> None:
        n_ctx = model.cfg.n_ctx
        if self.window_len > n_ctx:
            raise UserError(f"prefix + continuation = {self.window_len} tokens exceeds the model's context of {n_ctx}")
        if not self.exact and self.chunk_len > n_ctx:
            raise UserError(
                f"--screen-step {self.screen_step} makes screening chunks of {self.chunk_len} tokens, more than "
                f"the model's context of {n_ctx}: use --screen-step {n_ctx - self.window_len + 1} or less"
            )
