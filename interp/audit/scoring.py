"""How every attack is scored: greedy EM and the extraction probability of the true continuation,
from one teacher-forced pass per batch (greedy decoding reproduces the continuation up to token k
exactly when the teacher-forced argmax is right at every earlier position, see interp.metrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.backend import hooks_on
from interp.data import BATCH_SIZE
from interp.metrics import Scorable, continuation_scores, em_from_hits
from interp.unlearning import Hook


def log10_p(log_probs: Float[Tensor, "n k"]) -> Float[Tensor, "n"]:
    """log10 of the probability that sampling at temperature 1 reproduces the whole continuation:
    the sum of its tokens' natural log-probabilities over ln 10 (Hayes et al. 2024's p).

    The audit's one place for this number (a shared extraction probability may replace it); a
    row may also hold a single column with the continuation's total log-probability."""
    return log_probs.double().sum(-1).float() / math.log(10)


@torch.no_grad()
def score(
    model: Scorable,
    tokens: Int[Tensor, "n seq"],
    prefix_len: int,
    *,
    hooks: Sequence[Hook] = (),
    batch_size: int = BATCH_SIZE,
) -> tuple[Int[Tensor, "n"], Float[Tensor, "n"]]:
    """Greedy EM and log10 p of each row's continuation (tokens after `prefix_len`), `hooks` on, on CPU."""
    ems, ps = [], []
    with hooks_on(model, hooks):
        for start in range(0, tokens.shape[0], batch_size):
            log_probs, hits = continuation_scores(model, tokens[start : start + batch_size], prefix_len)
            ems.append(em_from_hits(hits).cpu())
            ps.append(log10_p(log_probs).cpu())
    return torch.cat(ems), torch.cat(ps)


def best_option(em: Int[Tensor, "option n"], logp: Float[Tensor, "option n"]) -> Int[Tensor, "n"]:
    """Per column, the option with the highest EM, ties broken by the highest log10 p: an attacker's pick."""
    top = em == em.max(0, keepdim=True).values
    return logp.masked_fill(~top, float("-inf")).argmax(0)


def best_of(
    em: Int[Tensor, "option n"], logp: Float[Tensor, "option n"]
) -> tuple[Int[Tensor, "n"], Float[Tensor, "n"], Int[Tensor, "n"]]:
    """Per column, the attacker's pick (`best_option`): its EM, its log10 p, and which option it is."""
    best = best_option(em, logp)
    cols = torch.arange(em.shape[1])
    return em[best, cols], logp[best, cols], best
