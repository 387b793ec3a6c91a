"""The report's audit step, "Is it really gone?": the forgetting audit (interp.audit) of the unlearning
table's runs at matched forgetting, and the decoding-time row that the unlearning step adds.

The unlearning step hands over the very models it tabulated (one per method and target, kept in memory
only: `Transient`); when that step came from the cache, the audited runs are re-run at the table's
calibrated rates (training is seeded and deterministic, so these are the same runs). Audited: every
row that reached the level, except the 'edit' rows (they teach a new continuation, another question);
rows that never reached it are listed, not attacked. The decay-only control row is attacked when its weight
decay is above 0 (the paper's setting); at 0 it is the original model, whose attacks are control 1. Budgets are fixed and small (`REPORT_AUDIT`) and
stated in the section. Never-known paragraphs: `never_known` (a file), else the 'heldout' split, else
paragraphs the model does not recite (with the caveat in the section), so a user's model is audited too;
`reference_retrained` adds a model retrained without the targets as a row.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from interp.audit import AuditConfig, audit
from interp.audit.audit import REFERENCE
from interp.backend import Model
from interp.data import Paragraphs, load_paragraphs
from interp.errors import UserError
from interp.memorization import heldout_indices
from interp.metrics import score_paragraphs
from interp.models import load_model
from interp.report.steps.memorization import set_step
from interp.report.types import Bundle, Skipped, StepInputs
from interp.unlearning.proxy import ProxyConfig, ProxyMethod, small_model_spec
from interp.views.sections import audit_section

REPORT_AUDIT = AuditConfig(related_limit=4, perturb_k=16)
RELEARN_RETAIN = 4  # paragraphs of the first run's retain set that relearn_retain trains on


class AuditedRows:
    """The unlearning table's rows the audit attacks (configs with `run`; a decoding-time row without its
    small model, reloaded when needed), shown in results.json by their settings."""

    def __init__(self, configs: list):
        self.configs = [replace(c, small_model=None) if isinstance(c, ProxyMethod) else c for c in configs]

    def to_json(self) -> list[dict]:
        return [c.to_dict() for c in self.configs]


def proxy_row(model: Model, option: str | None) -> ProxyMethod | None:
    """The decoding-time row of the unlearning table (its small model loaded), or None."""
    spec = small_model_spec(model, option)
    if spec is None:
        return None
    small = load_model(spec, device=str(model.cfg.device), dtype=model.cfg.dtype)
    return ProxyMethod(small, ProxyConfig(small=spec))


def audited(config: Any, calibration: Any | None) -> bool:
    """Rows the audit attacks: not an 'edit' row, and at matched forgetting where the rate was calibrated."""
    return getattr(config, "method", None) != "edit" and (calibration is None or calibration.reached)


def keep_runs(configs: list) -> tuple[dict[str, list], Any]:
    """A sink for `unlearning_table(on_run=...)` keeping (model, hooks) of the audited rows, by label, and of the
    decay-only control row the table adds (`audited_decay` decides whether it is attacked)."""
    labels = {c.label for c in configs}
    runs: dict[str, list] = {}

    def on_run(result: Any) -> None:
        if result.config.label in labels or getattr(result.config, "method", None) == "decay":
            runs.setdefault(result.config.label, []).append((result.model, result.hooks()))

    return runs, on_run


def audit_step(inputs: StepInputs) -> Bundle | Skipped:
    o, model = inputs.options, inputs.model
    if not o.audit:
        return Skipped("turned off (audit=False; --quick turns it off); `interp audit` runs it on saved models")
    unlearning = inputs.results.get("unlearning")
    if not isinstance(unlearning, Bundle):
        reason = unlearning.reason if isinstance(unlearning, Skipped) else "the unlearning step did not run"
        return Skipped(f"needs the unlearning table's runs: {reason}")
    table, rows, runs = unlearning["table"], unlearning["audited"].configs, unlearning["runs"].value
    split = inputs.results["memorization"]
    by_id = {pid: i for i, pid in enumerate(inputs.paragraphs.ids)}
    targets = inputs.paragraphs.select([by_id[t] for t in table.settings["targets"]])
    retain = inputs.paragraphs.select([by_id[t] for t in unlearning["retain"]])
    k = table.settings["retain_per_run"]
    never_known, source = never_known_paragraphs(inputs, split, set(targets.ids) | set(retain.ids))
    if runs is None:  # the unlearning step came from the cache: the same seeded runs again
        runs = {}
        for config in rows:
            if isinstance(config, ProxyMethod) and config.small_model is None:
                config = replace(proxy_row(model, o.proxy), lr=config.lr)
            runs[config.label] = []
            for i in range(len(targets)):
                result = config.run(model, targets.select([i]), retain.select(range(i * k, (i + 1) * k)))
                runs[config.label].append((result.model, result.hooks()))
    complete = {label: r for label, r in runs.items() if len(r) == len(targets)}
    if not complete:
        return Skipped("no unlearning row reached matched forgetting without a diverged run: nothing to audit")
    attacks = REPORT_AUDIT.attacks if o.relearn_steps else tuple(a for a in REPORT_AUDIT.attacks if "relearn" not in a)
    if "source" not in inputs.paragraphs.meta:  # related text is the other paragraphs of a target's source file
        attacks = tuple(a for a in attacks if a != "relearn_related")
    config = replace(
        REPORT_AUDIT,
        attacks=attacks,
        relearn_steps=o.relearn_steps or REPORT_AUDIT.relearn_steps,
        seed=o.seed,
        batch_size=o.batch_size,
    )
    if o.reference_retrained:
        reference = load_model(o.reference_retrained, device=str(model.cfg.device), dtype=model.cfg.dtype)
        complete = {**complete, REFERENCE: reference}
    result = audit(
        model,
        complete,
        targets,
        never_known,
        retain=retain.select(range(min(RELEARN_RETAIN, len(retain)))),
        pool=inputs.paragraphs,
        config=config,
    )
    calibrations = list(table.calibrations or ())
    calibrations += [None] * (len(table.labels) - len(calibrations))  # the decay-only row has no calibration
    not_audited = [
        {"label": lab, "why": _why_not(config, cal)}
        for lab, config, cal in zip(table.labels, table.configs, calibrations)
        if lab not in complete
    ]
    return Bundle({"audit": result, "not_audited": not_audited, "level": _level(table), "never_known_source": source})


def never_known_paragraphs(inputs: StepInputs, split: Any, exclude: set[str]) -> tuple[Paragraphs, str | None]:
    """The audit's never-known paragraphs, at most `audit_never_known`, none of them recited (EM <= NMEM) and
    none in `exclude`: from the `never_known` file, else the paragraphs' 'heldout' split, else (a user's file
    rarely has a split) paragraphs of the set the model does not recite, which it may have trained on. With
    the caveat the section states (None for the held-out split, whose text the model never saw)."""
    o, model, paragraphs = inputs.options, inputs.model, inputs.paragraphs
    if o.never_known:
        loaded = load_paragraphs(
            Path(o.never_known),
            tokenizer=model.tokenizer,
            prefix_len=paragraphs.prefix_len,
            continuation_len=paragraphs.continuation_len,
            vocab_size=model.cfg.d_vocab,
        )
        loaded = loaded.select([i for i, pid in enumerate(loaded.ids) if pid not in exclude])
        em = score_paragraphs(model, loaded, batch_size=o.batch_size).em
        kept = loaded.select((em <= split.nmem_max).nonzero().flatten()[: o.audit_never_known])
        if len(kept) == 0:
            raise UserError(f"no paragraph of {o.never_known} is free of recitation: change --never-known")
        return (
            kept,
            f"{len(kept)} paragraphs of {o.never_known} that the model does not recite (EM <= {split.nmem_max})",
        )
    free = [int(i) for i in (split.scores.em <= split.nmem_max).nonzero().flatten() if paragraphs.ids[i] not in exclude]
    held = set(heldout_indices(split).tolist())
    if held:
        return paragraphs.select([i for i in free if i in held][: o.audit_never_known]), None
    chosen = free[: o.audit_never_known]
    return paragraphs.select(chosen), (
        f"the paragraphs have no 'heldout' split, so the never-known control uses {len(chosen)} of them that the "
        f"model does not recite (EM <= {split.nmem_max}); it may have trained on them, in which case an attack "
        "can bring them back too, which raises the attacks' null and makes the residual conservative (pass "
        "--never-known FILE of text it never saw)"
    )


def audited_decay(configs: list, table: Any) -> Any | None:
    """The decay-only control row as a config to attack (the table's all-weights row it copies, at its rate, with
    no loss), or None: no such row, or a weight decay of 0, under which it is the original model itself and
    control 1 (every attack on the original) is its audit."""
    source = next((c for c in configs if c.label == table.settings.get("decay_control_of")), None)
    if source is None or not getattr(source, "weight_decay", 0):
        return None
    return replace(source, method="decay")


def _why_not(config: dict, calibration: Any | None) -> str:
    if config.get("method") == "decay":
        return (
            "the decay-only control with weight decay 0: it is the original model, and control 1 (every attack on "
            "the original) is its audit"
        )
    if config.get("method") == "edit":
        return "an 'edit' row (it teaches a new continuation: another question than forgetting)"
    if calibration is not None and not calibration.reached:
        return "never reached the level at any rate tried"
    return "a run diverged"


def _level(table: Any) -> float | None:
    return table.calibrations[0].level if table.calibrations else None


STEP = set_step(
    "audit",
    audit_step,
    audit_section,
    "audit",
    "audit_never_known",
    "never_known",
    "reference_retrained",
    "relearn_steps",
    "proxy",
    "batch_size",
    after=("unlearning",),
)
