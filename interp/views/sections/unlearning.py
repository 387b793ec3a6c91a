"""Section 5 of the report: unlearning by editing only high-gradient weights, and what it breaks (Fig. 5).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.report.runner import Bundle
from interp.unlearning import COLUMNS
from interp.views import unlearning as views
from interp.views.report_html import Section, Table


def unlearning_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """The unlearning table as section 5: forgetting vs collateral damage per run, and after relearning."""
    table = result["table"]
    rows = [["original model", None, *[table.before.get(c) for c in COLUMNS], 0, None]]
    for label, config, after, rel, changed in zip(
        table.labels, table.configs, table.after, table.relearned, table.weights_changed
    ):
        rows.append(
            [label, config.get("lr"), *[after.get(c) for c in COLUMNS], changed, rel.get("target_em") if rel else None]
        )
    s = table.settings
    notes = []
    if table.calibrations:
        level = table.calibrations[0].level
        grid = table.calibrations[0].grid
        notes.append(
            f"Matched forgetting: each row's learning rate is the smallest on the log grid "
            f"{', '.join(f'{lr:.0e}' for lr in grid)} (searched by bisection) at which "
            f"the targets' mean EM fell to <= {level:g} ({table.configs[0].get('steps', '?')} steps), so the "
            "collateral columns compare methods at the same amount of forgetting, not at one arbitrary rate."
        )
        notes += [f"{c.label}: {c.describe()}." for c in table.calibrations]
        missed = [c.label for c in table.calibrations if not c.reached]
        if missed:
            notes.append(
                f"Not comparable at matched forgetting: {', '.join(missed)} (shown at the largest rate tried)."
            )
    else:
        notes.append(
            "Every row ran at the same learning rate (no calibration): differences in forgetting then measure "
            "the rate as much as the method."
        )
    c = table.relearn_controls
    if c:
        notes.append(
            f"Relearning controls, the same attack on the ORIGINAL model: a memorized target goes from EM "
            f"{c['original_before']:.1f} to {c['original_after']:.1f} (if this falls, relearning itself breaks "
            f"recitation and the attack's numbers understate recovery); a never-seen paragraph goes from "
            f"{c['unseen_before']:.1f} to {c['unseen_after']:.1f} (if this rises, relearning teaches the text "
            "rather than revealing it)."
        )
    return Section(
        key="unlearning",
        title="5. Can the memorized text be unlearned by editing only high-gradient weights?",
        text=(
            "Each run fine-tunes a copy of the model on ONE memorized target paragraph with 10 NMEM paragraphs in the "
            "KL term (paper section 5.3), updating all weights, only the top 0.1% by |gradient| of the contrastive "
            "objective, or a random 0.1% of the same size; 'unlearn' minimises Eq. 3 (push the target's "
            "continuation down), 'edit' Eq. 4 (teach the target prefix the new continuation found in section 4); "
            "a 'reft' row trains a low-rank intervention on one residual stream (LoReFT) instead of weights. "
            "Collateral damage: EM of other MEM paragraphs, EM of NMEM paragraphs against the original model's own "
            "greedy continuation (full length = unchanged, the paper's measure) and held-out perplexity. The last "
            "column is the target's EM after a relearning attack (a few steps of ordinary fine-tuning on the "
            "target's prefix alone; '-' when not run): a forgotten paragraph that comes straight back was hidden, "
            f"not removed.\n\nSettings: {len(s['targets'])} target(s), {s['retain_per_run']} retain paragraphs per run, probes of "
            f"{s['probe_mem']} MEM / {s['probe_nmem']} NMEM / {s['probe_heldout']} held-out paragraphs. The paper's means "
            "(GPT-Neo 125M, MEM / NMEM EM after unlearning): all weights 26.90 / 45.11, top-0.1% 26.75 / 45.84, "
            "random-0.1% 49.80 / 44.86."
        ),
        figures={"table": views.figure_unlearning_table(table)},
        tables=[
            Table(
                "Mean scores after each run (EM in tokens; ppl = held-out perplexity; lr = the rate the row ran at)",
                ["run", "lr", *COLUMNS, "weights changed", "target EM after relearning"],
                rows,
            )
        ],
        notes=notes,
    )
