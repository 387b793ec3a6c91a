"""Section 2 of the report: where the gradient of a memorized paragraph lands (batch maps, per-paragraph norms).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.report_types import Bundle, Section, Table
from interp.views import gradients as views


def gradients_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """The gradient maps and per-paragraph norm tests as section 2."""
    nll, co = result["nll"], result["contrastive"]
    low = nll.lower_half_share()
    top = nll.most_salient()
    cmp = result["comparison"]
    notes = [
        f"Lower layers (the paper's claim), tested per paragraph: each paragraph's share of its squared NLL gradient "
        f"norm in the lower half of the layers, median {cmp.lower_half_mem_median:.3f} for {cmp.n_mem} MEM vs "
        f"{cmp.lower_half_nmem_median:.3f} for {cmp.n_nmem} NMEM paragraphs, rank-biserial r = "
        f"{cmp.lower_half_rank_biserial:+.2f}, Mann-Whitney p = {cmp.lower_half_p:.2g} (two-sided): "
        f"{cmp.verdict()}.",
        f"The batch map's share of the squared gradient norm (L2) in the lower half of the layers, one number per "
        f"set and no test: MEM {low['mem']:.3f}, NMEM {low['nmem']:.3f}.",
        f"Largest MEM cell: layer {top['mem']['layer']} head {top['mem']['head']} {top['mem']['component']}; largest "
        f"MEM-NMEM difference after scaling each map to sum 1: layer {top['relative_diff']['layer']} head "
        f"{top['relative_diff']['head']} {top['relative_diff']['component']} (the paper: layer 1 head 2 W_V in GPT-Neo 125M).",
    ]
    rows = [
        [
            l,
            float(cmp.norm_mem_median[l]),
            float(cmp.norm_nmem_median[l]),
            float(cmp.norm_rank_biserial[l]),
            float(cmp.norm_p[l]),
            float(cmp.share_mem_median[l]),
            float(cmp.share_nmem_median[l]),
            float(cmp.share_rank_biserial[l]),
            float(cmp.share_p[l]),
        ]
        for l in range(len(cmp.norm_p))
    ]
    return Section(
        key="gradients",
        title="2. Where does the gradient of a memorized paragraph land?",
        text=(
            "The gradient of the continuation NLL is taken separately for a batch of MEM and a batch of NMEM "
            "paragraphs (paper section 5.1). Each cell is the largest |gradient| over one weight matrix: W_Q, W_K, "
            "W_V, W_O per head and the MLP's W_in, W_out per layer; embeddings, unembedding and biases are left out. "
            "The contrastive objective (-0.1 NLL of a MEM paragraph + KL to the original model on NMEM paragraphs, "
            "paper Eq. 3) is the one unlearning uses; at the original weights its KL term has zero gradient."
            "\n\nBelow, each paragraph's own gradient norm per layer (computed in batched passes without "
            "per-paragraph gradients) shows the spread behind the batch numbers, with a Mann-Whitney U test per layer "
            "(r > 0: larger for MEM; per-layer p-values are uncorrected, multiply by the number of layers for "
            "Bonferroni). The verdict on the paper's 'lower layers' claim is ONE Mann-Whitney test on each "
            "paragraph's lower-half share, not a comparison of two batch numbers."
        ),
        figures={
            "nll_components": views.figure_component_map(nll),
            "nll_heads": views.figure_head_map(nll),
            "nll_heads_relative": views.figure_head_map(nll, relative=True),
            "nll_layer_share": views.figure_layer_share(nll),
            "contrastive_components": views.figure_component_map(co),
            "per_paragraph_share": views.figure_per_paragraph(
                result["norms_mem"], result["norms_nmem"], cmp, share=True
            ),
        },
        tables=[
            Table(
                "Per-paragraph NLL gradient norm per layer, MEM vs NMEM",
                [
                    "layer",
                    "MEM median",
                    "NMEM median",
                    "r",
                    "p",
                    "MEM share median",
                    "NMEM share median",
                    "r (share)",
                    "p (share)",
                ],
                rows,
            )
        ],
        notes=notes,
    )
