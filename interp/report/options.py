"""What the report pipeline computes and on how much data: one frozen options object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ReportOptions:
    """What the pipeline computes and on how much data. `quick()` is a smaller preset of the same."""

    batch_size: int = 64
    max_paragraphs: int | None = None  # score a seeded sample of at most this many paragraphs (None = all)
    nmem_max: int | None = None  # NMEM: EM at most this (None: 10 of 50 tokens, as the paper, scaled by length)
    n_mem: int = 16  # MEM paragraphs used by the gradient, head and perturbation steps
    n_nmem: int = 64  # NMEM paragraphs used beside them
    n_examples: int = 2  # example paragraphs shown token by token
    seed: int = 0
    grad_batch_size: int = 16  # paragraphs per backward pass
    n_perturb: int = 8  # MEM and NMEM paragraphs each for prefix perturbation
    perturb_samples: int = 1  # random tokens per prefix position (the paper: one)
    unlearn_targets: int = 2  # MEM paragraphs unlearned, one run each (paper: 1 MEM + 10 NMEM per run)
    unlearn_lr: float = 1e-3  # the paper's code: 1e-5 for 5 steps on GPT-Neo 125M; set both to compare
    unlearn_steps: int = 10
    unlearn_methods: tuple[str, ...] = ("unlearn", "edit")  # paper Eq. 3 and Eq. 4, each with all / top / random weights
    reft: bool = True  # add a LoReFT (representation) unlearning run to the table
    relearn_steps: int = 10  # relearning attack after each run (0 = none)
    restore_selects: tuple[str, ...] = ("all", "topk")  # unlearning runs that restoration dissects
    probe: int = 30  # MEM / NMEM / held-out paragraphs probing collateral damage
    steps: tuple[str, ...] | None = None  # None = every step
    progress: bool = True  # progress bars inside steps

    @classmethod
    def quick(cls, **overrides: Any) -> ReportOptions:
        return replace(cls(max_paragraphs=400, n_mem=4, n_nmem=16, n_examples=1, n_perturb=3, perturb_samples=1,
                           unlearn_targets=1, probe=5, unlearn_steps=5, unlearn_methods=("unlearn",), reft=False,
                           relearn_steps=0, restore_selects=("all",)), **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

