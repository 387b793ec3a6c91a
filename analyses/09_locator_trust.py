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
# # 9. How far can the locator be trusted on this model? (`interp validate-locator`)
#
# On a copy of the model, a few paragraphs the model cannot recite are forced through ONE chosen head
# (only that head's W_Q / W_K / W_V / W_O slices train, with a KL term on other text). The locator then
# runs on the copy, and each method is scored by its rank of the head it should find (1 = first).
# The model itself is never changed. Full settings: one head in a lower, a middle and the last layer,
# every default method (about 6 minutes on 2 CPU cores); quick mode: one layer-0 head, three methods and the
# plain injection recipe only (no escalation when a paragraph is left unrecited).

# %%
from _common import QUICK, save

from interp import load_model, testbed_paragraphs, testbed_unigram_counts, validate_locator

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs()
options = (
    dict(heads=[(0, 4)], n_inject=2, methods=("attribution", "patching", "ablation"), max_steps=80, escalate=False)
    if QUICK
    else {}
)
trust = validate_locator(model, paragraphs, unigram_counts=testbed_unigram_counts(), **options)
for h in trust.heads:
    status = "evidence" if h.evidence else "not evidence (the injection failed)"
    print(f"L{h.layer}H{h.head}: {h.injection.n_recited} of {len(h.injection.ids)} recited, {status}")
trust  # in a notebook: the headline numbers as a table

# %% [markdown]
# Each method's rank of each injected head (blank: a failed injection, or a head outside the screen).

# %%
fig_ranks = trust.figure()
fig_ranks

# %%
save(
    {"locator_trust_ranks": fig_ranks},
    {
        "heads": [
            {"layer": h.layer, "head": h.head, "recited": h.injection.n_recited, "evidence": h.evidence, "ranks": h.ranks}
            for h in trust.heads
        ],
        "mean_rank": trust.mean_rank(),
        "combined_mean_rank": trust.combined_mean_rank(),
        "seconds": trust.seconds,
    },
    "09_locator_trust",
)
