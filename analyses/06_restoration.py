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
# # 6. Restoration: is the unlearned text gone, or only harder to reach? (paper B)
#
# After unlearning, put parts of the ORIGINAL model back into the unlearned one, for a window of
# layers around each layer (paper B: 5 of 32 layers; here the same share of the depth, odd, so 1
# layer on the 6-layer testbed): the MLP coefficients (activations after the nonlinearity), the
# attention outputs, both, or the MLP value vectors (W_out rows). Knowledge Recovery Score per
# paragraph, then averaged: KRS = 1 - loss(restored) / loss(unlearned), loss = mean squared logit
# difference from the original. Paper B: value vectors recover almost nothing; the final layers'
# coefficients (and middle-late attention) carry the forgetting -- unlearning changes retrieval,
# not storage. Each target is unlearned in its own run (the target + its 10 retain NMEM
# paragraphs), the run `calibrate` calibrated (every target EM <= 10), restored alone; the
# per-paragraph scores are then pooled (`RestorationResult.concat`).

# %%
from _common import QUICK, save, testbed_subset

from interp import (
    RestorationResult,
    UnlearnConfig,
    calibrate,
    choose_sets,
    load_model,
    memorization_split,
    restoration,
    testbed_paragraphs,
    unlearn,
)
from interp.views import unlearning as views

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs(splits=("planted", "once"))
if QUICK:
    paragraphs = testbed_subset(paragraphs, n_once=40)
split = memorization_split(model, paragraphs, n_examples=0)
mem, nmem = choose_sets(split, paragraphs, n_mem=1 if QUICK else 2, n_nmem=10 * (1 if QUICK else 2), seed=0)

# %%
figures, numbers = {}, {}
for select in ("all",) if QUICK else ("all", "topk"):
    config = UnlearnConfig(method="unlearn", select=select, steps=5 if QUICK else 10)
    search = calibrate(model, mem, nmem, config)
    print(f"{config.label}: {search.describe()}")
    calibrated = UnlearnConfig(method="unlearn", select=select, lr=search.lr, steps=config.steps)
    per_target = []
    for i in range(len(mem)):  # the run the calibration measured: target i with retain paragraphs 10i .. 10i+9
        edited = unlearn(model, mem.select([i]), nmem.select(range(10 * i, 10 * i + 10)), calibrated)
        per_target.append(restoration(model, edited.model, mem.select([i])))
    result = RestorationResult.concat(per_target)
    before, after = float(result.em_original.float().mean()), float(result.em_edited.float().mean())
    numbers[select] = {
        "lr": search.lr,
        "calibration": search.to_json(),
        "runs": "per target, at the calibrated rate",
        "windows": [list(w) for w in result.windows],
        "em_original": before,
        "em_unlearned": after,
        "forgotten": after < before,
        "experiments": list(result.experiments),
        "krs": result.krs,
        "em_recovered": result.em_recovered,
    }
    print(f"{select}: EM {before:.1f} -> {after:.1f}")
    if after >= before:  # nothing forgotten: every recovered fraction is 0 / 0
        print("  nothing was forgotten: no restoration to measure")
        continue
    figures[f"restoration_{select}"] = views.figure_restoration(result)
    for name, row in zip(result.experiments, result.krs.tolist()):
        print(f"  KRS {name:>12}: " + " ".join(f"{v:+.2f}" for v in row))
next(iter(figures.values()), "nothing was forgotten: no restoration figure")

# %%
save(figures, numbers, "06_restoration")
