"""The relearning attacks: a fixed small budget of plain fine-tuning (interp.unlearning.relearn) on text
that does not contain the forgotten continuation: the targets' prefixes, the retain set, or related text
(Deeb & Roger 2024: relearning on held-out forget data; Hu et al. 2024: on loosely related public text).

Related text is a file the user gives, or the other paragraphs of each target's source document where the
paragraph metadata names it (the testbed's `source` field); any paragraph sharing an n-gram with a
target's continuation is dropped, so the attack never sees the text it is meant to bring back.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxtyping import Int
from torch import Tensor

from interp.audit.systems import relearned_system
from interp.backend import Model
from interp.data import Paragraphs
from interp.errors import UserError
from interp.unlearning import Hook

RELEARN_DATA = ("prefix", "retain", "related")


def _ngrams(tokens: Int[Tensor, "n seq"], n: int) -> set[tuple[int, ...]]:
    return {tuple(row) for row in tokens.cpu().unfold(1, n, 1).reshape(-1, n).tolist()}


def related_text(
    pool: Paragraphs, paragraphs: Paragraphs, *, exclude: Sequence[str] = (), ngram: int = 8, limit: int = 16
) -> Paragraphs:
    """Up to `limit` paragraphs of `pool` from the same source documents as `paragraphs` (meta 'source'),
    none of them one of `paragraphs` or in `exclude`, none sharing an `ngram`-token run with their
    continuations; in pool order, taken round-robin over the documents so each contributes."""
    if "source" not in pool.meta or "source" not in paragraphs.meta:
        raise UserError(
            "the paragraphs name no source document (no 'source' field), so related text cannot be found: "
            "give a file of related text with --related FILE"
        )
    banned = set(exclude) | set(paragraphs.ids)
    forbidden = _ngrams(paragraphs.continuations, ngram) if paragraphs.continuation_len >= ngram else set()
    by_source: dict[str, list[int]] = {s: [] for s in dict.fromkeys(paragraphs.meta["source"]) if s is not None}
    for i, (pid, source) in enumerate(zip(pool.ids, pool.meta["source"])):
        if source in by_source and pid not in banned and not (_ngrams(pool.tokens[i : i + 1], ngram) & forbidden):
            by_source[source].append(i)
    chosen: list[int] = []
    for rank in range(max((len(v) for v in by_source.values()), default=0)):
        chosen += [v[rank] for v in by_source.values() if rank < len(v)]
    if not chosen:
        raise UserError(
            "no other paragraph comes from the targets' source documents: give related text with --related FILE"
        )
    return pool.select(sorted(chosen[:limit]))


def relearned(
    model: Model,
    paragraphs: Paragraphs,
    text: Paragraphs,
    data: str,
    *,
    steps: int,
    lr: float,
    hooks: Sequence[Hook] = (),
) -> tuple[Model, float]:
    """A copy of `model` fine-tuned for `steps` Adam steps at `lr` (all weights, `hooks` on) on
    `paragraphs`' prefixes (data 'prefix') or on all tokens of `text` ('retain', 'related'), and
    how far its weights moved: ||theta' - theta||_F / ||theta||_F over all parameters. (The audit attacks
    whole systems, interventions and ensembles included: interp.audit.systems.relearned_system.)"""
    if data not in RELEARN_DATA:
        raise UserError(f"unknown relearning text {data!r}: use one of {', '.join(RELEARN_DATA)}")
    if data != "prefix" and len(text) == 0:
        raise UserError(f"no {data} paragraphs to relearn on")
    tokens = paragraphs.prefixes if data == "prefix" else text.tokens
    attacked, _, moved = relearned_system(model, hooks, tokens.cpu(), steps=steps, lr=lr)
    return attacked, moved
