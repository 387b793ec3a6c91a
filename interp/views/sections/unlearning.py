"""Section 5 of the report: unlearning by editing only high-gradient weights, and what it breaks (Fig. 5).

A view: results in, a `Section` (text, tables, figures) out; never a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp.report_types import Bundle, Section, Table
from interp.unlearning import COLUMNS
from interp.unlearning.experiments import heldout_control_note
from interp.views import unlearning as views


def unlearning_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    """The unlearning table as section 5: forgetting vs collateral damage per run, and after relearning."""
    table = result["table"]
    rows = [["original model", None, *[table.before.get(c) for c in COLUMNS], 0, None, None]]
    controls = table.heldout_control or ({},) * len(table.labels)
    for label, config, after, rel, changed, control in zip(
        table.labels, table.configs, table.after, table.relearned, table.weights_changed, controls
    ):
        rows.append(
            [
                label,
                config.get("lr"),
                *[after.get(c) for c in COLUMNS],
                changed,
                rel.get("target_em") if rel else None,
                control.get("relearned"),
            ]
        )
    s = table.settings
    notes = []
    figures = {"table": views.figure_unlearning_table(table)}
    if table.calibrations:
        first = table.calibrations[0]
        notes.append(
            f"Matched forgetting: each row's learning rate is the smallest at which EVERY target's EM fell to "
            f"<= {first.level:g} ({table.configs[0].get('steps', '?')} steps, each target in its own run), found by "
            f"bisection on the log grid {', '.join(f'{lr:.0e}' for lr in first.grid)} and then in log-rate until the "
            f"rate that reached it is within a factor {1 + first.tolerance:g} of one that did not. The search assumes "
            "forgetting grows with the rate; a target whose EM rose with the rate among the rates tried is flagged "
            "NON-MONOTONE below, and a rate whose loss diverged bounds the search from above."
        )
        notes += [f"{c.label}: {c.describe()}." for c in table.calibrations]
        missed = [c.label for c in table.calibrations if not c.reached]
        if missed:
            notes.append(
                f"Not comparable at matched forgetting: {', '.join(missed)} (shown at the largest rate tried that "
                "did not diverge)."
            )
        if any(p.scores for c in table.calibrations for p in c.points):
            figures["curves"] = views.figure_forgetting_curves(table)
            every = all(p.scores for c in table.calibrations for p in c.points if not p.diverged)
            notes.append(
                (
                    "The forgetting curves: every rate each search tried was also scored on the probes (in the same "
                    "batched pass as its targets), so each method's line runs from the original model through its "
                    "whole rate trace"
                    if every
                    else "The forgetting curves: each search scored the probes at two rates, the one chosen and the "
                    "highest that did not reach the level (`interp unlearn --calibrate --curves` scores every rate "
                    "tried), so each method's line runs from the original model through those two points"
                )
                + "; the table is the slice at the ringed points (matched forgetting). A method whose line lies lower "
                "at the same target EM breaks less for the same forgetting."
            )
    else:
        notes.append(
            "Every row ran at the same learning rate (no calibration): differences in forgetting then measure "
            "the rate as much as the method."
        )
    decays = sorted({c["weight_decay"] for c in table.configs if "weight_decay" in c})
    if decays:
        notes.append(
            f"Weight decay (Adam, coupled) in every weight-editing row: {', '.join(f'{d:g}' for d in decays)} "
            "(the toolkit's 0; the paper's code uses 1.0, `--paper`)."
        )
    source = s.get("decay_control_of")
    if source:
        decay = table.after[-1]
        notes.append(
            f"The last row, decay only, is the control of the weight-decay confound: '{source}' (the all-weights row "
            f"with the highest rate) run again at its rate and steps with NO loss, so that only weight decay moves "
            f"the weights. Its target EM {decay['target_em']:.1f} against the original's "
            f"{table.before['target_em']:.1f} is the forgetting weight decay alone would show."
        )
    if any(table.diverged):
        notes.append(
            "Diverged runs (loss non-finite), left out of the row's means: "
            + ", ".join(f"{lab} {n}" for lab, n in zip(table.labels, table.diverged) if n)
            + "."
        )
    c = table.relearn_controls
    if c:
        notes.append(
            f"Relearning control (a), the same attack on the ORIGINAL model: a memorized target goes from EM "
            f"{c['original_before']:.1f} to {c['original_after']:.1f} (if this falls, relearning itself breaks "
            "recitation and the attack's numbers understate recovery)."
        )
        notes.append(heldout_control_note(table) + ".")
    return Section(
        key="unlearning",
        title="5. Can the memorized text be unlearned by editing only high-gradient weights?",
        text=(
            "Each run fine-tunes a copy of the model on ONE memorized target paragraph with 10 NMEM paragraphs in the "
            "KL term (paper section 5.3), updating all weights, only the top 0.1% by |gradient| of the contrastive "
            "objective, or a random 0.1% of the same size; 'unlearn' minimises Eq. 3 (push the target's "
            "continuation down), 'edit' Eq. 4 (teach the target prefix the new continuation found in section 4); "
            "a 'ga' / 'graddiff' / 'npo' row is a common baseline on all weights (gradient ascent on the target; "
            "plus descent on the retain set; negative preference optimisation); "
            "a 'reft' row trains a low-rank intervention on one residual stream (LoReFT) instead of weights. "
            "Collateral damage: EM of other MEM paragraphs, EM of NMEM paragraphs against the original model's own "
            "greedy continuation (full length = unchanged, the paper's measure) and held-out perplexity. A "
            "'decoding-time' row leaves the weights frozen and adds, at decoding time, the logit difference of a "
            "small model of the same tokenizer before and after unlearning it on the target (proxy-tuning; its "
            "rate is the small model's). Whether the forgetting is real, or only hidden, is section 5b (every "
            "attack, relearning among them, with its controls); the last two columns keep the table's own "
            "relearning attack (a few steps of fine-tuning on the target's prefix) and its control (b)."
            f"\n\nSettings: {len(s['targets'])} target(s), {s['retain_per_run']} retain paragraphs per run, probes of "
            f"{s['probe_mem']} MEM / {s['probe_nmem']} NMEM / {s['probe_heldout']} held-out paragraphs. The paper's means "
            "(GPT-Neo 125M, MEM / NMEM EM after unlearning): all weights 26.90 / 45.11, top-0.1% 26.75 / 45.84, "
            "random-0.1% 49.80 / 44.86."
        ),
        figures=figures,
        tables=[
            Table(
                "Mean scores after each run (EM in tokens; ppl = held-out perplexity; lr = the rate the row ran at; "
                "held-out = control (b): never-seen paragraphs after the row's unlearning and relearning)",
                [
                    "run",
                    "lr",
                    *COLUMNS,
                    "weights changed",
                    "target EM after relearning",
                    "held-out EM after relearning",
                ],
                rows,
            )
        ],
        notes=notes,
    )
