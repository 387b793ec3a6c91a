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
# # 2. Gradient maps: where does a memorized paragraph's gradient land? (paper A, sections 5.1-5.2)
#
# Backpropagate the continuation NLL for a batch of MEM and a batch of NMEM paragraphs; score each
# weight matrix by its largest |gradient|. The paper (GPT-Neo 125M) found NMEM gradients larger
# overall, but MEM putting relatively more gradient into LOWER layers, with layer 1 head 2's W_V
# the most salient component. The max of a batch-mean gradient shrinks as the batch grows, so MEM
# and NMEM are compared at EQUAL set sizes (the larger set is cut into chunks of the smaller one's
# size and their maps averaged); layer shares are shares of the squared gradient.

# %%
from _common import QUICK, save, testbed_subset

from interp import (
    choose_sets,
    compare_norms,
    gradient_map,
    load_model,
    memorization_split,
    per_paragraph_norms,
    testbed_paragraphs,
)
from interp.views import gradients as views

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs()
if QUICK:
    paragraphs = testbed_subset(paragraphs, n_once=40)
split = memorization_split(model, paragraphs, n_examples=0)
mem, nmem = choose_sets(split, paragraphs, n_mem=4 if QUICK else 32, n_nmem=8 if QUICK else 64, seed=0)
print(f"{len(mem)} MEM and {len(nmem)} NMEM paragraphs")

# %%
nll_map = gradient_map(model, mem, nmem, objective="nll", reduce="max")  # MEM and NMEM at equal set sizes
low = nll_map.lower_half_share()
print(f"batch map, share of the squared gradient norm in the lower half: MEM {low['mem']:.3f}, NMEM {low['nmem']:.3f}")
print("most salient cells:", nll_map.most_salient())
views.figure_component_map(nll_map)

# %%
views.figure_head_map(nll_map, relative=True)

# %% [markdown]
# The contrastive objective (Eq. 3) used for unlearning. At the original weights its KL term has
# zero gradient, so its map is the MEM NLL map scaled by -0.1.

# %%
co_map = gradient_map(model, mem, nmem, objective="contrastive", reduce="max")
views.figure_component_map(co_map)

# %% [markdown]
# Per-paragraph gradient norms (batched, no per-paragraph gradients) show the spread behind the
# batch numbers; a Mann-Whitney U test per layer says whether MEM and NMEM differ.

# %%
norms_mem, norms_nmem = per_paragraph_norms(model, mem), per_paragraph_norms(model, nmem)
comparison = compare_norms(norms_mem, norms_nmem)
print(f"lower-half share per paragraph: {comparison.verdict()}")
fig_pp = views.figure_per_paragraph(norms_mem, norms_nmem, comparison, share=True)
fig_pp

# %%
save(
    {
        "gradient_components": views.figure_component_map(nll_map),
        "gradient_heads": views.figure_head_map(nll_map),
        "gradient_heads_relative": views.figure_head_map(nll_map, relative=True),
        "gradient_layer_share": views.figure_layer_share(nll_map),
        "gradient_per_paragraph_share": fig_pp,
    },
    {
        "n_mem": len(mem),
        "n_nmem": len(nmem),
        "lower_half_share": low,
        "most_salient": nll_map.most_salient(),
        "layers": nll_map.to_json()["layers"],
        "per_paragraph": comparison.to_json(),
    },
    "02_gradients",
)
