"""Can I trust the locator on MY model? An injection benchmark run on a copy of the user's model.

Heads: for each chosen head (default: one seeded head in a lower, a middle and an upper layer),
paragraphs the model cannot recite are forced into a COPY through that head alone
(interp.locator.injection.inject_head: only its W_Q/W_K/W_V/W_O slices train, with a KL term on other
text), then the locator runs on the copy as a user would run it, every method, with the injected
paragraphs as MEM: each method's rank of the injected head, its score margin to the best other
head, the combined rank and each method's seconds are recorded.

Neurons (MemPi's INJ): the W_out rows of a random `neuron_fraction` of all MLP neurons are trained
until the copy recites other injected paragraphs; each neuron method's Recall@k of that set is
measured at k = the injected fraction and at 0.5% (MemPi's layer-wise recall; random = k).

The user's model is never changed: every injection trains a deep copy. `recommended_rank_by`
turns the measurements into the locator's combination: the methods that ranked EVERY injected head
first (else those with the best mean rank), and for neurons the methods within 90% of the best
recall at the injected size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from interp.backend import Model
from interp.data import BATCH_SIZE, Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.locator.injection import Injection, Stall, inject_head, inject_neurons, random_neurons
from interp.locator.options import (  # noqa: F401 (HEAD_LR, MAX_STEPS, SCHEDULE: public names kept here)
    DEFAULT_RANK_BY,
    HEAD_LR,
    MAX_STEPS,
    RECALL_FRACTION,
    SCHEDULE,
    VALIDATE,
    ValidateOptions,
    keywords_from,
    renamed_keyword,
)
from interp.locator.ranking import locate_memorization_head, locate_neurons
from interp.locator.units import Stopwatch, recall_at, recall_ceiling, unit_count
from interp.metrics import NMEM_MAX_EM, score_paragraphs
from interp.models import model_source

_RENAMED_OPTIONS = {"max_paragraphs": "set_size"}  # LocatorValidation.options keys as JSON written before

MEMPI_GPT2_INJ_RECALL = {  # percent, from Chang et al. 2024 (GPT-2, INJ); random = 0.5
    "hard_concrete": 93.7,
    "slimming": 94.4,
    "zero_out": 90.9,
    "integrated_gradients": 84.8,
    "activation": 51.5,
}


def default_heads(model: Model, seed: int = 0) -> list[tuple[int, int]]:
    """One seeded head in a lower, a middle and an upper layer (fewer layers: one head per layer)."""
    n = model.cfg.n_layers
    layers = sorted({0, n // 2, n - 1})
    g = torch.Generator().manual_seed(seed)
    return [(layer, int(torch.randint(model.cfg.n_heads, (1,), generator=g))) for layer in layers]


@dataclass(frozen=True)
class HeadCheck:
    """One injected head and what the locator made of it.

    `ranks[m]`: the head's rank under method m (1 = first), `layer_ranks[m]` its rank among the heads
    of its own layer; `margins[m]`: its score minus the best
    other head's (> 0: first by that much), `margins_z[m]` the same in standard deviations of the
    method's scores; `seconds[m]`: the method's compute time; `combined_rank`: its place in the
    locator's combined order (`rank_by`); `in_screen`: whether the attribution screen passed it to
    the exact methods.
    """

    layer: int
    head: int
    injection: Injection
    ranks: dict[str, int | None]
    layer_ranks: dict[str, int | None]
    margins: dict[str, float]
    margins_z: dict[str, float]
    seconds: dict[str, float]
    combined_rank: int | None
    rank_by: tuple[str, ...]
    in_screen: bool | None
    screen: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seed: int = 0
    variant: str = "as set"
    attempts: tuple[dict, ...] = ()

    @property
    def evidence(self) -> bool:
        """Whether these ranks say anything: the copy recites at least one injected paragraph in full (else
        nothing is known to be stored in the head, and its ranks are not evidence)."""
        return self.injection.n_recited > 0

    def shown(self, rank: int | None) -> str:
        """A rank as the views print it: 'not evidence' for a failed injection, 'outside the screen' for None."""
        if not self.evidence:
            return "not evidence"
        return "outside the screen" if rank is None else str(rank)

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "evidence": self.evidence,
            "layer": self.layer,
            "head": self.head,
            "injection": self.injection.to_json(),
            "ranks": self.ranks,
            "layer_ranks": self.layer_ranks,
            "margins": self.margins,
            "margins_z": self.margins_z,
            "seconds": self.seconds,
            "combined_rank": self.combined_rank,
            "rank_by": list(self.rank_by),
            "in_screen": self.in_screen,
            "screen": self.screen,
            "notes": list(self.notes),
            "variant": self.variant,
            "attempts": list(self.attempts),
        }

    @classmethod
    def from_json(cls, data: dict) -> HeadCheck:
        return cls(
            data["layer"],
            data["head"],
            Injection.from_json(data["injection"]),
            data["ranks"],
            data["layer_ranks"],
            data["margins"],
            data["margins_z"],
            data["seconds"],
            data["combined_rank"],
            tuple(data["rank_by"]),
            data["in_screen"],
            data["screen"],
            tuple(data["notes"]),
            data["seed"],
            data.get("variant", "as set"),
            tuple(data.get("attempts", ())),
        )


@dataclass(frozen=True)
class NeuronCheck:
    """MemPi's INJ on this model: Recall@k of the injected neurons per method (k as fractions of the neurons)."""

    injection: Injection
    fraction: float
    recall: dict[str, dict[str, float]]  # method -> {"injected": r, "0.5%": r}
    seconds: dict[str, float]
    notes: tuple[str, ...] = ()
    seed: int = 0
    ceiling: dict[str, float] | None = None  # {"injected": c, "0.5%": c}: the best recall any method can reach

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "injection": self.injection.to_json(),
            "fraction": self.fraction,
            "recall": self.recall,
            "random_recall": {"injected": self.fraction, "0.5%": RECALL_FRACTION},
            "seconds": self.seconds,
            "recall_ceiling": self.ceiling,
            "mempi_gpt2_recall_at_0.5%": MEMPI_GPT2_INJ_RECALL,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict) -> NeuronCheck:
        return cls(
            Injection.from_json(data["injection"]),
            data["fraction"],
            data["recall"],
            data["seconds"],
            tuple(data["notes"]),
            data["seed"],
            data.get("recall_ceiling"),
        )


@dataclass(frozen=True)
class LocatorValidation(Displayed):
    """The injection benchmark's result on one model: per injected head, and (optionally) for neurons."""

    _view = "interp.views.locator:figure_injected_ranks"

    model: str
    heads: tuple[HeadCheck, ...]
    neuron_checks: tuple[NeuronCheck, ...]
    seconds: float
    options: dict

    @property
    def neurons(self) -> NeuronCheck | None:
        """The first seed's neuron check (every seed's: `neuron_checks`)."""
        return self.neuron_checks[0] if self.neuron_checks else None

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(h.seed for h in self.heads))

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.heads[0].ranks) if self.heads else ()

    def usable_heads(self) -> tuple[HeadCheck, ...]:
        """The checks whose injection worked (the copy recites at least one injected paragraph in full)."""
        return tuple(h for h in self.heads if h.evidence)

    def mean_rank(self) -> dict[str, float | None]:
        """Per method, the mean rank of the injected head over the injections that worked and that the method
        scored (a head outside the screen has no rank: `missed` counts those); None when it scored none."""
        checks = self.usable_heads()
        out = {}
        for m in self.methods:
            ranks = [h.ranks[m] for h in checks if h.ranks[m] is not None]
            out[m] = sum(ranks) / len(ranks) if ranks else None
        return out if checks else {}

    def missed(self) -> dict[str, int]:
        """Per method, how many injected heads (of the injections that worked) it did not score (outside the screen)."""
        checks = self.usable_heads()
        return {m: sum(h.ranks[m] is None for h in checks) for m in self.methods}

    def combined_mean_rank(self) -> float | None:
        """The combined order's mean rank of the injected heads, over the SAME injections as `mean_rank` (those
        that worked; a head outside the screen has no combined rank and is left out, counted by
        `combined_missed`); None when none is left."""
        ranks = [h.combined_rank for h in self.usable_heads() if h.combined_rank is not None]
        return sum(ranks) / len(ranks) if ranks else None

    def combined_missed(self) -> int:
        return sum(h.combined_rank is None for h in self.usable_heads())

    def recall(self) -> dict[str, dict[str, float]]:
        """Neuron Recall@k per method, averaged over the seeds whose neuron injection worked."""
        checks = [c for c in self.neuron_checks if c.injection.n_recited]
        if not checks:
            return {}
        return {
            m: {k: sum(c.recall[m][k] for c in checks) / len(checks) for k in checks[0].recall[m]}
            for m in checks[0].recall
        }

    def recommended_rank_by(self, unit: str = "head") -> tuple[tuple[str, ...], str]:
        """The methods to combine on this model, and why (from what this benchmark measured)."""
        if unit == "neuron":
            recall = self.recall()
            if not recall:
                return (), "no neuron injection was measured"
            fraction = self.neuron_checks[0].fraction
            at = {m: r["injected"] for m, r in recall.items()}
            best = max(at.values())
            chosen = tuple(m for m, r in at.items() if r >= 0.9 * best and r > fraction)
            return chosen, (
                "Recall@k of the injected neurons: "
                + ", ".join(f"{m} {r:.2f}" for m, r in at.items())
                + f" (random {fraction:.3f}); combined: within 90% of the best"
            )
        checks = self.usable_heads()
        if not checks:
            return (), "no head injection succeeded, so nothing was measured"
        means, missed = self.mean_rank(), self.missed()
        first = tuple(m for m in self.methods if all(h.ranks[m] == 1 for h in checks))
        described = ", ".join(
            f"{m} {'-' if v is None else f'{v:.1f}'}" + (f" ({missed[m]} outside the screen)" if missed[m] else "")
            for m, v in means.items()
        )
        if first:
            return first, (
                f"ranked every one of the {len(checks)} injected heads first (mean rank of the injected "
                f"heads: {described})"
            )
        # a method that never saw some injected heads (outside the screen) is worse than any that ranked all
        key = {m: (missed[m], v) for m, v in means.items() if v is not None}
        best = min(key.values())
        chosen = tuple(m for m, k in key.items() if k == best)
        return (
            chosen,
            f"no method ranked every injected head first; best mean rank {best[1]:.1f} among the methods that scored "
            f"the most injected heads (mean ranks over the heads each scored: {described})",
        )

    def to_json(self) -> dict:
        head_choice, head_reason = self.recommended_rank_by("head")
        out = {
            "model": self.model,
            "seeds": list(self.seeds),
            "seconds": self.seconds,
            "options": self.options,
            "heads": [h.to_json() for h in self.heads],
            "n_heads_with_evidence": len(self.usable_heads()),
            "mean_rank": self.mean_rank(),
            "missed": self.missed(),
            "combined_mean_rank": self.combined_mean_rank(),
            "combined_missed": self.combined_missed(),
            "recommended_rank_by": {"head": list(head_choice), "head_reason": head_reason},
        }
        if self.neuron_checks:
            choice, reason = self.recommended_rank_by("neuron")
            out["neurons"] = self.neurons.to_json()
            out["neuron_seeds"] = [c.to_json() for c in self.neuron_checks]
            out["neuron_recall_mean"] = self.recall()
            out["recommended_rank_by"] |= {"neuron": list(choice), "neuron_reason": reason}
        return out

    @classmethod
    def from_json(cls, data: dict) -> LocatorValidation:
        """The result `to_json` wrote (e.g. `interp validate-locator --json`), to show or compare again."""
        return cls(
            data["model"],
            tuple(HeadCheck.from_json(h) for h in data["heads"]),
            tuple(NeuronCheck.from_json(c) for c in data.get("neuron_seeds", ())),
            data["seconds"],
            {_RENAMED_OPTIONS.get(k, k): v for k, v in data["options"].items()},
        )


def load_validation(path: str | Path) -> LocatorValidation:
    """A `validate-locator --json` file read back whole (UserError naming the file if it is not one)."""
    path = Path(path)
    try:
        return LocatorValidation.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError(f"validation file {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is not a whole validate-locator --json result ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class RecordedValidation:
    """The combination a saved validation (`validate-locator --json`) recommends, read back from its file."""

    path: str
    choices: dict[str, tuple[str, ...]]
    reasons: dict[str, str]

    def recommended_rank_by(self, unit: str = "head") -> tuple[tuple[str, ...], str]:
        return self.choices.get(unit, ()), f"{self.reasons.get(unit, 'not measured')} (recorded in {self.path})"


def read_validation(path: str | Path) -> RecordedValidation:
    """The recommended combination of a `validate-locator --json` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        rec = data["recommended_rank_by"]
    except FileNotFoundError:
        raise UserError(f"validation file {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path} is not a validate-locator --json result (no 'recommended_rank_by')") from None
    units = [u for u in ("head", "neuron") if u in rec]
    return RecordedValidation(
        str(path), {u: tuple(rec[u]) for u in units}, {u: rec.get(f"{u}_reason", "") for u in units}
    )


def _pools(
    model: Model, paragraphs: Paragraphs, nmem_max: int, sizes: dict[str, int], seed: int, batch_size: int
) -> dict[str, Paragraphs]:
    """Disjoint seeded sets of paragraphs the model does NOT recite (EM <= nmem_max), one per role."""
    order = torch.randperm(len(paragraphs), generator=torch.Generator().manual_seed(seed))
    need = sum(sizes.values())
    found: list[Tensor] = []
    for start in range(0, len(order), 2 * need):  # score a seeded sample, only as much as needed
        chunk = order[start : start + 2 * need]
        em = score_paragraphs(model, paragraphs.select(chunk), batch_size=batch_size).em
        found.append(chunk[(em <= nmem_max) & (em < paragraphs.continuation_len)])
        if sum(len(f) for f in found) >= need:
            break
    pool = torch.cat(found) if found else torch.zeros(0, dtype=torch.long)
    if len(pool) < need:
        raise UserError(
            f"the injection benchmark needs {need} paragraphs the model does not recite (EM <= {nmem_max}), "
            f"and the set has {len(pool)}: pass more paragraphs or fewer injected ones"
        )
    out, start = {}, 0
    for role, size in sizes.items():
        out[role] = paragraphs.select(pool[start : start + size])
        start += size
    return out


def _recited(injected: Paragraphs, info: Injection, what: str) -> tuple[Paragraphs, tuple[str, ...]]:
    """The injected paragraphs the copy recites in full (the locator's MEM), and a note when not all are.

    A paragraph the copy does not recite is not known to be stored in the trained units, so it is
    not MEM; if none is recited, all are used and the note says the ranks are not evidence."""
    if info.recited:
        return injected, ()
    em = info.em_after.tolist()
    if info.n_recited == 0:
        return injected, (f"{what}: no injected paragraph recited after {info.steps} steps (EM {em}); not evidence",)
    keep = info.recited_mask.nonzero().flatten()
    return injected.select(keep), (
        f"{what}: {info.n_recited} of {len(em)} injected paragraphs recited after {info.steps} steps (EM {em}); "
        "the locator used those as MEM",
    )


def validate_locator(
    model: Model,
    paragraphs: Paragraphs,
    *,
    options: ValidateOptions | None = None,
    heads: list[tuple[int, int]] | None = None,
    neurons: bool = VALIDATE.neurons,
    methods: tuple[str, ...] = VALIDATE.methods,
    neuron_methods: tuple[str, ...] = VALIDATE.neuron_methods,
    n_inject: int = VALIDATE.n_inject,
    n_inject_neurons: int = 2,
    neuron_fraction: float = VALIDATE.neuron_fraction,
    unigram_counts: Int[Tensor, "vocab"] | None = None,
    set_size: int = VALIDATE.set_size,
    candidates: int = VALIDATE.candidates,
    nmem_max: int = NMEM_MAX_EM,
    kl_weight: float = 1.0,
    head_lr: float | str = VALIDATE.lr,
    neuron_lr: float = 1e-2,
    max_steps: int = VALIDATE.max_steps,
    schedule: str = VALIDATE.schedule,
    with_mlp: bool = VALIDATE.with_mlp,
    escalate: bool = VALIDATE.escalate,
    method_options: dict[str, dict] | None = None,
    seed: int = VALIDATE.seed,
    seeds: tuple[int, ...] | None = VALIDATE.seeds,
    batch_size: int = BATCH_SIZE,
    log=None,
    max_paragraphs: int | None = None,
) -> LocatorValidation:
    """Inject paragraphs through known heads (and, with `neurons`, known MLP neurons) of COPIES of `model`,
    run the locator on each copy, and report how each method ranked the known answer.

    `seeds` (default: just `seed`) repeats the whole benchmark per seed: each seed draws its own injected,
    retain, held-out, NMEM and reference paragraphs, its own default heads and neurons. Settings chosen on
    some seeds (e.g. 0-2) are validated on others (e.g. 3-5). The injection recipe: `head_lr` ("auto":
    probed on the model's loss, interp.locator.injection), `schedule`, and a budget of `max_steps` (training stops
    as soon as every paragraph is recited). With `escalate`, a head injection that leaves some paragraph
    unrecited is tried again from the original model (`ESCALATION`: the rate probed on the model's own loss, then
    the head and its layer's MLP), and each head's evidence names the variant it comes from.
    `log`, if given, is called with one line per finished stage.

    `options` (interp validate-locator's `ValidateOptions`) gives the settings whole: its fields replace the
    keyword arguments of the same meaning (`lr`: `head_lr`), which are kept for one release. `max_paragraphs` is
    `set_size`'s name until this release (a DeprecationWarning)."""
    set_size = renamed_keyword(
        "validate_locator", "max_paragraphs", max_paragraphs, "set_size", set_size, VALIDATE.set_size
    )
    o = keywords_from(options, VALIDATE, locals(), {"lr": "head_lr"})
    neurons, methods, neuron_methods, n_inject = o["neurons"], o["methods"], o["neuron_methods"], o["n_inject"]
    neuron_fraction, set_size, candidates = o["neuron_fraction"], o["set_size"], o["candidates"]
    max_steps, head_lr, schedule, with_mlp = o["max_steps"], o["head_lr"], o["schedule"], o["with_mlp"]
    escalate, seed, seeds = o["escalate"], o["seed"], o["seeds"]
    say = log or (lambda line: None)
    if n_inject < 1 or n_inject_neurons < 1:
        raise UserError("inject at least one paragraph (--n-inject)")
    seeds = (seed,) if seeds is None else tuple(dict.fromkeys(seeds))
    if not seeds:
        raise UserError("give at least one seed (--seeds)")
    for layer, head in heads or ():
        if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
            raise UserError(
                f"no head {layer}.{head}: the model has {model.cfg.n_layers} layers of {model.cfg.n_heads} heads"
            )
    recipe = _Recipe.of(locals())  # the settings as resolved above
    clock = Stopwatch()
    checks: list[HeadCheck] = []
    neuron_checks: list[NeuronCheck] = []
    for s in seeds:
        sizes = {"inject": n_inject, "retain": 16, "heldout": 32, "nmem": set_size, "reference": 8}
        if neurons:
            sizes["inject_neurons"] = n_inject_neurons
        sets = _pools(model, paragraphs, nmem_max, sizes, s, batch_size)
        for layer, head in default_heads(model, s) if heads is None else [tuple(h) for h in heads]:
            checks.append(_head_check(model, sets, layer, head, s, recipe, unigram_counts, say, clock))
        if neurons:
            neuron_checks.append(_neuron_check(model, sets, s, recipe, say, clock))
    recorded = {
        "n_inject": n_inject,
        "set_size": set_size,
        "candidates": candidates,
        "kl_weight": kl_weight,
        "head_lr": head_lr,
        "schedule": schedule,
        "with_mlp": with_mlp,
        "escalate": escalate,
        "max_steps": max_steps,
        "methods": list(methods),
        "seeds": list(seeds),
    }
    if neurons:
        recorded |= {
            "n_inject_neurons": n_inject_neurons,
            "neuron_fraction": neuron_fraction,
            "neuron_lr": neuron_lr,
            "neuron_methods": list(neuron_methods),
        }
    source = model_source(model)
    name = (source.spec if source else None) or model.cfg.model_name
    return LocatorValidation(name, tuple(checks), tuple(neuron_checks), clock.seconds, recorded)


@dataclass(frozen=True)
class _Recipe:
    """What every injection and locator run of one benchmark shares (validate_locator's settings)."""

    methods: tuple[str, ...]
    neuron_methods: tuple[str, ...]
    method_options: dict[str, dict] | None
    n_inject: int
    set_size: int
    candidates: int
    kl_weight: float
    head_lr: float | str
    neuron_lr: float
    neuron_fraction: float
    max_steps: int
    schedule: str
    with_mlp: bool
    escalate: bool
    batch_size: int

    @classmethod
    def of(cls, settings: dict) -> _Recipe:
        """The recipe from validate_locator's settings by name (each field is one of them)."""
        return cls(**{f.name: settings[f.name] for f in fields(cls)})


ESCALATION = (
    ("as set", {}),
    ("rate from the model's loss", {"lr": "auto"}),
    ("head + its layer's MLP, rate from the model's loss", {"lr": "auto", "mlp": True}),
)
"""The head injection's variants, tried in order until every paragraph is recited (`escalate`), each with
`max_steps`: at most 3 times `max_steps` of training per head, spent only on a model where the plain recipe fails.
The middle try had twice the steps until measured: on the testbed's default report it recited no more paragraphs
than the first try on either head that needed escalating (3 of 4 and 0 of 4) in its 800 steps, 1,600 of the
benchmark's ~2,500 training steps, while the head + MLP variant recited all four in 16-17 steps."""
STALL = Stall()
"""When a try that a stronger variant follows gives up before its budget (interp.locator.injection.Stall)."""


def _inject(model: Model, sets: dict[str, Paragraphs], layer: int, head: int, r: _Recipe, say):
    """The head injection, escalated through `ESCALATION` while some paragraph is not recited: the copy and the
    Injection of the variant that recited the most (the first to recite all), its name, and every try's summary."""
    best, attempts = None, []
    ladder = [
        (name, change)
        for name, change in (ESCALATION if r.escalate else ESCALATION[:1])
        if not (change.get("mlp") and (r.with_mlp or model.cfg.attn_only))  # already the head + MLP, or no MLP
    ]
    for i, (name, change) in enumerate(ladder):
        forced, info = inject_head(
            model,
            sets["inject"],
            layer,
            head,
            retain=sets["retain"],
            heldout=sets["heldout"],
            lr=change.get("lr", r.head_lr),
            max_steps=r.max_steps,
            kl_weight=r.kl_weight,
            batch_size=r.batch_size,
            schedule=r.schedule,
            with_mlp=r.with_mlp or bool(change.get("mlp")),
            stall=STALL if i < len(ladder) - 1 else None,  # a try that a stronger one follows gives up when stalled
        )
        attempts.append(
            {"variant": name, "n_recited": info.n_recited, "steps": info.steps, "lr": info.lr, "stalled": info.stalled}
        )
        if best is None or info.n_recited > best[1].n_recited:
            best = (forced, info, name)
        else:
            del forced
        if info.recited:
            break
        say(f"head {layer}.{head}: {name}: {info.n_recited} of {len(info.ids)} paragraphs recited; escalating")
    return (*best, tuple(attempts))


def _head_check(
    model: Model,
    sets: dict[str, Paragraphs],
    layer: int,
    head: int,
    seed: int,
    r: _Recipe,
    unigram_counts: Int[Tensor, "vocab"] | None,
    say,
    clock: Stopwatch,
) -> HeadCheck:
    """One head: paragraphs forced through it in a copy, the locator run on the copy, each method's rank of it."""
    forced, info, variant, attempts = _inject(model, sets, layer, head, r, say)
    mem, notes = _recited(sets["inject"], info, f"head {layer}.{head} (seed {seed})")
    if variant != ESCALATION[0][0]:
        notes += (f"head {layer}.{head} (seed {seed}): the evidence comes from the variant '{variant}'",)
    say(
        f"seed {seed}, head {layer}.{head}: {info.n_recited} of {len(info.ids)} paragraphs recited after "
        f"{info.steps} steps at rate {info.lr:g} ({info.seconds:.0f} s); locating ({clock.seconds:.0f} s so far)"
    )
    ranking = locate_memorization_head(
        forced,
        mem=mem,
        nmem=sets["nmem"],
        reference=sets["reference"],
        unigram_counts=unigram_counts,
        methods=r.methods,
        rank_by=tuple(m for m in DEFAULT_RANK_BY if m in r.methods) or None,
        candidates=r.candidates,
        set_size=max(r.set_size, r.n_inject),
        method_options=r.method_options,
        seed=seed,
        batch_size=r.batch_size,
    )
    del forced
    results = ranking.results
    in_screen = None
    if ranking.candidates is not None:
        in_screen = bool(((ranking.candidates[:, 0] == layer) & (ranking.candidates[:, 1] == head)).any())
    check = HeadCheck(
        layer,
        head,
        info,
        {m: res.rank_of(layer, head) for m, res in results.items()},
        {m: res.layer_rank_of(layer, head) for m, res in results.items()},
        {m: res.margin(layer, head) for m, res in results.items()},
        {m: res.margin_z(layer, head) for m, res in results.items()},
        {m: res.seconds for m, res in results.items()},
        ranking.rank_of(layer, head),
        ranking.rank_by,
        in_screen,
        ranking.screen,
        notes + ranking.notes,
        seed,
        variant,
        attempts,
    )
    say(
        f"seed {seed}, head {layer}.{head}: combined rank {check.shown(check.combined_rank)} ({clock.seconds:.0f} s so far)"
    )
    return check


def _neuron_check(
    model: Model, sets: dict[str, Paragraphs], seed: int, r: _Recipe, say, clock: Stopwatch
) -> NeuronCheck:
    """MemPi's INJ for one seed: a random neuron set trained to recite its paragraphs, each method's Recall@k."""
    chosen = random_neurons(model, r.neuron_fraction, seed)
    forced, info = inject_neurons(
        model,
        sets["inject_neurons"],
        chosen,
        retain=sets["retain"],
        heldout=sets["heldout"],
        lr=r.neuron_lr,
        max_steps=r.max_steps,
        kl_weight=r.kl_weight,
        batch_size=r.batch_size,
    )
    mem, notes = _recited(sets["inject_neurons"], info, f"neurons (seed {seed})")
    say(
        f"seed {seed}, neurons: {info.n_recited} of {len(info.ids)} paragraphs recited after {info.steps} steps "
        f"({info.seconds:.0f} s); scoring ({clock.seconds:.0f} s so far)"
    )
    ranking = locate_neurons(
        forced, mem, methods=r.neuron_methods, method_options=r.method_options, seed=seed, batch_size=r.batch_size
    )
    del forced
    gold = info.gold(model.cfg.n_layers, unit_count(model, "neuron"))
    recall = {
        m: {
            "injected": recall_at(res.score, gold, r.neuron_fraction),
            "0.5%": recall_at(res.score, gold, RECALL_FRACTION),
        }
        for m, res in ranking.results.items()
    }
    ceiling = {
        "injected": recall_ceiling(gold, r.neuron_fraction),
        "0.5%": recall_ceiling(gold, RECALL_FRACTION),
    }
    return NeuronCheck(info, r.neuron_fraction, recall, ranking.seconds, notes + ranking.notes, seed, ceiling)
