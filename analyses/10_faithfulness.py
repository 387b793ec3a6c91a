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
# # 10. Is the audit faithful? Systems whose answer is known
#
# The audit (notebook 7) says whether unlearned text is gone or only hidden. Its verdict is worth what its
# scores separate: systems that still hold a text from systems that never held it. Here the answer is known
# by construction. The testbed's reference model (`load_model("testbed-reference")`) is the testbed retrained
# with the same recipe, seed and steps, with 24 of its planted paragraphs left out of training: it never saw
# them. Two systems still hold them on purpose: the testbed behind a hook that blanks only the exact prompt,
# and a gradient-ascent unlearning kept inside the int4 rounding bins (int4 rounding returns the original's
# weights). Every system on never-known paragraphs is absent too. The AUC (present vs absent items) per attack
# and for the residual says how well each score separates them (0.5: not at all).

# %%
from _common import QUICK, save

from interp import load_model, testbed_paragraphs
from interp.audit import AuditConfig
from interp.audit.faithfulness import faithfulness
from interp.metrics import score_paragraphs
from interp.testbed.build import REFERENCE_LEFT_OUT
from interp.views.faithfulness import figure_faithfulness

model = load_model("testbed", device="cpu")
reference = load_model("testbed-reference", device="cpu")
paragraphs = testbed_paragraphs()
ids = list(paragraphs.ids)
targets = paragraphs.select([ids.index(i) for i in REFERENCE_LEFT_OUT[: 4 if QUICK else None]])
split = paragraphs.meta["split"]
heldout = paragraphs.select([i for i, s in enumerate(split) if s == "heldout"][:200])
never_known = heldout.select((score_paragraphs(model, heldout).em <= 10).nonzero().flatten()[: len(targets)])
once = paragraphs.select([i for i, s in enumerate(split) if s == "once"][:10])
print(
    f"{len(targets)} targets: the testbed recites them (EM {score_paragraphs(model, targets).em.float().mean():.1f}), "
    f"the reference does not (EM {score_paragraphs(reference, targets).em.float().mean():.1f}); "
    f"{len(never_known)} never-known paragraphs"
)

# %%
config = AuditConfig(
    attacks=("int8", "int4", "int4_g128", "int4_asym", "nf4", "relearn_prefix", "relearn_retain", "perturb", "shift")
    if not QUICK
    else ("int4", "relearn_prefix", "shift"),
    perturb_k=8 if QUICK else 32,
)
result = faithfulness(model, reference, targets, never_known, once, config=config)
print(result.format())

# %%
save({"faithfulness_auc": figure_faithfulness(result)}, result.to_json(), "10_faithfulness")
