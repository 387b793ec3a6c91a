"""Section 6 of the report: is the unlearned text gone, or only harder to reach (restoration heatmaps).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.report_types import Bundle, Section
from interp.views import unlearning as views


def restoration_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """Restoration as section 6: how much of the forgotten text each restored part brings back."""
    notes = []
    labels = {"all": "all weights", "topk": "top-0.1% weights", "random": "random-0.1% weights"}
    selects = [k for k in labels if k in result.parts]
    figures = {}
    for select in selects:
        r, label = result[select], labels[select]
        before, after = float(r.em_original.float().mean()), float(r.em_edited.float().mean())
        if after >= before:
            notes.append(
                f"Unlearning with {label} did not lower the target's EM ({before:.1f} -> {after:.1f}): "
                "nothing was forgotten, so there is nothing to restore and no heatmap."
            )
            continue
        figures[f"{select}_weights"] = views.figure_restoration(r)
        krs = r.krs
        best = divmod(int(krs.nan_to_num(-1e9).flatten().argmax()), krs.shape[1])
        values = (
            f"; value vectors (W_out) recover at most KRS {float(krs[list(r.experiments).index('values')].max()):.2f}"
            if "values" in r.experiments
            else ""
        )
        rate = (
            f" (lr {result.parts[f'{select}_lr']:.2g}, {result.parts.get(f'{select}_lr_source', 'rate')})"
            if f"{select}_lr" in result.parts
            else ""
        )
        notes.append(
            f"Unlearning with {label}{rate}: target EM {before:.1f} -> {after:.1f}; the largest recovery (KRS "
            f"{float(krs[best]):.2f}) comes from restoring {r.experiments[best[0]]} around layer {best[1]}{values}."
        )
    return Section(
        key="restoration",
        title="6. Is the unlearned text gone, or only harder to reach?",
        text=(
            f"After unlearning (Eq. 3; {' and '.join(labels[k] for k in selects)}), parts of the ORIGINAL model are put back "
            "into the unlearned one for a window of layers around each layer (Hong et al. use 5 of GPT-Neo's 32 layers; "
            f"here {_width(result[selects[0]])} of {_depth(result[selects[0]])}, the same share, odd so that it is centred): "
            "the MLP coefficients (the activations after the nonlinearity), the attention outputs, both, or the MLP value "
            "vectors (W_out weights). " + _runs_text(result) + " Each cell is "
            "the fraction recovered: of the forgotten EM, of the NLL increase, and the Knowledge Recovery Score "
            "1 - loss(restored) / loss(unlearned), computed per paragraph and averaged (1 = fully restored). The paper "
            "found value vectors recover almost nothing while the last layers' coefficients carry the forgetting: "
            "unlearning changes retrieval, not storage."
        ),
        figures=figures,
        notes=notes + _window_note(result[selects[0]]),
    )


def _runs_text(result: Bundle) -> str:
    """Which unlearning runs were restored, and at which rate."""
    if result.parts.get("mode") == "per target":
        return (
            f"Restored per target: each of the {len(result.parts['targets'])} targets is unlearned in its own run "
            f"(the target + its {result.parts['retain_per_run']} retain NMEM paragraphs, its own weight mask), the "
            "same runs as the rows of section 5's table, at the rate stated below (calibrated for exactly these "
            "runs unless a fixed rate was given), and restored alone; the per-paragraph scores are then pooled."
        )
    return "All targets are unlearned jointly in one run."


def _width(r: Any) -> int:
    return max(b - a + 1 for a, b in r.windows)


def _depth(r: Any) -> int:
    return r.windows[-1][1] + 1


def _window_note(r: Any) -> list[str]:
    lo, hi = r.windows[0][0], r.windows[-1][1]
    widest = max(b - a + 1 for a, b in r.windows)
    if widest >= hi - lo + 1:
        return [
            f"This model has only {hi - lo + 1} layers, so a {widest}-layer window covers all of them: the heatmap cannot "
            "localize the forgetting to layers here, only to the kind of state restored."
        ]
    return []
