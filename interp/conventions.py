"""The toolkit's conventions beside the papers' code, as one switchable preset.

Where the toolkit departs from the authors' code it does so for a stated reason (a missing null, a
comparison at unmatched strength, a weight that should not move). `PAPER` reproduces the authors'
choices so a user can run both and see what the departure changes: `ReportOptions.paper()`,
`interp report --paper`, `interp unlearn --paper`, or `conventions("paper")` in the library.
`TABLE` is the README's side-by-side table, generated from here so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.errors import UserError


@dataclass(frozen=True)
class Conventions:
    """Every choice where the toolkit and the papers' code differ or could differ.

    `query`: where rare-token attention is read (`"first_continuation"`: the position predicting the
    second continuation token, over the prefix keys, as the authors' notebooks; `"last_prefix"`).
    `rare_token_score`: what the locator ranks heads by (`"excess"` Kendall tau over a permutation
    null, or the raw summed `"tau"`). `krs`: KRS `"per_paragraph"` then averaged, or
    `"ratio_of_means"`. `decay_outside_mask`: weight decay also shrinks unselected weights of the
    masked tensors (the paper's code zeroes only their gradient). `random_mask`: the control mask
    (`"random"`: a uniform draw over the candidates; `"random_matched"`: the top-k count per tensor).
    `unlearn_lr`: None = calibrated per method to matched forgetting, else one rate for every run.
    `restore_width`: None = Hong et al.'s 5 of 32 layers scaled to the model's depth, else fixed.
    `weight_decay`: Adam's (coupled) weight decay in every weight-editing unlearning run."""

    name: str
    query: str
    rare_token_score: str
    krs: str
    decay_outside_mask: bool
    random_mask: str
    unlearn_lr: float | None
    unlearn_steps: int
    restore_width: int | None
    weight_decay: float


TOOLKIT = Conventions(
    "toolkit",
    query="first_continuation",
    rare_token_score="excess",
    krs="per_paragraph",
    decay_outside_mask=False,
    random_mask="random",
    unlearn_lr=None,
    unlearn_steps=10,
    restore_width=None,
    weight_decay=0.0,
)
PAPER = Conventions(
    "paper",
    query="first_continuation",
    rare_token_score="tau",
    krs="per_paragraph",
    decay_outside_mask=True,
    random_mask="random",
    unlearn_lr=1e-5,
    unlearn_steps=5,
    restore_width=5,
    weight_decay=1.0,
)

# (convention, toolkit default, papers' code, why they differ or "same")
TABLE: tuple[tuple[str, str, str, str], ...] = (
    (
        "rare-token attention: query position",
        "first continuation position over the 50 prefix keys",
        "the same (the authors' notebooks)",
        'same; `query="last_prefix"` reads the last prefix position instead',
    ),
    (
        "rare-token attention: head score",
        "excess Kendall tau over a permutation null that keeps positions (one paragraph's attention paired with another's ranks), one-sided p and a family-wise p over all heads",
        "raw summed Kendall tau",
        "a head with NO preference has a summed tau far from 0 (uniform attention: about -0.2), so only the excess says "
        "whether a head prefers rare tokens",
    ),
    (
        "gradient map: set sizes",
        "MEM and NMEM at equal sizes (mean over equal-size chunks); layer shares from squared gradients",
        "whole sets of different sizes; shares of summed max|grad|",
        "the max of a batch-mean gradient shrinks as the set grows, so unequal sets are not comparable",
    ),
    (
        "mean ablation",
        "mean over a fixed reference set that is never scored",
        "mean over the batch being scored",
        "otherwise a head's effect depends on what else is in the call",
    ),
    (
        "unlearning: weights outside the mask",
        "bit-identical (copied back after every step)",
        "gradient zeroed, coupled weight decay still shrinks them",
        "an edit confined to the mask should touch only the mask; "
        "the preset reproduces the code (`decay_outside_mask`)",
    ),
    ("unlearning: random control mask", "uniform over the candidate weights", "the same", "same"),
    (
        "unlearning: weight decay",
        "0 (and a decay-only control row: the same rate and steps with no loss; the audit attacks it when the decay "
        "is above 0)",
        "1.0, coupled (Adam)",
        "with Adam, coupled decay moves every trained weight by about the rate at each step whatever the loss: "
        "at the calibrated rates decay alone takes a target's EM from 50 to about 25, so part of the "
        "'forgetting' of an all-weights row would be shrinkage",
    ),
    (
        "unlearning: learning rate",
        "calibrated per method: the smallest rate at which EVERY target's EM <= 10 (10 steps), a log grid then bisection in log-rate to a factor 1.4",
        "1e-5 for 5 steps",
        "a comparison at one arbitrary rate measures the rate; methods are compared at matched forgetting",
    ),
    (
        "relearning attack",
        "reported with two controls on the original model (a memorized target, a never-seen paragraph)",
        "no controls",
        "without them a recovered EM cannot be read",
    ),
    (
        "restoration window",
        "5/32 of the depth, odd (1 layer on 4-8 layers)",
        "5 layers (of 32)",
        "a 5-layer window on a 6-layer model restores almost everything and localizes nothing",
    ),
    ("KRS", "per paragraph, then averaged", "the same", "same; `krs_ratio_of_means` keeps the ratio of mean losses"),
)


def conventions(name: str) -> Conventions:
    """`"toolkit"` (the default) or `"paper"` (the authors' code)."""
    presets = {"toolkit": TOOLKIT, "paper": PAPER}
    if name not in presets:
        raise UserError(f"unknown conventions {name!r}: use 'toolkit' or 'paper'")
    return presets[name]


def markdown_table() -> str:
    """`TABLE` as the README's markdown table."""
    lines = ["| convention | toolkit default | the papers' code | why |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in TABLE]
    return "\n".join(lines)
