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
# # 1. Which paragraphs does the model recite? (paper A, section 3)
#
# A paragraph is a 50-token prefix and a 50-token continuation. EM counts the continuation
# tokens that greedy decoding reproduces before the first mistake; one teacher-forced pass gives
# it for every paragraph. MEM = EM 50, NMEM = EM <= 10. On the testbed we also know how often
# each paragraph was seen in training, so memorization can be plotted against repetition.

# %%
from _common import QUICK, save, testbed_subset

from interp import load_model, memorization_split, testbed_paragraphs
from interp.views import memorization as views

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs()
if QUICK:
    paragraphs = testbed_subset(paragraphs, n_once=40, n_heldout=20)
split = memorization_split(model, paragraphs, n_examples=1)
print(f"{len(paragraphs)} paragraphs: {len(split.mem_idx)} MEM, {len(split.nmem_idx)} NMEM")

# %% [markdown]
# The EM distribution (log scale): almost every paragraph is either recited in full or not at all.

# %%
fig_hist = views.figure_em_histogram(split)
fig_hist

# %% [markdown]
# Memorization against the number of copies in the training data.

# %%
fig_count = views.figure_memorization_by_count(split)
for row in split.by_count():
    print(
        f"{row['count']:>4} copies: {row['n']:>5} paragraphs, {row['fraction_mem']:.2f} MEM, mean EM {row['mean_em']:.1f}"
    )
fig_count

# %%
fig_scatter = views.figure_nll_vs_em(split)
save(
    {"em_histogram": fig_hist, "memorization_by_count": fig_count, "nll_vs_em": fig_scatter},
    {
        "n_paragraphs": len(paragraphs),
        "n_mem": len(split.mem_idx),
        "n_nmem": len(split.nmem_idx),
        "by_count": split.by_count(),
    },
    "01_memorization",
)
