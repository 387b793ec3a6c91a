"""Section 3 of the report: which attention head carries the memorized paragraphs (the locator's evidence).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from interp.report.runner import Bundle
from interp.views import heads as views
from interp.views.report_html import Section, Table


def heads_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """The head ranking as section 3: the evidence per head, agreement between methods, the top heads' attention."""
    ranking, ex = result["ranking"], result["example"]
    table = ranking.head_table()
    cols = [
        "rank",
        "layer",
        "head",
        "patching_effect",
        "ablation_effect",
        "rare_token_tau",
        "gradient_score",
        "mean_rank",
    ]
    layer, head = ranking.top
    notes = [
        f"Top head: layer {layer}, head {head}, ordered by {', '.join(ranking.rank_by)} "
        f"({len(ranking.mem_ids)} MEM, {len(ranking.nmem_ids)} NMEM paragraphs)."
    ]
    if ranking.rare_tokens is not None:
        rare = ranking.rare_tokens
        excess, p = rare.excess, rare.sum.null_p
        flat = int(excess.nan_to_num(1.0).flatten().argmin())
        l2, h2 = divmod(flat, excess.shape[1])
        notes.append(
            f"Strongest preference for rare tokens beyond chance: layer {l2} head {h2}, Kendall tau "
            f"{float(rare.tau[l2, h2]):.2f} against {float(rare.sum.uniform_tau):.2f} for uniform attention "
            f"on the same paragraphs: excess {float(excess[l2, h2]):+.2f}, permutation p = {float(p[l2, h2]):.3g} "
            f"(the paper reports tau -0.97 for head 1.2 of GPT-Neo 125M, without a null). The top head's excess "
            f"is {float(excess[layer, head]):+.2f} (p = {float(p[layer, head]):.3g})."
        )
        if ranking.rare_tokens_nmem is not None:
            nm = float(ranking.rare_tokens_nmem.excess[l2, h2])
            notes.append(
                f"On NMEM paragraphs the same head's excess is {nm:+.2f}: "
                + (
                    "the preference is as strong on text the model does not recite, so it is not specific to memorization."
                    if nm <= float(excess[l2, h2]) * 0.8
                    else "weaker than on MEM paragraphs."
                )
            )
            specific = (excess - ranking.rare_tokens_nmem.excess).nan_to_num(0.0)
            l3, h3 = divmod(int(specific.flatten().argmin()), specific.shape[1])
            notes.append(
                f"Most MEM-specific rare-token preference (MEM excess minus NMEM excess): layer {l3} head {h3}, "
                f"excess {float(excess[l3, h3]):+.2f} on MEM (p = {float(p[l3, h3]):.3g}) vs "
                f"{float(ranking.rare_tokens_nmem.excess[l3, h3]):+.2f} on NMEM."
            )
    notes.append(
        "Agreement between methods (Kendall tau of their head scores): "
        + ", ".join(f"{k} {v:+.2f}" for k, v in ranking.agreement.items())
        + "."
    )
    notes += list(ranking.notes)
    pattern_heads = [tuple(h) for h in ex["heads"]]
    full = torch.zeros(
        max(l for l, _ in pattern_heads) + 1, max(h for _, h in pattern_heads) + 1, *ex["patterns"].shape[1:]
    )
    for i, (l, h) in enumerate(pattern_heads):
        full[l, h] = ex["patterns"][i]
    view = views.attention_view(ex["str_tokens"], full, pattern_heads, rarity=ex["rarity"].tolist())
    return Section(
        key="heads",
        title="3. Which attention head carries the memorized paragraphs?",
        text=(
            "Four kinds of evidence per head. Rare-token attention: the attention from the position that predicts "
            "the first continuation token to each prefix token, against the token's corpus frequency rank in its "
            "paragraph (0 = rarest), summarised by Kendall's tau (negative = attends to rare tokens; paper section 6). "
            "Gradient: how much more of the MEM gradient than the NMEM gradient lands in the head. Ablation: how much "
            "more mean-ablating the head raises the NLL of MEM than of NMEM continuations. Patching: how much of a "
            "memorized continuation's log-probability comes back when the head's clean output is patched into a run "
            "with a corrupted prefix (1 = all). The table is ordered by the causal methods (ablation, patching); the "
            "paper's own methods disagreed, so the agreement between methods is shown rather than hidden."
            "\n\nThe attention view shows the top heads on one memorized paragraph; each token carries its "
            "frequency rank in the paragraph ([r0] = rarest)."
        ),
        figures=views.ranking_figures(ranking),
        views={f"Attention of the top heads on MEM paragraph {ex['id']}": view},
        tables=[Table("Heads ranked (best first, top 12)", cols, [[row.get(c) for c in cols] for row in table[:12]])],
        notes=notes,
    )
