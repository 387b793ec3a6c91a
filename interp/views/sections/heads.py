"""Section 3 of the report: which attention head carries the memorized paragraphs (the locator's evidence).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from interp.locator.rare_tokens import RareTokenAttention, SpecificHead
from interp.report_types import Bundle, Section, Skipped, Table
from interp.views import heads as views

NULL_WORDS = {
    "pair_paragraphs": "each paragraph's attention paired with another paragraph's frequency ranks, which keeps "
    "positions (a head that always reads position 0 gets no excess)",
    "shuffle_positions": "frequency ranks shuffled among the positions of each paragraph (breaks the link between "
    "position and rarity too, so a positional head can look rare-token preferring)",
}
SCORE_WORDS = {
    "excess": "minus the excess tau over the null",
    "tau": "minus the raw summed tau (the paper's statistic, no null)",
}


def _p(value: float) -> str:
    return "not a number (tau undefined: the head's per-rank curve is constant)" if value != value else f"{value:.3g}"


def rare_token_notes(rare: RareTokenAttention, rare_nmem: RareTokenAttention | None, top: tuple[int, int]) -> list[str]:
    """The strongest rare-token preference with its per-head and family-wise p, and the NMEM contrast."""
    s = rare.sum
    excess, p, family = s.excess, s.null_p, s.family_p
    n_heads = excess.shape[1]
    notes = []
    if s.undefined.all():
        return ["Rare-token attention: tau is undefined for every head (constant per-rank curves); no p-value."]
    l2, h2 = divmod(int(excess.nan_to_num(float("inf")).flatten().argmin()), n_heads)
    verdict = (
        "beyond chance after correcting for all heads"
        if float(family[l2, h2]) <= 0.05
        else "NOT beyond chance once all heads are counted"
    )
    notes.append(
        f"Strongest preference for rare tokens: layer {l2} head {h2}, Kendall tau {float(rare.tau[l2, h2]):.2f} "
        f"against {s.uniform_tau:.2f} for uniform attention on the same paragraphs: excess "
        f"{float(excess[l2, h2]):+.2f}, family-wise p = {_p(float(family[l2, h2]))} over all "
        f"{excess.numel()} heads ({verdict}; the head's own permutation p = {_p(float(p[l2, h2]))}; "
        f"{s.draws} draws of the {s.null} null). The paper reports tau -0.97 for head 1.2 of GPT-Neo 125M, "
        f"without a null. The top head's excess is {float(excess[top]):+.2f} (p = {_p(float(p[top]))}, "
        f"family-wise p = {_p(float(family[top]))})."
    )
    undefined = int(s.undefined.sum())
    if undefined:
        notes.append(
            f"{undefined} head(s) have an undefined tau (the summed attention per rank is the same at every rank), "
            "so they have no excess and no p-value: they are shown as blank / nan, never as significant."
        )
    if rare_nmem is not None and len(rare_nmem.ids):
        nm = float(rare_nmem.excess[l2, h2])
        notes.append(
            f"On NMEM paragraphs the same head's excess is {nm:+.2f}: "
            + (
                "the preference is as strong on text the model does not recite, so it is not specific to memorization."
                if nm <= float(excess[l2, h2]) * 0.8
                else "weaker than on MEM paragraphs."
            )
        )
    return notes


def specific_note(specific: SpecificHead | Skipped | None) -> list[str]:
    """The held-out MEM-specific head, or why it was not tested."""
    if specific is None:
        return []
    if isinstance(specific, Skipped):
        return [f"Most MEM-specific rare-token head: not tested ({specific.reason})."]
    return [
        f"Most MEM-specific rare-token head (MEM excess minus NMEM excess), chosen on one half of the paragraphs: "
        f"layer {specific.layer} head {specific.head} (difference {specific.chosen_difference:+.2f} on the half it "
        f"was chosen on, inflated by the choice). On the other half ({specific.n_test_mem} MEM, "
        f"{specific.n_test_nmem} NMEM): excess {specific.mem_excess:+.2f} on MEM vs {specific.nmem_excess:+.2f} on "
        f"NMEM, difference {specific.difference:+.2f}, label-permutation p = {_p(specific.p)} (MEM / NMEM labels "
        f"shuffled {specific.draws} times; one-sided: MEM prefers rare tokens more)."
    ]


def heads_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """The head ranking as section 3: the evidence per head, agreement between methods, the top heads' attention."""
    ranking, ex = result["ranking"], result["example"]
    parts = result.parts
    rare = parts.get("rare_tokens", ranking.rare_tokens)
    rare_nmem = parts.get("rare_tokens_nmem", ranking.rare_tokens_nmem)
    cols, table = views.head_table(ranking, rare)
    layer, head = ranking.top
    notes = [
        f"Top head: layer {layer}, head {head}, ordered by {', '.join(ranking.rank_by)} "
        f"({len(ranking.mem_ids)} MEM, {len(ranking.nmem_ids)} NMEM paragraphs)."
    ]
    if rare is not None:
        notes += rare_token_notes(rare, rare_nmem, (layer, head))
        notes += specific_note(parts.get("mem_specific_head"))
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
    if rare is not None:
        used = ranking.results["rare_token"].options.get("score", "excess") if "rare_token" in ranking.results else None
        rare_text = (
            f"Rare-token attention: the attention from {rare.query_text} to each prefix token, against the token's "
            "corpus frequency rank in its paragraph (0 = rarest), summarised by Kendall's tau between rank and the "
            "attention summed per rank (negative = attends to rare tokens; paper section 6). Its null: "
            f"{NULL_WORDS[rare.null]}; excess = tau minus the null's mean, p one-sided, and the family-wise p "
            "corrects for every head tested (max-statistic permutation)."
            + (f" The locator's rare-token score is {SCORE_WORDS[used]}." if used in SCORE_WORDS else "")
        )
    else:
        rare_text = "Rare-token attention was not run."
    return Section(
        key="heads",
        title="3. Which attention head carries the memorized paragraphs?",
        text=(
            f"Four kinds of evidence per head. {rare_text} "
            "Gradient: how much more of the MEM gradient than the NMEM gradient lands in the head. Ablation: how much "
            "more mean-ablating the head raises the NLL of MEM than of NMEM continuations. Patching: how much of a "
            "memorized continuation's log-probability comes back when the head's clean output is patched into a run "
            f"with a corrupted prefix (1 = all). The table is ordered by {', '.join(ranking.rank_by)}; the paper's "
            "own methods disagreed, so the agreement between methods is shown rather than hidden."
            "\n\nThe attention view shows the top heads on one memorized paragraph; each token carries its "
            "frequency rank in the paragraph ([r0] = rarest)."
        ),
        figures=views.ranking_figures(ranking, rare, rare_nmem),
        views={f"Attention of the top heads on MEM paragraph {ex['id']}": view},
        tables=[Table("Heads ranked (best first, top 12)", cols, [[row.get(c) for c in cols] for row in table[:12]])],
        notes=notes,
    )
