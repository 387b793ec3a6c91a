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
# 2024, notebook 6). Each method here is calibrated to matched forgetting (mean target EM <= 10), then
# attacked: int8 / int4 quantization, relearning (prefix, retain set, other paragraphs of the target's
# source file), the best restored window, the best of K single-token prefix edits, a few tokens of left
# context. Every attack also runs on the original model (does it break recitation by itself?) and on
# held-out paragraphs the model never saw (does it teach text? its mean gain is subtracted). The
# residual score: max over attacks of clip((EM_attacked - EM_unlearned - null gain) / (EM_original - EM_unlearned), 0, 1).
# Decoding-time unlearning (the testbed's companion, its rate calibrated) is attacked through its frozen base.

# %%
from dataclasses import replace

from _common import QUICK, save, testbed_subset

from interp import (
    ReftConfig,
    UnlearnConfig,
    calibrate,
    choose_sets,
    heldout_indices,
    load_model,
    memorization_split,
    testbed_paragraphs,
)
from interp.audit import AuditConfig, audit
from interp.report.steps.audit import proxy_row
from interp.views.audit import figure_audit

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs()
if QUICK:
    paragraphs = testbed_subset(paragraphs, n_once=40, n_heldout=40)
split = memorization_split(model, paragraphs, n_examples=0)
mem, nmem = choose_sets(split, paragraphs, n_mem=1, n_nmem=10, seed=0)  # one target, as `interp unlearn --save`
held = heldout_indices(split)
never_known = paragraphs.select(held[split.scores.em[held] <= split.nmem_max][: 8 if QUICK else 32])
print(f"target {mem.ids[0]}; {len(never_known)} never-known (held-out, not recited) paragraphs")

# %%
steps = 5 if QUICK else 10
configs = [UnlearnConfig(method="unlearn", select="all", steps=steps)]
if not QUICK:
    configs += [
        UnlearnConfig(method="unlearn", select="topk", steps=steps),
        UnlearnConfig(method="unlearn", select="random", steps=steps),
        UnlearnConfig(method="ga", select="all", steps=steps, weight_decay=0.0),
        ReftConfig(method="unlearn"),
        proxy_row(model, "auto"),  # decoding-time: the companion's rate calibrated, the base frozen
    ]
unlearned, calibrations = {}, {}
for config in configs:
    search = calibrate(model, mem, nmem, config)
    print(f"{config.label}: {search.describe()}")
    calibrations[config.label] = search.to_json()
    if not search.reached:  # never reaches the level: shown in the calibration, not audited
        continue
    run = replace(config, lr=search.lr).run(model, mem, nmem)
    # LoReFT changes no weight (the original with its hooks); decoding-time is the base + the small models' difference
    unlearned[config.label] = (run.model, run.hooks()) if run.hooks() else run.model

# %%
options = AuditConfig(perturb_k=8, relearn_steps=5) if QUICK else AuditConfig()
result = audit(model, unlearned, mem, never_known, retain=nmem, pool=paragraphs, config=options)
print(result.format())
figures = {"audit_recovery": figure_audit(result)}
figures["audit_recovery"]

# %%
numbers = {
    "target": mem.ids[0],
    "calibrations": calibrations,
    "median_residual": dict(zip(result.methods, result.median_residual.tolist())),
    "tables": {m: result.table(m) for m in result.methods},
    "residual_attack": dict(zip(result.methods, result.residual_attack)),
    "settings": result.settings,
    "published": {"int4 quantization, Zhang et al. 2025": "21% -> 83%", "relearning, Deeb & Roger 2024": "~88%"},
}
save(figures, numbers, "07_audit")
