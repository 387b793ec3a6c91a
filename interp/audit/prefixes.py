"""Perturbed-prefix attacks: does the unlearned model still recite when the prompt is not exactly the
trained one? Two: the best of K single-token edits of the prefix (a random position, a random other
token; interp.perturbation's replacements), and the paragraph preceded by a few tokens of unrelated
left context (interp.position's filler spans), best of several shifts. Every variant is scored on the
TRUE continuation in batched teacher-forced passes; the best variant per paragraph is the attack."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.audit.scoring import best_of, score
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.metrics import Scorable
from interp.perturbation import random_replacements
from interp.unlearning import Hook


def single_token_edits(
    paragraphs: Paragraphs, k: int, vocab_size: int, seed: int
) -> tuple[Int[Tensor, "n k seq"], Int[Tensor, "n k"]]:
    """K copies of every paragraph, each with one random prefix position replaced by a random other
    token (seeded), and the edited positions."""
    if k < 1:
        raise UserError(f"the perturbed-prefix attack needs at least 1 edit per paragraph, got {k}: raise --perturb-k")
    gen = torch.Generator().manual_seed(seed)
    tokens = paragraphs.tokens.cpu()
    n, p = len(paragraphs), paragraphs.prefix_len
    positions = torch.randint(0, p, (n, k), generator=gen)
    old = tokens.gather(1, positions)
    new = random_replacements(old, 1, vocab_size, gen)[..., 0]
    variants = tokens[:, None, :].repeat(1, k, 1)
    variants.scatter_(2, positions[..., None], new[..., None])
    return variants, positions


def edit_attack(
    model: Scorable,
    variants: Int[Tensor, "n k seq"],
    prefix_len: int,
    *,
    hooks: Sequence[Hook] = (),
    batch_size: int = BATCH_SIZE,
) -> tuple[Int[Tensor, "n"], Float[Tensor, "n"], Int[Tensor, "n"]]:
    """EM and log10 p of the best of each paragraph's K edited prefixes, and which edit (0..K-1)."""
    n, k, seq = variants.shape
    em, logp = score(model, variants.reshape(n * k, seq), prefix_len, hooks=hooks, batch_size=batch_size)
    return best_of(em.view(n, k).T, logp.view(n, k).T)


def shift_attack(
    model: Scorable,
    paragraphs: Paragraphs,
    spans: Int[Tensor, "n length"],
    shifts: Sequence[int],
    *,
    hooks: Sequence[Hook] = (),
    batch_size: int = BATCH_SIZE,
) -> tuple[Int[Tensor, "n"], Float[Tensor, "n"], Int[Tensor, "n"]]:
    """EM and log10 p of each paragraph preceded by the last s tokens of its row of `spans` (left context,
    e.g. `interp.position.filler_spans`), best over `shifts`, and the s."""
    shifts = tuple(int(s) for s in shifts)
    if not shifts or min(shifts) < 1 or max(shifts) > spans.shape[1]:
        raise UserError(f"shifts must be positive numbers of tokens, got {shifts}: change --shifts")
    if max(shifts) + paragraphs.seq_len > model.cfg.n_ctx:
        raise UserError(
            f"a shift of {max(shifts)} tokens + {paragraphs.seq_len}-token paragraphs exceed the model's context of "
            f"{model.cfg.n_ctx}: use smaller --shifts"
        )
    spans = spans.cpu()
    rows = [torch.cat([spans[:, spans.shape[1] - s :], paragraphs.tokens.cpu()], 1) for s in shifts]
    ems, logps = [], []
    for s, tokens in zip(shifts, rows):
        em, logp = score(model, tokens, s + paragraphs.prefix_len, hooks=hooks, batch_size=batch_size)
        ems.append(em)
        logps.append(logp)
    em, logp, best = best_of(torch.stack(ems), torch.stack(logps))
    return em, logp, torch.tensor(shifts)[best]
