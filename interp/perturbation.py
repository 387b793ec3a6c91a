"""Prefix perturbation: how much does changing ONE prefix token derail the recited continuation?

For every prefix position and several random replacement tokens, the model continues the
perturbed prefix greedily; EM counts how many tokens of the REFERENCE continuation it still
reproduces (the model's own unperturbed greedy continuation by default, as in the paper, so an
unperturbed paragraph scores the full length for MEM and NMEM alike), and NLL is the reference
continuation's mean negative log-likelihood. Greedy decoding reproduces the reference up to
position k exactly when the teacher-forced argmax matches it at every earlier position, so EM
and NLL of ALL (paragraph, position, sample) variants come from batched teacher-forced passes;
only the most damaging variant of each paragraph is decoded, giving its new continuation: the
paper's editing target (Eq. 4), with the ORIGINAL prefix in front.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.backend import Model
from interp.constants import BATCH_SIZE
from interp.data import Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.memorization import mem_nmem_thresholds
from interp.metrics import (  # NMEM_MAX_EM: a public name here before PerturbOptions moved
    NMEM_MAX_EM,  # noqa: F401
    em_from_hits,
    greedy_continuations,
    teacher_forced_hits,
)
from interp.options import PERTURB, REFERENCES, PerturbOptions  # noqa: F401 (public names kept here)


def random_replacements(
    tokens: Int[Tensor, "n pos"], samples: int, vocab_size: int, generator: torch.Generator
) -> Int[Tensor, "n pos sample"]:
    """Uniform random tokens, each different from the token it replaces."""
    shift = torch.randint(1, vocab_size, (*tokens.shape, samples), generator=generator)
    return (tokens.cpu()[..., None] + shift) % vocab_size


def corrupt_prefixes(paragraphs: Paragraphs, fraction: float, vocab_size: int, seed: int = 0) -> Int[Tensor, "n seq"]:
    """The paragraphs with a random `fraction` of each prefix's positions replaced by random other tokens.

    The continuation is kept: the corrupted run of activation patching.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"corruption fraction {fraction} must be in (0, 1]")
    generator = torch.Generator().manual_seed(seed)
    tokens = paragraphs.tokens.cpu().clone()
    n, p = len(paragraphs), paragraphs.prefix_len
    k = max(1, round(fraction * p))
    positions = torch.rand(n, p, generator=generator).argsort(1)[:, :k]
    old = tokens[:, :p].gather(1, positions)
    new = random_replacements(old, 1, vocab_size, generator)[..., 0]
    tokens[:, :p] = tokens[:, :p].scatter(1, positions, new)
    return tokens


def perturbed_prefixes(
    prefixes: Int[Tensor, "n prefix"], replacements: Int[Tensor, "n prefix sample"]
) -> Int[Tensor, "n prefix sample prefix"]:
    """Every prefix with exactly one position replaced: [paragraph, position, sample, token]."""
    n, p, s = replacements.shape
    out = prefixes[:, None, None, :].expand(n, p, s, p).clone()
    pos = torch.arange(p)
    out[:, pos, :, pos] = replacements.permute(1, 0, 2)
    return out


@dataclass(frozen=True)
class PerturbationResult(Displayed):
    """EM / NLL of the reference continuation under every single-token prefix perturbation.

    `em`, `nll` and `replacements` are [paragraph, prefix position, sample]; `worst` holds the
    (position, sample) of each paragraph's most damaging perturbation (lowest EM, then highest
    NLL) and `new_continuations` the greedy continuation it produced. `editing_targets` = the
    original prefix + that new continuation (same ids, same order as the input paragraphs).
    """

    _view = "interp.views.memorization:figure_perturbation_by_position"

    ids: tuple[str, ...]
    reference: str
    reference_continuations: Int[Tensor, "n cont"]
    base_em: Int[Tensor, "n"]
    base_nll: Float[Tensor, "n"]
    replacements: Int[Tensor, "n prefix sample"]
    em: Int[Tensor, "n prefix sample"]
    nll: Float[Tensor, "n prefix sample"]
    worst: Int[Tensor, "n 2"]
    new_continuations: Int[Tensor, "n cont"]
    editing_targets: Paragraphs

    @property
    def em_drop(self) -> Float[Tensor, "n prefix"]:
        """Mean EM lost by perturbing each prefix position (averaged over samples)."""
        return (self.base_em[:, None, None] - self.em).float().mean(-1)

    @property
    def nll_increase(self) -> Float[Tensor, "n prefix"]:
        return (self.nll - self.base_nll[:, None, None]).mean(-1)

    @property
    def mean_em_drop(self) -> Float[Tensor, "n"]:
        """Mean EM drop per perturbed token, per paragraph (the paper: 12.19 MEM vs 33.12 NMEM)."""
        return self.em_drop.mean(-1)

    @property
    def target_changed(self) -> Bool[Tensor, "n"]:
        """Whether the most damaging perturbation changed the continuation at all."""
        return (self.new_continuations != self.reference_continuations).any(-1)

    def select(self, index: Tensor) -> PerturbationResult:
        """The rows at `index` (positions into this result), e.g. the MEM or NMEM paragraphs."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return PerturbationResult(
            ids=tuple(self.ids[i] for i in idx.tolist()),
            reference=self.reference,
            reference_continuations=self.reference_continuations[idx],
            base_em=self.base_em[idx],
            base_nll=self.base_nll[idx],
            replacements=self.replacements[idx],
            em=self.em[idx],
            nll=self.nll[idx],
            worst=self.worst[idx],
            new_continuations=self.new_continuations[idx],
            editing_targets=self.editing_targets.select(idx),
        )

    def _figure_args(self) -> tuple[PerturbationResult, PerturbationResult]:
        """The view's two series: the MEM rows (base EM = the whole continuation) and the NMEM rows."""
        mem_min, nmem_max = mem_nmem_thresholds(self.reference_continuations.shape[-1])
        return self.select(torch.where(self.base_em >= mem_min)[0]), self.select(torch.where(self.base_em <= nmem_max)[0])

    def to_json(self) -> dict:
        return {
            "reference": self.reference,
            "samples_per_position": self.em.shape[-1],
            "mean_em_drop": float(self.mean_em_drop.mean()) if len(self.ids) else None,
            "em_drop_by_position": self.em_drop.mean(0),
            "paragraphs": [
                {
                    "id": pid,
                    "base_em": int(self.base_em[i]),
                    "base_nll": float(self.base_nll[i]),
                    "mean_em_drop": float(self.mean_em_drop[i]),
                    "em_drop_by_position": self.em_drop[i],
                    "nll_increase_by_position": self.nll_increase[i],
                    "worst_position": int(self.worst[i, 0]),
                    "worst_token": int(self.replacements[i, self.worst[i, 0], self.worst[i, 1]]),
                    "worst_em": int(self.em[i, self.worst[i, 0], self.worst[i, 1]]),
                    "new_continuation": self.new_continuations[i],
                    "target_changed": bool(self.target_changed[i]),
                }
                for i, pid in enumerate(self.ids)
            ],
        }


def perturbed_batch_size(batch_size: int = BATCH_SIZE) -> int:
    """Perturbed sequences per forward pass for a caller whose forward passes hold `batch_size` paragraphs: four
    times as many, since no gradient is kept (256 at the default 64)."""
    return 4 * batch_size


@torch.no_grad()
def prefix_perturbation(
    model: Model,
    paragraphs: Paragraphs,
    *,
    samples_per_position: int = PERTURB.samples,
    seed: int = PERTURB.seed,
    reference: str = PERTURB.reference,
    batch_size: int = perturbed_batch_size(),
) -> PerturbationResult:
    """Replace each prefix token by `samples_per_position` random tokens, one at a time; score all.

    `reference="greedy"` compares against the model's own unperturbed greedy continuation (the
    paper's setting); `"true"` against the paragraph's true continuation.
    """
    if reference not in REFERENCES:
        raise UserError(f"unknown reference {reference!r}: use one of {', '.join(REFERENCES)}")
    if samples_per_position < 1:
        raise UserError("samples per position must be at least 1")
    if len(paragraphs) == 0:
        raise UserError("no paragraphs to perturb")
    n, p, cont = len(paragraphs), paragraphs.prefix_len, paragraphs.continuation_len
    prefixes = paragraphs.prefixes.cpu()
    if reference == "greedy":
        ref = greedy_continuations(model, prefixes, cont, batch_size=batch_size).cpu()
    else:
        ref = paragraphs.continuations.cpu()
    base_hits, base_nll = teacher_forced_hits(model, torch.cat([prefixes, ref], 1), p, batch_size)
    base_em = em_from_hits(base_hits)

    generator = torch.Generator().manual_seed(seed)
    repl = random_replacements(prefixes, samples_per_position, model.cfg.d_vocab, generator)
    variants = perturbed_prefixes(prefixes, repl)  # [n, p, s, p]
    s = samples_per_position
    flat = torch.cat([variants.reshape(n * p * s, p), ref.repeat_interleave(p * s, 0)], 1)
    hits, nll = teacher_forced_hits(model, flat, p, batch_size)
    em = em_from_hits(hits)
    em, nll = em.view(n, p, s), nll.view(n, p, s)

    # Most damaging: the lowest EM, ties broken by the highest NLL.
    em_flat, nll_flat = em.view(n, -1), nll.view(n, -1)
    lowest = em_flat == em_flat.min(1, keepdim=True).values
    best = nll_flat.masked_fill(~lowest, float("-inf")).argmax(1)
    worst = torch.stack([best // s, best % s], 1)
    worst_prefixes = variants[torch.arange(n), worst[:, 0], worst[:, 1]]
    new_cont = greedy_continuations(model, worst_prefixes, cont, batch_size=batch_size).cpu()
    targets = Paragraphs(
        tokens=torch.cat([prefixes, new_cont], 1),
        prefix_len=p,
        ids=paragraphs.ids,
        counts=paragraphs.counts,
        meta={k: v for k, v in paragraphs.meta.items() if k != "text"},
    )
    return PerturbationResult(
        ids=paragraphs.ids,
        reference=reference,
        reference_continuations=ref,
        base_em=base_em,
        base_nll=base_nll,
        replacements=repl,
        em=em,
        nll=nll,
        worst=worst,
        new_continuations=new_cont,
        editing_targets=targets,
    )
