"""Section 1 of the report: which paragraphs the model recites (EM histogram, NLL vs EM, by repeat count, examples).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.memorization import MemorizationSplit
from interp.views import memorization as views
from interp.views.report_html import Section, Table


def memorization_section(split: MemorizationSplit, results: Mapping[str, Any]) -> Section:
    """The memorization split as section 1: counts, EM histogram, NLL vs EM, by repeat count, examples."""
    cont = split.continuation_len
    figures = {"em_histogram": views.figure_em_histogram(split), "nll_vs_em": views.figure_nll_vs_em(split)}
    tables = []
    notes = [
        f"{len(split.mem_idx)} of {len(split.scores.em)} paragraphs are memorized (MEM: the greedy continuation "
        f"reproduces all {cont} tokens); {len(split.nmem_idx)} are NMEM (EM <= {split.nmem_max}). "
        f"Mean EM {float(split.scores.em.float().mean()):.2f}."
    ]
    rows = split.by_count()
    if rows:
        figures["memorization_by_count"] = views.figure_memorization_by_count(split)
        tables.append(
            Table(
                "Memorization by training repeat count",
                ["copies in training", "paragraphs", "MEM", "fraction MEM", "mean EM", "mean NLL"],
                [[r["count"], r["n"], r["n_mem"], r["fraction_mem"], r["mean_em"], r["mean_nll"]] for r in rows],
            )
        )
    if split.examples:
        tables.append(
            Table(
                "Example paragraphs (shown as text: the model's own tokens, decoded)",
                ["kind", "id", "EM", "prefix", "continuation"],
                [
                    [
                        ex["kind"].upper(),
                        ex["id"],
                        ex["em"],
                        "".join(ex["str_tokens"][: ex["prefix_len"]]),
                        "".join(ex["str_tokens"][ex["prefix_len"] :]),
                    ]
                    for ex in split.examples
                ],
            )
        )
    return Section(
        key="memorization",
        title="1. Which paragraphs does the model recite?",
        text=(
            f"Every paragraph is a {split.examples[0]['prefix_len'] if split.examples else '?'}-token prefix followed by a "
            f"{cont}-token continuation. EM (exact match) counts the continuation tokens that greedy decoding "
            "reproduces before the first mistake, computed from one teacher-forced pass; NLL is the mean "
            "negative log-likelihood of the true continuation tokens. The histogram shows how many paragraphs "
            "reach each EM (log scale); the scatter plot shows that memorized paragraphs have near-zero loss."
            "\n\nThe token views below colour each token by its loss under the model (white = predicted "
            "with certainty, red = surprising): a memorized paragraph's continuation is all white."
        ),
        figures=figures,
        views=views.view_example_tokens(split),
        tables=tables,
        notes=notes,
    )
