"""Restoration as an attack (Hong et al. 2024, interp.restore): patch the ORIGINAL model's MLP coefficients
and / or attention outputs into the unlearned model, a window of layers at a time, and keep, per
paragraph, the window and experiment that bring back the most (highest EM, then highest log10 p).
Taking the best of many windows is a selection: the never-known control pays the same price."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.audit.scoring import best_option, log10_p
from interp.backend import Model
from interp.data import BATCH_SIZE, Paragraphs
from interp.restore import restoration
from interp.unlearning import Hook

RESTORED = ("coefficients", "attention", "both")


def restoration_attack(
    original: Model,
    edited: Model,
    paragraphs: Paragraphs,
    *,
    hooks: Sequence[Hook] = (),
    width: int | None = None,
    experiments: Sequence[str] = RESTORED,
    batch_size: int = BATCH_SIZE,
) -> tuple[Int[Tensor, "n"], Float[Tensor, "n"], list[str]]:
    """EM and log10 p of each paragraph under its best restored window, and which one ("coefficients 2..4")."""
    result = restoration(
        original, edited, paragraphs, width=width, experiments=experiments, edited_hooks=hooks, batch_size=batch_size
    )
    n_exp, n_win, n = result.em_restored.shape
    em = result.em_restored.reshape(n_exp * n_win, n)
    logp = log10_p((-result.nll_restored * paragraphs.continuation_len).reshape(-1, 1)).reshape(n_exp * n_win, n)
    best = best_option(em, logp)
    cols = torch.arange(n)
    names = [f"{e} {lo}..{hi}" for e in result.experiments for lo, hi in result.windows]
    return em[best, cols], logp[best, cols], [names[i] for i in best.tolist()]
