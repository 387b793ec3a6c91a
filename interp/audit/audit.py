"""The forgetting audit: is text "unlearned" by an edit really gone, or only hidden?

For each unlearned model (a weight-edited copy, the original with forward hooks, e.g. LoReFT, or a
decoding-time ensemble, attacked through its base weights) and each target paragraph, every attack's
greedy EM and extraction probability (log10 p of sampling the whole continuation), with two controls run
through the same code, both on the ORIGINAL model and so computed once for every method:

- the original under the same attack, on the targets: does the attack itself break recitation?
  (if it does, the recovery it shows on the unlearned model understates what is stored);
- the original under the same attack, on paragraphs it never recited (never-known: the testbed's
  held-out split, or a file): does the attack teach text that was never there? Its mean EM gain is the
  attack's null, subtracted below. Attacks that pick the best of many prompts gain by selection alone
  and pay for it here. (Restoring the original into itself is a no-op, so restoration's null is 0: its
  best-of-windows selection is not charged; the unlearned models differ from the original only on
  what they forgot, which is why the null is taken there once rather than per method.)

Attacks (`ATTACKS`): "int8" / "int4" (interp.audit.quantization), "relearn_prefix" / "relearn_retain" /
"relearn_related" (interp.audit.relearning), "restore" (interp.audit.restoration), "perturb" / "shift"
(interp.audit.prefixes). Cost per unlearned model: one quantized copy per bit width, one relearning run
per relearning text, the restoration windows, K edited and len(shifts) shifted prefixes, all scored on
that model's targets only; the controls add the same once, on targets and never-known paragraphs in one
batch where the attack does not depend on them (relearning on prefixes and related text: one run per
group of targets and one for the never-known paragraphs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.audit.prefixes import edit_attack, shift_attack, single_token_edits
from interp.audit.quantization import quantized
from interp.audit.relearning import related_text, relearned
from interp.audit.restoration import RESTORED, restoration_attack
from interp.audit.scoring import score
from interp.backend import Model
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.metrics import Scorable
from interp.options import option
from interp.position import filler_spans
from interp.restore import EXPERIMENTS
from interp.unlearning import Hook
from interp.unlearning.proxy import ProxyModel

ATTACKS = ("int8", "int4", "relearn_prefix", "relearn_retain", "relearn_related", "restore", "perturb", "shift")
Unlearned = Model | ProxyModel | tuple[Model | ProxyModel, Sequence[Hook]]


@dataclass(frozen=True)
class AuditConfig:
    """Which attacks run, and their budgets. Defaults: int4 in groups of 32 input channels (a common
    GPTQ / AWQ size), relearning 10 Adam steps at 1e-4 (the unlearning table's attack; related text: at
    most 16 paragraphs, about the retain set's 10, which bounds its cost), K = 32
    single-token prefix edits, left-context shifts of 1, 2, 4 and 8 tokens, restoration windows of
    interp.restore's default width."""

    attacks: tuple[str, ...] = option(ATTACKS, "the attacks to run, some of the default")
    group_size: int = option(32, "int4: input channels per scale")
    relearn_steps: int = option(10, "relearning: Adam steps")
    relearn_lr: float = option(1e-4, "relearning: learning rate")
    related_limit: int = option(16, "relearn_related: paragraphs of related text per run, at most")
    related_ngram: int = option(
        8, "relearn_related: related text sharing this many consecutive tokens with a continuation is dropped"
    )
    width: int | None = option(None, "restoration window width in layers (odd; None: scaled)")
    restore_experiments: tuple[str, ...] = option(RESTORED, f"restoration: some of {','.join(EXPERIMENTS)}")
    perturb_k: int = option(32, "single-token prefix edits tried")
    shifts: tuple[int, ...] = option((1, 2, 4, 8), "tokens of left context tried before each paragraph")
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
        bad = [e for e in self.restore_experiments if e not in EXPERIMENTS]
        if bad or not self.restore_experiments:
            raise UserError(f"unknown restoration experiments {bad}: use some of {', '.join(EXPERIMENTS)}")


@dataclass(frozen=True)
class AuditResult:
    """Per method m, attack a and target paragraph i: EM and log10 p attacked, and the two controls.

    `em_original_attacked[a, i]`: the original model under attack a (control 1); `em_never_known_*`: the
    original on never-known paragraphs j, without and with each attack (control 2; the same for every
    method, kept per method m so that a per-method control fits the same fields).
    `choices[method][attack]`: what the attack picked per target (restoration window, edited position,
    shift). `quantization_error[model][attack][tensor]` = ||w' - w||_F / ||w||_F;
    `weights_moved[model][attack]` = ||theta' - theta||_F / ||theta||_F of each relearning run."""

    ids: tuple[str, ...]
    never_known_ids: tuple[str, ...]
    methods: tuple[str, ...]
    attacks: tuple[str, ...]
    continuation_len: int
    em_original: Int[Tensor, "n"]
    log10p_original: Float[Tensor, "n"]
    em_unlearned: Int[Tensor, "m n"]
    log10p_unlearned: Float[Tensor, "m n"]
    em_attacked: Int[Tensor, "m a n"]
    log10p_attacked: Float[Tensor, "m a n"]
    em_original_attacked: Int[Tensor, "a n"]
    log10p_original_attacked: Float[Tensor, "a n"]
    em_never_known_unlearned: Int[Tensor, "m k"]
    em_never_known_attacked: Int[Tensor, "m a k"]
    log10p_never_known_attacked: Float[Tensor, "m a k"]
    choices: dict = field(default_factory=dict)
    quantization_error: dict = field(default_factory=dict)
    weights_moved: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def never_known_gain(self) -> Float[Tensor, "m a"]:
        """Mean EM an attack adds to never-known paragraphs (control 2), at least 0: the attack's
        null. A negative mean (an attack that damages text in general) is not credited to the targets:
        a target already at EM 0 cannot fall further, so crediting it would invent recovery."""
        return (self.em_never_known_attacked - self.em_never_known_unlearned[:, None]).float().mean(-1).clamp_min(0)

    @property
    def recovery(self) -> Float[Tensor, "m a n"]:
        """clip((EM_attacked - EM_unlearned - never_known_gain) / (EM_original - EM_unlearned), 0, 1) per method,
        attack and target; nan where the unlearning lowered nothing (EM_unlearned >= EM_original)."""
        gained = (self.em_attacked - self.em_unlearned[:, None]).float() - self.never_known_gain[..., None]
        forgotten = (self.em_original - self.em_unlearned).float()[:, None]
        return (gained / forgotten.where(forgotten > 0, torch.tensor(float("nan")))).clamp(0, 1)

    @property
    def residual(self) -> Float[Tensor, "m n"]:
        """Residual memorization per method and target: the largest recovery over attacks.

        residual[m, i] = max_a clip((EM_a,i - EM_u,i - g_a) / (EM_o,i - EM_u,i), 0, 1), where EM_o, EM_u,
        EM_a are the target's greedy EM on the original, the unlearned and the attacked unlearned model,
        and g_a the mean EM gain (at least 0) attack a gives never-known paragraphs on the same unlearned
        model. Why: EM_a - EM_u is what the attack brought back, g_a what it would bring from nothing (by
        teaching, or by picking the best of many prompts or windows), and EM_o - EM_u what the unlearning
        took away, so the score is the share of the forgotten text that the best attack returns beyond its
        null: 0 = gone under every attack, 1 = fully back to the original's EM (as interp.restore's
        `em_recovered`). Dividing by EM_o alone would cap a method left at EM 10 of 50 at 0.8; at matched
        forgetting the two differ by one factor for every method. Clipped, since an attack that damages
        further is no negative memory. An attacker uses whichever attack works, hence the max; it is a
        lower bound on what is stored. nan where nothing was forgotten."""
        return self.recovery.max(1).values

    @property
    def residual_attack(self) -> list[list[str | None]]:
        """The attack achieving each residual (None where every recovery is 0)."""
        rec = self.recovery
        best = rec.argmax(1)
        return [
            [self.attacks[int(best[m, i])] if rec[m, best[m, i], i] > 0 else None for i in range(len(self.ids))]
            for m in range(len(self.methods))
        ]

    @property
    def median_residual(self) -> Float[Tensor, "m"]:
        """Median residual over the targets that were forgotten at all (nan when none was)."""
        return self.residual.nanmedian(-1).values

    def table(self, method: str) -> list[dict]:
        """One row per attack for `method`: mean EM and log10 p attacked, both controls, mean recovery."""
        m = self.methods.index(method)
        rows = [
            {
                "attack": "none (unlearned)",
                "em": float(self.em_unlearned[m].float().mean()),
                "log10p": float(self.log10p_unlearned[m].mean()),
                "original_em": float(self.em_original.float().mean()),
                "never_known_gain": 0.0,
                "recovery": 0.0,
            }
        ]
        for a, attack in enumerate(self.attacks):
            rows.append(
                {
                    "attack": attack,
                    "em": float(self.em_attacked[m, a].float().mean()),
                    "log10p": float(self.log10p_attacked[m, a].mean()),
                    "original_em": float(self.em_original_attacked[a].float().mean()),
                    "never_known_gain": float(self.never_known_gain[m, a]),
                    "recovery": float(self.recovery[m, a].nanmean()),
                }
            )
        return rows

    def format(self) -> str:
        """Plain-text tables, one per method, and each target's residual score."""
        lines = []
        for m, method in enumerate(self.methods):
            lines.append(
                f"{method}: {len(self.ids)} target(s), EM {self.em_original.float().mean():.1f} -> "
                f"{self.em_unlearned[m].float().mean():.1f} of {self.continuation_len}; "
                f"median residual {float(self.median_residual[m]):.2f}"
            )
            lines.append(f"  {'attack':<17} {'EM':>6} {'log10 p':>9} {'orig EM':>8} {'null gain':>9} {'recovery':>8}")
            for r in self.table(method):
                lines.append(
                    f"  {r['attack']:<17} {r['em']:>6.1f} {r['log10p']:>9.1f} {r['original_em']:>8.1f} "
                    f"{r['never_known_gain']:>9.2f} {r['recovery']:>8.2f}"
                )
            attack = self.residual_attack[m]
            lines.append(
                "  residual per target: "
                + ", ".join(
                    f"{pid} {float(self.residual[m, i]):.2f} ({attack[i] or '-'})" for i, pid in enumerate(self.ids)
                )
            )
        lines.append(
            "orig EM = the same attack on the original model (control 1); null gain = mean EM the attack adds to "
            f"{len(self.never_known_ids)} never-known paragraphs (control 2, subtracted); recovery = share of the "
            "forgotten EM brought back beyond that null (see AuditResult.residual)"
        )
        return "\n".join(lines)

    def to_json(self) -> dict:
        rec, res, res_attack = self.recovery, self.residual, self.residual_attack
        methods = {}
        for m, method in enumerate(self.methods):
            methods[method] = {
                "table": self.table(method),
                "median_residual": float(self.median_residual[m]),
                "never_known_gain": {a: float(self.never_known_gain[m, j]) for j, a in enumerate(self.attacks)},
                "paragraphs": [
                    {
                        "id": pid,
                        "em_original": int(self.em_original[i]),
                        "em_unlearned": int(self.em_unlearned[m, i]),
                        "log10p_original": float(self.log10p_original[i]),
                        "log10p_unlearned": float(self.log10p_unlearned[m, i]),
                        "residual": float(res[m, i]),
                        "residual_attack": res_attack[m][i],
                        "attacks": {
                            a: {
                                "em": int(self.em_attacked[m, j, i]),
                                "log10p": float(self.log10p_attacked[m, j, i]),
                                "recovery": float(rec[m, j, i]),
                                "original_em": int(self.em_original_attacked[j, i]),
                                "choice": self.choices.get(method, {}).get(a, [None] * len(self.ids))[i],
                            }
                            for j, a in enumerate(self.attacks)
                        },
                    }
                    for i, pid in enumerate(self.ids)
                ],
            }
        return {
            "targets": list(self.ids),
            "never_known": list(self.never_known_ids),
            "attacks": list(self.attacks),
            "continuation_len": self.continuation_len,
            "score": "residual = max over attacks of clip((EM_attacked - EM_unlearned - never_known_gain) / "
            "(EM_original - EM_unlearned), 0, 1)",
            "methods": methods,
            "original_control": {
                a: {"em": self.em_original_attacked[j], "log10p": self.log10p_original_attacked[j]}
                for j, a in enumerate(self.attacks)
            },
            "never_known_em": {
                method: {
                    "unlearned": self.em_never_known_unlearned[m],
                    **{a: self.em_never_known_attacked[m, j] for j, a in enumerate(self.attacks)},
                }
                for m, method in enumerate(self.methods)
            },
            "quantization_error": self.quantization_error,
            "weights_moved": self.weights_moved,
            "settings": self.settings,
        }


def _join(a: Paragraphs, b: Paragraphs) -> Paragraphs:
    tokens = torch.cat([a.tokens.cpu(), b.tokens.cpu()])
    return Paragraphs(tokens, a.prefix_len, tuple(str(i) for i in range(tokens.shape[0])))


@dataclass(frozen=True)
class _Sets:
    """What every model is attacked on, fixed once so that all models see the same prompts: rows 0..n-1 of
    `both` are the targets, rows n.. the never-known paragraphs; `groups` = the target rows each unlearned
    model forgot (all of them, or one target per run)."""

    targets: Paragraphs
    never_known: Paragraphs
    both: Paragraphs
    retain: Paragraphs | None
    related: Paragraphs | None  # the user's related text (one set for every run), else found in `pool`
    pool: Paragraphs | None
    groups: tuple[Tensor, ...]
    variants: Tensor | None  # [n + k, K, seq]
    positions: Tensor | None  # [n + k, K]
    spans: Tensor | None  # [n + k, max shift]: each row's left context
    config: AuditConfig

    @property
    def never_known_rows(self) -> Tensor:
        return torch.arange(len(self.targets), len(self.both))

    def relearning_text(self, attack: str, rows: Tensor) -> Paragraphs:
        """The text attack `relearn_*` trains on when it attacks `rows` (target rows, or the never-known rows)."""
        data = attack.removeprefix("relearn_")
        if data == "prefix":
            return self.both.select(rows)
        if data == "retain":
            return self.retain
        if self.related is not None:
            return self.related
        n, c = len(self.targets), self.config
        own = self.never_known if int(rows[0]) >= n else self.targets.select(rows)
        other = self.targets.ids if int(rows[0]) >= n else self.never_known.ids
        return related_text(self.pool, own, exclude=other, ngram=c.related_ngram, limit=c.related_limit)

    def runs(self, attack: str, rows: Tensor) -> list[Tensor]:
        """`rows` split into the runs attack `attack` needs: relearning on the prefixes or on related text is
        one run per group (and one for the never-known rows), every other attack one run for all rows."""
        if attack == "relearn_prefix" or (attack == "relearn_related" and self.related is None):
            n = len(self.targets)
            parts = [g for g in self.groups if bool(torch.isin(g, rows).all())]
            if bool((rows >= n).any()):
                parts.append(rows[rows >= n])
            return parts
        return [rows]


def _weights(model: Scorable) -> Model:
    """The weights an attacker holds: the model's own, or a decoding-time ensemble's base."""
    return model.base if isinstance(model, ProxyModel) else model


def _with_weights(model: Scorable, weights: Model) -> Scorable:
    return model.with_base(weights) if isinstance(model, ProxyModel) else weights


def _attack(
    original: Model, model: Scorable, hooks: Sequence[Hook], attack: str, rows: Tensor, sets: _Sets
) -> tuple[Tensor, Tensor, list | None, dict]:
    """EM and log10 p of paragraphs `rows` of `sets.both` under one attack on (`model`, `hooks`), in one run,
    what the attack picked per row, and what it did to the model. A decoding-time ensemble (ProxyModel) is
    attacked through its base weights, its small models' logit difference kept."""
    config, bs, p = sets.config, sets.config.batch_size, sets.both.prefix_len
    paragraphs = sets.both.select(rows)
    if attack in ("int8", "int4"):
        bits, group = (8, None) if attack == "int8" else (4, config.group_size)
        q, errors = quantized(_weights(model), bits, group)
        em, logp = score(_with_weights(model, q), paragraphs.tokens, p, hooks=hooks, batch_size=bs)
        return em, logp, None, {"relative_error": errors}
    if attack.startswith("relearn_"):
        text = sets.relearning_text(attack, rows)
        attacked, moved = relearned(
            _weights(model),
            paragraphs,
            text,
            attack.removeprefix("relearn_"),
            steps=config.relearn_steps,
            lr=config.relearn_lr,
            hooks=hooks,
        )
        em, logp = score(_with_weights(model, attacked), paragraphs.tokens, p, hooks=hooks, batch_size=bs)
        return em, logp, None, {"weights_moved": moved}
    if attack == "restore":
        if (model is original and not hooks) or isinstance(model, ProxyModel):  # the original's activations are there
            em, logp = score(model, paragraphs.tokens, p, hooks=hooks, batch_size=bs)
            return em, logp, ["no-op (the weights are the original's)"] * len(rows), {}
        return (
            *restoration_attack(
                original,
                model,
                paragraphs,
                hooks=hooks,
                width=config.width,
                experiments=config.restore_experiments,
                batch_size=bs,
            ),
            {},
        )
    if attack == "perturb":
        em, logp, best = edit_attack(model, sets.variants[rows], p, hooks=hooks, batch_size=bs)
        pos = sets.positions[rows, best]
        return em, logp, [f"position {int(x)}" for x in pos], {}
    em, logp, shift = shift_attack(model, paragraphs, sets.spans[rows], config.shifts, hooks=hooks, batch_size=bs)
    return em, logp, [f"{int(s)} tokens" for s in shift], {}


def _attack_rows(
    original: Model,
    model: Scorable,
    hooks: Sequence[Hook],
    attack: str,
    rows: Tensor,
    sets: _Sets,
    label: Callable[[Tensor], str],
) -> tuple[Tensor, Tensor, list | None, dict]:
    """`_attack` over `rows` in the runs the attack needs (`_Sets.runs`), put back in the order of `rows`;
    the quantization errors of the (one) quantized model, the weights moved per run under `label(run)`."""
    em = torch.zeros(len(rows), dtype=torch.long)
    logp = torch.zeros(len(rows))
    choices: list | None = None
    info: dict = {}
    where = {int(r): i for i, r in enumerate(rows)}
    for run in sets.runs(attack, rows):
        e, lp, chosen, done = _attack(original, model, hooks, attack, run, sets)
        at = torch.tensor([where[int(r)] for r in run])
        em[at], logp[at] = e.long(), lp
        if chosen is not None:
            choices = choices or [None] * len(rows)
            for i, c in zip(at.tolist(), chosen):
                choices[i] = c
        if "relative_error" in done:
            info["relative_error"] = done["relative_error"]
        if "weights_moved" in done:
            info.setdefault("weights_moved", {})[label(run)] = done["weights_moved"]
    return em, logp, choices, info


def _check_sets(targets: Paragraphs, never_known: Paragraphs, retain: Paragraphs | None, config: AuditConfig) -> None:
    if len(targets) == 0:
        raise UserError("no target paragraphs to audit: pass the ones the unlearning forgot")
    if len(never_known) == 0:
        raise UserError(
            "the audit's second control needs paragraphs the model never recited (the testbed's held-out split, or "
            "--never-known FILE)"
        )
    shapes = {(p.prefix_len, p.seq_len) for p in (targets, never_known, retain) if p is not None and len(p)}
    if len(shapes) > 1:
        raise UserError("targets, never-known and retain paragraphs must share prefix and continuation lengths")
    if "relearn_retain" in config.attacks and (retain is None or len(retain) == 0):
        raise UserError("the relearn_retain attack needs retain paragraphs: pass some, or drop it from --attacks")
    overlap = set(targets.ids) & set(never_known.ids)
    if overlap:
        raise UserError(f"paragraphs {sorted(overlap)[:3]} are both targets and never-known: they must differ")


def _runs_of(unlearned_models: Mapping[str, Unlearned | Sequence[Unlearned]], n: int) -> dict[str, list]:
    """name -> [(model, hooks)], one entry (forgot every target) or one per target (target i's own run)."""
    out = {}
    for name, value in unlearned_models.items():
        items = list(value) if isinstance(value, list | tuple) and not _is_model_with_hooks(value) else [value]
        if len(items) not in (1, n):
            raise UserError(f"{name}: {len(items)} unlearned models for {n} targets: give one, or one per target")
        out[name] = [(v, []) if not isinstance(v, tuple) else (v[0], list(v[1])) for v in items]
    return out


def _is_model_with_hooks(value) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and not isinstance(value[1], Model | ProxyModel)


def audit(
    original: Model,
    unlearned_models: Mapping[str, Unlearned | Sequence[Unlearned]],
    targets: Paragraphs,
    never_known: Paragraphs,
    *,
    retain: Paragraphs | None = None,
    related: Paragraphs | None = None,
    pool: Paragraphs | None = None,
    config: AuditConfig = AuditConfig(),
) -> AuditResult:
    """Attack every unlearned model on `targets`, with the controls. A method is one model (a Model,
    a decoding-time ProxyModel, or (model, hooks)) that forgot every target, or a list of them, model i having
    forgotten target i alone (the unlearning table's runs): each is attacked on the targets it forgot.

    `never_known`: paragraphs the original never recited (control 2; also the shift attack's left context
    when no `retain` is given). `retain`: text for the relearn_retain attack. Related text for
    relearn_related: `related` (one set, used for every run), else the other paragraphs of each
    paragraph's source document in `pool` (see `related_text`). Both controls are the attacks on the
    ORIGINAL model, run once for every method (control 1 on the targets, control 2 on the never-known
    paragraphs). No model is changed."""
    _check_sets(targets, never_known, retain, config)
    if not unlearned_models:
        raise UserError("no unlearned model to audit")
    n, k = len(targets), len(never_known)
    methods = _runs_of(unlearned_models, n)
    p, bs = targets.prefix_len, config.batch_size
    em_o, lp_o = score(original, targets.tokens, p, batch_size=bs)
    if bool((em_o == 0).any()):
        missed = [targets.ids[i] for i in (em_o == 0).nonzero().flatten().tolist()]
        raise UserError(f"the original model does not recite targets {missed[:3]} (EM 0): nothing was there to forget")
    if "relearn_related" in config.attacks and related is None and pool is None:
        raise UserError("the relearn_related attack needs related text (--related FILE) or a paragraph pool")
    both = _join(targets, never_known)
    per_target = any(len(runs) > 1 for runs in methods.values())
    groups = tuple(torch.tensor([i]) for i in range(n)) if per_target else (torch.arange(n),)
    variants = positions = spans = None
    if "perturb" in config.attacks:
        variants, positions = single_token_edits(both, config.perturb_k, original.cfg.d_vocab, config.seed)
    filler = (retain if retain is not None and len(retain) else never_known).tokens.cpu()
    if "shift" in config.attacks:
        if not config.shifts or min(config.shifts) < 1:
            raise UserError(f"shifts must be positive numbers of tokens, got {config.shifts}: change --shifts")
        spans = filler_spans(filler, n + k, max(config.shifts), config.seed)
    sets = _Sets(targets, never_known, both, retain, related, pool, groups, variants, positions, spans, config)
    every = torch.arange(n + k)

    def who(run: Tensor) -> str:
        if bool((run >= n).all()):
            return "never_known"
        if bool((run >= n).any()):
            return "targets and never_known"
        return "targets" if len(run) == n else ",".join(targets.ids[int(i)] for i in run)

    quant_err: dict = {}
    moved: dict = {}
    choices: dict = {}
    control = [_attack_rows(original, original, [], a, every, sets, who) for a in config.attacks]
    for a, (_, _, chosen, info) in zip(config.attacks, control):
        if "relative_error" in info:
            quant_err.setdefault("original", {})[a] = info["relative_error"]
        if "weights_moved" in info:
            moved.setdefault("original", {})[a] = info["weights_moved"]
        if chosen is not None:
            choices.setdefault("original", {})[a] = chosen[:n]
    em_u, lp_u, em_att, lp_att = [], [], [], []
    for name, runs in methods.items():
        em = torch.zeros(n, dtype=torch.long)
        logp = torch.zeros(n)
        att_em = torch.zeros(len(config.attacks), n, dtype=torch.long)
        att_lp = torch.zeros(len(config.attacks), n)
        errors: dict = {}
        for g, rows in enumerate(groups):
            model, hooks = runs[g if len(runs) > 1 else 0]
            em[rows], logp[rows] = score(model, targets.tokens[rows], p, hooks=hooks, batch_size=bs)
            for j, a in enumerate(config.attacks):
                e, lp, chosen, info = _attack_rows(original, model, hooks, a, rows, sets, who)
                att_em[j, rows], att_lp[j, rows] = e, lp
                if chosen is not None:
                    picked = choices.setdefault(name, {}).setdefault(a, [None] * n)
                    for i, c in zip(rows.tolist(), chosen):
                        picked[i] = c
                if "relative_error" in info:
                    errors.setdefault(a, []).append(info["relative_error"])
                if "weights_moved" in info:
                    moved.setdefault(name, {}).setdefault(a, {}).update(info["weights_moved"])
        for a, per_run in errors.items():  # one dict per quantized model: the mean over the method's runs
            quant_err.setdefault(name, {})[a] = {t: sum(e[t] for e in per_run) / len(per_run) for t in per_run[0]}
        em_u.append(em)
        lp_u.append(logp)
        em_att.append(att_em)
        lp_att.append(att_lp)
    m = len(methods)
    nk = sets.never_known_rows
    em_nk, _ = score(original, never_known.tokens, p, batch_size=bs)
    control_em = torch.stack([c[0] for c in control])
    control_lp = torch.stack([c[1] for c in control])
    settings = {
        **asdict(config),
        "runs": "one unlearned model per target (each target attacked on its own run's model)"
        if per_target
        else "one unlearned model per method, attacked on every target",
        "never_known_control": "each attack on the ORIGINAL model, on the never-known paragraphs: computed once, "
        "shared by every method (the attacks' null: what they add to text no model here recited)",
        "quantized_tensors": "the attention and MLP weight matrices (W_Q, W_K, W_V, W_O, W_in, W_gate, W_out); "
        "embeddings, unembedding, biases and LayerNorms stay in float; a decoding-time ensemble's base only",
        "int8": "round-to-nearest, symmetric, one scale per output channel",
        "int4": f"round-to-nearest, symmetric, one scale per {config.group_size} input channels of an output channel",
        "relearn": f"{config.relearn_steps} Adam steps at lr {config.relearn_lr:g}, all weights, next-token loss",
        "retain": list(retain.ids) if retain is not None else None,
        "related_targets": _related_ids(sets, groups, "relearn_related" in config.attacks),
        "related_never_known": list(sets.relearning_text("relearn_related", nk).ids)
        if "relearn_related" in config.attacks
        else None,
        "shift_filler": "retain paragraphs" if retain is not None and len(retain) else "never-known paragraphs",
    }
    return AuditResult(
        ids=targets.ids,
        never_known_ids=never_known.ids,
        methods=tuple(methods),
        attacks=tuple(config.attacks),
        continuation_len=targets.continuation_len,
        em_original=em_o,
        log10p_original=lp_o,
        em_unlearned=torch.stack(em_u),
        log10p_unlearned=torch.stack(lp_u),
        em_attacked=torch.stack(em_att),
        log10p_attacked=torch.stack(lp_att),
        em_original_attacked=control_em[:, :n],
        log10p_original_attacked=control_lp[:, :n],
        em_never_known_unlearned=em_nk.expand(m, k).clone(),
        em_never_known_attacked=control_em[:, n:].expand(m, -1, -1).clone(),
        log10p_never_known_attacked=control_lp[:, n:].expand(m, -1, -1).clone(),
        choices=choices,
        quantization_error=quant_err,
        weights_moved=moved,
        settings=settings,
    )


def _related_ids(sets: _Sets, groups: Sequence[Tensor], wanted: bool) -> list[str] | None:
    if not wanted:
        return None
    ids: dict[str, None] = {}
    for rows in groups:
        ids.update(dict.fromkeys(sets.relearning_text("relearn_related", rows).ids))
    return list(ids)
