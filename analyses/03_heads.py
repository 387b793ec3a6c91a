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
# # 3. The memorization head and rare tokens (paper A, section 6)
#
# For each head, the attention from the first continuation position (index prefix_len: it holds the
# first continuation token and predicts the second, as in the authors' notebooks) to the prefix
# tokens, against each token's corpus frequency rank inside its paragraph (0 = rarest), summarised
# by Kendall's tau. The paper found head 1.2 of GPT-Neo 125M at tau = -0.97: it attends to rare
# tokens. A head with NO preference does not score 0 (uniform attention has a tau of its own), so
# each head's tau is compared with a permutation null that keeps positions (one paragraph's
# attention paired with another paragraph's ranks): the excess tau, a one-sided p-value, and a
# family-wise p over all heads (max-statistic). The old null (ranks shuffled within each paragraph)
# is shown beside it: it calls a purely positional head "rare-token preferring" whenever rarity
# correlates with position. The most MEM-specific head is chosen on half of the paragraphs and
# tested on the other half with shuffled MEM / NMEM labels. `locate_memorization_head` puts that
# evidence beside gradients, ablation and activation patching, which the paper found to disagree.

# %%
import torch
from _common import QUICK, save, testbed_subset

from interp import (
    choose_indices,
    load_model,
    locate_memorization_head,
    memorization_split,
    rarity_ranks,
    testbed_paragraphs,
    testbed_unigram_counts,
)
from interp.locator.rare_tokens import mem_specific_head
from interp.views import heads as views

model = load_model("testbed", device="cpu")
paragraphs = testbed_paragraphs(splits=("planted", "once"))
if QUICK:
    paragraphs = testbed_subset(paragraphs, n_once=40)
split = memorization_split(model, paragraphs, n_examples=0)
n = 4 if QUICK else 16
mem_idx, nmem_idx = choose_indices(split, n_mem=16 * n, n_nmem=16 * n, seed=0)
subset = paragraphs.select(torch.cat([mem_idx, nmem_idx]).sort().values)
counts = testbed_unigram_counts()
ranking = locate_memorization_head(model, subset, unigram_counts=counts, set_size=n, seed=0)
print(f"top head: layer {ranking.top[0]}, head {ranking.top[1]} (ordered by {', '.join(ranking.rank_by)})")
for row in ranking.head_table()[:5]:
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "method_ranks"})
print("agreement (Kendall tau between methods):", {k: round(v, 2) for k, v in ranking.agreement.items()})

# %%
figures = views.ranking_figures(ranking)
figures["head_rare_token_tau"]

# %%
figures["head_method_ranks"]

# %% [markdown]
# The top heads' attention on one memorized paragraph (circuitsvis; each token carries its
# frequency rank in the paragraph, [r0] = rarest).

# %%
example = paragraphs.select(mem_idx[:1])
with torch.no_grad():
    _, cache = model.run_with_cache(example.tokens, names_filter=lambda name: name.endswith("hook_pattern"))
patterns = torch.stack([cache["pattern", layer][0] for layer in range(model.cfg.n_layers)])
heads = [tuple(h) for h in ranking.order[:3].tolist()]
views.attention_view(
    model.to_str_tokens(example.tokens[0]), patterns, heads, rarity=rarity_ranks(example.tokens, counts)[0].tolist()
)

# %%
rare, rare_nmem = ranking.rare_tokens, ranking.rare_tokens_nmem
flat = int(rare.excess.nan_to_num(1.0).flatten().argmin())
rarest = divmod(flat, rare.excess.shape[1])
print(
    f"strongest rare-token preference: L{rarest[0]}H{rarest[1]}, tau {float(rare.tau[rarest]):+.3f}, "
    f"excess {float(rare.excess[rarest]):+.3f} (p = {float(rare.sum.null_p[rarest]):.3g}, family-wise p = "
    f"{float(rare.sum.family_p[rarest]):.3g}); on NMEM: excess {float(rare_nmem.excess[rarest]):+.3f}; uniform "
    f"attention's tau {rare.sum.uniform_tau:+.3f}"
)
old = rare.with_null("shuffle_positions")
top_by_excess = rare.excess.nan_to_num(0).flatten().argsort()[:4].tolist()
nulls = []
for i in top_by_excess:
    at = divmod(i, rare.excess.shape[1])
    row = {"head": list(at)}
    for name, r in (("pair_paragraphs", rare), ("shuffle_positions", old)):
        row[name] = {k: float(getattr(r.sum, k)[at]) for k in ("excess", "null_p", "family_p")}
    nulls.append(row)
    print(row)
specific = mem_specific_head(rare, rare_nmem, seed=0)
print(
    f"most MEM-specific head, chosen on one half: L{specific.layer}H{specific.head}; on the other half MEM excess "
    f"{specific.mem_excess:+.3f} vs NMEM {specific.nmem_excess:+.3f}, label-permutation p = {specific.p:.3g}"
)
save(
    figures,
    {
        "top_head": list(ranking.top),
        "rank_by": list(ranking.rank_by),
        "agreement": ranking.agreement,
        "most_rare_token_head": list(rarest),
        "most_rare_token_tau": float(rare.tau[rarest]),
        "most_rare_token_excess": float(rare.excess[rarest]),
        "most_rare_token_p": float(rare.sum.null_p[rarest]),
        "most_rare_token_family_p": float(rare.sum.family_p[rarest]),
        "top_heads_under_both_nulls": nulls,
        "mem_specific_head": specific.to_json(),
        "most_rare_token_excess_nmem": float(rare_nmem.excess[rarest]),
        "uniform_tau": rare.sum.uniform_tau,
        "seconds": ranking.seconds,
        "heads": ranking.head_table()[:8],
    },
    "03_heads",
)
