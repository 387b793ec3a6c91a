# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Is it really gone? The forgetting audit
#
# Unlearned text often comes back under cheap attacks. Published numbers to beat: 4-bit quantization
# brought forgotten knowledge from 21% back to 83% (Zhang et al., ICLR 2025); relearning on a small part
# of the forget set recovers ~88% of the pre-unlearning accuracy (Deeb & Roger 2024); relearning on
# loosely related text brings verbatim text back (Hu et al. 2024); restoring activations (Hong et al.
# 2024, notebook 6). Targets: the 24 planted paragraphs that the testbed's retrained reference leaves out
# of its training (planted-128x-48..63, planted-256x-32..39), all recited in full by the testbed. Each
# method unlearns all of them in one run, its rate raised until every target's EM is at most 10, then is
# attacked where its forgetting lives (the weights; LoReFT's intervention and the residual stream it edits;
# a decoding-time ensemble's base and both small models): int8, int4 in groups of 32 and 128, int4 with a
# zero point, NF4, relearning (prefix, retain set, other paragraphs of the target's source file), the best
# restored window, the best of K single-token prefix edits, a few tokens of left context. Controls: every
# attack on the original (does it break recitation?), on never-known paragraphs of the same unlearned model
# (paired 1:1 with the targets, same relearning dose: the attack's null, and the residual's null
# distribution), and restoration's donor (the original taught never-known text, restored into itself).
# Recovery and residual on EM and on log10 p; medians with bootstrap intervals over the targets. The
# retrained reference (when built) is scored the same way: a real forgetting looks like it.

# %%
from dataclasses import replace

from _common import QUICK, save, testbed_subset

from interp import (
    ReftConfig,
    UnlearnConfig,
    heldout_indices,
    load_model,
    memorization_split,
    testbed_paragraphs,
)
from interp.audit import AuditConfig, audit
from interp.audit.audit import REFERENCE
from interp.models import TESTBED_REFERENCE_DIR
from interp.report.steps.audit import proxy_row
from interp.views.audit import figure_audit

LEFT_OUT = [f"planted-128x-{i}" for i in range(48, 64)] + [f"planted-256x-{i}" for i in range(32, 40)]
LEVEL = 10  # every target's EM at most this after unlearning (the NMEM threshold)

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs()
if QUICK:
    paragraphs = testbed_subset(paragraphs, n_once=40, n_heldout=40)
split = memorization_split(model, paragraphs, n_examples=0)
where = {pid: i for i, pid in enumerate(paragraphs.ids)}
targets = paragraphs.select([where[t] for t in LEFT_OUT[: 2 if QUICK else None]])
recited = split.scores.em[[where[t] for t in targets.ids]]
assert bool((recited == targets.continuation_len).all()), "every target must be recited in full"
held = heldout_indices(split)
never_known = paragraphs.select(held[split.scores.em[held] <= split.nmem_max][: 2 if QUICK else len(targets)])
once = [i for i, s in enumerate(paragraphs.meta["split"]) if s == "once"]
retain = paragraphs.select([i for i in once if int(split.scores.em[i]) <= split.nmem_max][:10])
print(f"{len(targets)} targets (all at EM {targets.continuation_len}); {len(never_known)} never-known paragraphs")

# %%
steps = 5 if QUICK else 10
configs = [UnlearnConfig(method="unlearn", select="all", steps=steps, weight_decay=0.0)]
if not QUICK:
    configs += [
        UnlearnConfig(method="unlearn", select="topk", steps=steps, weight_decay=0.0),
        UnlearnConfig(method="unlearn", select="random", steps=steps, weight_decay=0.0),
        UnlearnConfig(method="ga", select="all", steps=steps, weight_decay=0.0),
        ReftConfig(method="unlearn"),
        proxy_row(model, "auto"),  # decoding-time: the companion unlearned, the base frozen
    ]
unlearned, calibrations = {}, {}
for config in configs:
    # one run forgets every target: the rate is raised by factors of 3 from 1e-4 until every EM <= LEVEL
    tried = []
    for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2):
        run = replace(config, lr=lr).run(model, targets, retain)
        em = run.after.target_em
        tried.append({"lr": lr, "max_em": int(em.max()), "mean_em": float(em.float().mean())})
        if int(em.max()) <= LEVEL:
            break
    reached = tried[-1]["max_em"] <= LEVEL
    calibrations[config.label] = {"criterion": "every target", "level": LEVEL, "tried": tried, "reached": reached}
    print(f"{config.label}: " + ", ".join(f"lr {t['lr']:g} -> max EM {t['max_em']}" for t in tried))
    if reached:  # never reaching the level: shown in the calibration, not audited
        unlearned[config.label] = (run.model, run.hooks()) if run.hooks() else run.model
if (TESTBED_REFERENCE_DIR / "config.json").exists():  # the testbed retrained without the 24 targets
    unlearned[REFERENCE] = load_model("testbed-reference", device="cpu")
else:
    print("no retrained reference built (`interp testbed build --reference`): its row is left out")

# %%
if QUICK:
    options = AuditConfig(perturb_k=4, relearn_steps=2, related_limit=2, donor_paragraphs=1, donor_steps=5)
else:
    options = AuditConfig()
result = audit(model, unlearned, targets, never_known, retain=retain, pool=paragraphs, config=options)
print(result.format())
figures = {"audit_recovery": figure_audit(result)}
figures["audit_recovery"]

# %%
medians = {m: result.median(i) for i, m in enumerate(result.methods)}
medians_log10p = {m: result.median(i, "log10p") for i, m in enumerate(result.methods)}
numbers = {
    "target": f"{len(targets)} left-out planted paragraphs (planted-128x-48..63, planted-256x-32..39)",
    "targets": list(targets.ids),
    "never_known": list(never_known.ids),
    "calibrations": calibrations,
    "median_residual": {m: v[0] for m, v in medians.items()},
    "median_residual_ci95": {m: v[1:3] for m, v in medians.items()},
    "median_residual_log10p": {m: v[0] for m, v in medians_log10p.items()},
    "median_residual_log10p_ci95": {m: v[1:3] for m, v in medians_log10p.items()},
    "n_targets": {m: v[3] for m, v in medians.items()},
    "not_forgotten": {m: result.to_json()["methods"][m]["not_forgotten"] for m in result.methods},
    "null_q95": dict(zip(result.methods, result.null_q95.tolist())),
    "null_q95_log10p": dict(zip(result.methods, result.null_q95_log10p.tolist())),
    "residual_p": dict(zip(result.methods, result.residual_p.tolist())),
    "not_applicable": result.not_applicable,
    "restore_null": result.restore_null,
    "restoration_is_diagnostic": {m: result.restoration_is_diagnostic(i) for i, m in enumerate(result.methods)},
    "breaks_original": dict(zip(result.attacks, result.breaks_original.tolist())),
    "summaries": [result.summary(i) for i in range(len(result.methods))],
    "tables": {m: result.table(m) for m in result.methods},
    "residual_attack": dict(zip(result.methods, result.residual_attack)),
    "settings": result.settings,
    "published": {"int4 quantization, Zhang et al. 2025": "21% -> 83%", "relearning, Deeb & Roger 2024": "~88%"},
}
save(figures, numbers, "07_audit")
