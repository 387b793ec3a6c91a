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
# # 4. Prefix perturbation (paper A, section 4)
#
# Replace one prefix token at a time with a random token, decode greedily, and count how much of
# the model's own unperturbed continuation survives (EM). The paper: mean EM drop per perturbed
# token 12.19 for MEM vs 33.12 for NMEM -- memorized paragraphs are harder to knock off course,
# though a few distinctive tokens can derail them. The most damaging perturbation of each MEM
# paragraph gives the editing targets of the unlearning notebook (Eq. 4).

# %%
import torch
from _common import QUICK, save, testbed_subset

from interp import Paragraphs, choose_sets, load_model, memorization_split, prefix_perturbation, testbed_paragraphs
from interp.views import heads as head_views
from interp.views import memorization as views

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs(splits=("planted", "once"))
if QUICK:
    paragraphs = testbed_subset(paragraphs, n_once=40)
split = memorization_split(model, paragraphs, n_examples=0)
n = 2 if QUICK else 16
mem, nmem = choose_sets(split, paragraphs, n_mem=n, n_nmem=n, seed=0)
both = Paragraphs(torch.cat([mem.tokens, nmem.tokens]), mem.prefix_len, mem.ids + nmem.ids)
result = prefix_perturbation(model, both, samples_per_position=1 if QUICK else 2, seed=0)
on_mem, on_nmem = result.select(torch.arange(len(mem))), result.select(torch.arange(len(mem), len(both)))
print(
    f"mean EM drop per perturbed token: MEM {float(on_mem.mean_em_drop.mean()):.2f}, "
    f"NMEM {float(on_nmem.mean_em_drop.mean()):.2f} (paper: 12.19 vs 33.12)"
)

# %%
fig = views.figure_perturbation_by_position(on_mem, on_nmem)
fig

# %%
head_views.perturbation_view(result, [model.to_str_tokens(row) for row in both.prefixes], max_paragraphs=4)

# %%
save(
    {"perturbation_em_drop_by_position": fig},
    {
        "n_mem": len(mem),
        "n_nmem": len(nmem),
        "samples_per_position": int(result.em.shape[-1]),
        "mean_em_drop_mem": float(on_mem.mean_em_drop.mean()),
        "mean_em_drop_nmem": float(on_nmem.mean_em_drop.mean()),
        "mem_targets_changed": int(on_mem.target_changed.sum()),
    },
    "04_perturbation",
)
