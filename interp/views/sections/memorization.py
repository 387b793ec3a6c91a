"""Section 1 of the report: which paragraphs the model recites (EM histogram, NLL vs EM, by repeat count, examples).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.memorization import MemorizationSplit
from interp.metrics import EXTRACTION_NS, extraction_by_em_bin, log10_at_least_one
from interp.report_types import Section, Table
from interp.views import memorization as views


def memorization_section(split: MemorizationSplit, results: Mapping[str, Any]) -> Section:
    """The memorization split as section 1: counts, EM histogram, NLL vs EM, by repeat count, examples."""
    cont = split.continuation_len
    scores = split.scores
    figures = {
        "em_histogram": views.figure_em_histogram(split),
        "nll_vs_em": views.figure_nll_vs_em(split),
        "log10_p_by_em_bin": views.figure_log10_p_by_em_bin(scores, split.nmem_max),
    }
    extraction = extraction_by_em_bin(scores, split.nmem_max)
    likely = log10_at_least_one(scores.log10_p, 10_000) >= -0.30103  # p >= 1/2 in 10,000 samples
    missed = int((likely & (scores.em < cont)).sum())
    tables = [
        Table(
            "Extraction probability by EM bin (log10 p: sampling reproduces the whole continuation)",
            ["EM bin", "paragraphs", "median log10 p", "share with P(1 of 100 samples) >= 1/2"]
            + [f"log10 p {k}" for k in extraction[0]["log10_p_histogram"]],
            [
                [r["em_bin"], r["n"], r["median_log10_p"], r["share_p100_ge_half"], *r["log10_p_histogram"].values()]
                for r in extraction
            ],
        )
    ]
    notes = [
        f"{len(split.mem_idx)} of {len(split.scores.em)} paragraphs are memorized (MEM: the greedy continuation "
        f"reproduces all {cont} tokens); {len(split.nmem_idx)} are NMEM (EM <= {split.nmem_max}). "
        f"Mean EM {float(split.scores.em.float().mean()):.2f}.",
        f"{missed} paragraph(s) below full EM would still be extracted with probability >= 1/2 by "
        f"{max(EXTRACTION_NS):,} samples: greedy EM alone misses them.",
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
            "\n\nGreedy EM misses text that sampling extracts ((n, p)-discoverable extraction, Hayes et al. "
            "2024): p, the probability that sampling at temperature 1 reproduces the whole continuation, is "
            "the product of its tokens' probabilities from the same teacher-forced pass; at least one of n "
            "samples reproduces it with probability 1 - (1 - p)^n. The extraction histogram shows log10 p "
            "for each EM bin."
            "\n\nThe token views below colour each token by its loss under the model (white = predicted "
            "with certainty, red = surprising): a memorized paragraph's continuation is all white."
        ),
        figures=figures,
        views=views.view_example_tokens(split),
        tables=tables,
        notes=notes,
    )
