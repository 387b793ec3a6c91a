"""Views of the injection benchmark: how far to trust the locator on this model.

Results in (a `LocatorValidation`), tables, figures and a report `Section` out.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from interp.locator.validation import MEMPI_GPT2_INJ_RECALL, RECALL_FRACTION, LocatorValidation
from interp.views.export import labelled_heatmap
from interp.views.report_html import Section, Table


def _label(h) -> str:
    seed = f"s{h.seed} " if h.seed else ""
    recited = "" if h.injection.recited else f" ({h.injection.n_recited}/{len(h.injection.ids)} recited)"
    return f"{seed}L{h.layer}H{h.head}{recited}"


def figure_injected_ranks(validation: LocatorValidation) -> go.Figure:
    """Each method's rank of each injected head (1 = found it first), methods x heads; blank = no rank (a
    failed injection: not evidence; or a head outside the screen), the hover says which."""
    methods = list(validation.methods)
    heads = [_label(h) for h in validation.heads]
    z = [[h.ranks[m] if h.evidence else None for h in validation.heads] for m in methods]
    z.append([h.combined_rank if h.evidence else None for h in validation.heads])
    text = [[h.shown(h.ranks[m]) for h in validation.heads] for m in methods]
    text.append([h.shown(h.combined_rank) for h in validation.heads])
    return labelled_heatmap(
        [[None if v is None else math.log2(v) for v in row] for row in z],
        heads,
        methods + ["combined"],
        text=text,
        hovertemplate="%{y} on %{x}: rank %{customdata}<extra></extra>",
        colorbar_title="log2 rank",
        title="Rank of the injected head under each method (1 = first)",
        height=80 + 28 * len(methods),
        colorscale="Greens",
        reversescale=True,
        customdata=text,
    )


def head_table(validation: LocatorValidation) -> Table:
    """Per method: each injected head's rank ('not evidence' where the injection failed, 'outside the screen'
    where the method never scored it), the mean over the injections that worked, and the count it missed."""
    columns = ["method"] + [
        c
        for h in validation.heads
        for c in (f"{_label(h)} rank", f"{_label(h)} rank in layer", f"{_label(h)} margin (sd)")
    ]
    columns += ["mean rank (injections that worked)", "outside the screen", "mean seconds"]
    means, missed = validation.mean_rank(), validation.missed()
    rows = []
    for m in validation.methods:
        row: list = [m]
        for h in validation.heads:
            row += [h.shown(h.ranks[m]), h.shown(h.layer_ranks[m]), h.margins_z[m] if h.evidence else None]
        row += [means.get(m), missed.get(m), sum(h.seconds[m] for h in validation.heads) / len(validation.heads)]
        rows.append(row)
    combined = ["combined"] + [v for h in validation.heads for v in (h.shown(h.combined_rank), None, None)]
    combined += [validation.combined_mean_rank(), validation.combined_missed(), None]
    rows.append(combined)
    n, used = len(validation.heads), len(validation.usable_heads())
    return Table(
        "Rank of each injected head per method (1 = first; rank in layer = among the heads of its own layer; "
        "margin = score minus the best other head's, in standard deviations of the method's scores). Means over the "
        f"{used} of {n} injections that worked (the copy recites at least one injected paragraph); a failed "
        "injection's ranks are not evidence and are left out of every mean, the combined one included",
        columns,
        rows,
    )


def injection_table(validation: LocatorValidation) -> Table:
    rows = []
    checks = [(f"head {_label(h)}", h.injection, h.variant) for h in validation.heads]
    checks += [
        (f"seed {c.seed}: {len(c.injection.units)} MLP neurons", c.injection, "as set")
        for c in validation.neuron_checks
    ]
    for name, inj, variant in checks:
        rows.append(
            [name, variant, len(inj.ids), inj.steps, inj.lr, inj.n_recited, inj.heldout_ppl_before]
            + [inj.heldout_ppl_after, inj.seconds]
        )
    return Table(
        "Injections (each into its own copy of the model; variant: the recipe as set, or the escalation that "
        "recited the paragraphs when it failed)",
        ["trained", "variant", "paragraphs", "steps", "rate", "recited in full", "held-out ppl before"]
        + ["held-out ppl after", "seconds"],
        rows,
    )


def neuron_table(validation: LocatorValidation) -> Table:
    checks = validation.neuron_checks
    fraction = checks[0].fraction
    recall = validation.recall()
    seeds = len(checks) > 1
    rows = []
    for m in checks[0].recall:
        per_seed = [c.recall[m]["0.5%"] if c.injection.n_recited else "not evidence" for c in checks] if seeds else []
        mean = recall.get(m, {})
        rows.append(
            [m, mean.get("injected"), mean.get("0.5%"), *per_seed, MEMPI_GPT2_INJ_RECALL.get(m)]
            + [sum(c.seconds[m] for c in checks) / len(checks)]
        )
    rows.append(["random", fraction, RECALL_FRACTION, *([RECALL_FRACTION] * len(checks) if seeds else []), 0.5, None])
    per_seed_cols = [f"seed {c.seed} R@{RECALL_FRACTION:.1%}" for c in checks] if seeds else []
    return Table(
        f"Recall of the injected neurons (MemPi's layer-wise Recall@k; injected: {fraction:.2%} of the "
        "neurons; mean over the seeds whose injection worked); MemPi's GPT-2 INJ Recall@0.5% (percent) beside it",
        ["method", f"Recall@{fraction:.2%}", f"Recall@{RECALL_FRACTION:.1%}", *per_seed_cols, "MemPi GPT-2 (%)"]
        + ["seconds"],
        rows,
    )


def trust_notes(validation: LocatorValidation) -> list[str]:
    """Short findings: what to combine on this model and why; the combined rank of each injected head."""
    notes = []
    choice, reason = validation.recommended_rank_by("head")
    notes.append(f"Head methods to combine on this model: {', '.join(choice) or 'none'} ({reason}).")
    for h in validation.heads:
        screen = (
            ""
            if h.in_screen is None
            else (
                " (passed the attribution screen)"
                if h.in_screen
                else " (MISSED by the attribution screen, so the exact methods never saw it)"
            )
        )
        notes.append(
            f"Injected head {_label(h)}: combined rank {h.shown(h.combined_rank)} by {', '.join(h.rank_by)}"
            f"{screen if h.evidence else ''}; held-out perplexity {h.injection.heldout_ppl_before:.2f} -> "
            f"{h.injection.heldout_ppl_after:.2f}."
        )
        notes += list(h.notes)
    if validation.neuron_checks:
        choice, reason = validation.recommended_rank_by("neuron")
        notes.append(f"Neuron methods to combine: {', '.join(choice) or 'none'} ({reason}).")
        notes += [n for c in validation.neuron_checks for n in c.notes]
    return notes


def trust_section(
    validation: LocatorValidation,
    key: str = "locator_trust",
    title: str = "How far to trust the locator on this model",
) -> Section:
    """The report section "How far to trust the locator on this model"."""
    tables = [head_table(validation), injection_table(validation)]
    if validation.neuron_checks:
        tables.append(neuron_table(validation))
    text = (
        "The locator was run on copies of this model in which the answer is known. New paragraphs (text the model "
        "could not recite) were trained into a copy through ONE chosen head (only that head's W_Q, W_K, W_V, W_O "
        "moved; a KL term on other text kept the rest of the model's behaviour, and the held-out perplexity before "
        "and after shows how far it still moved), until the copy recited all of them or the step limit was reached; "
        "only the paragraphs the copy recites in full count as memorized there. The locator then ran as a user "
        "would run it, with every method; the table gives the rank each method gave the injected head. A method that "
        "does not rank the injected head first here should not be trusted to find the memorization head of this model."
        "\n\nThe exact methods (patching, ablation, zero-out) run only on the heads an attribution-patching screen "
        "keeps; a head the screen misses gets no exact score."
    )
    if validation.neuron_checks:
        text += (
            "\n\nNeurons (MemPi's INJ benchmark): the W_out rows of a random set of MLP neurons were trained until "
            "the copy recited other new paragraphs; each method's Recall@k says which share of those neurons it "
            "finds among its top k (per layer), beside the numbers MemPi reported for GPT-2."
        )
    return Section(
        key=key,
        title=title,
        text=text,
        figures={"injected_ranks": figure_injected_ranks(validation)},
        tables=tables,
        notes=trust_notes(validation),
    )
