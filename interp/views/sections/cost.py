"""The report's last section: what each step cost, in seconds, work and share of the machine's matmul peak.

A view: the runner's per-step cost table in, a `Section` out; never a model."""

from __future__ import annotations

from collections.abc import Mapping

from interp.report_types import Section, Table


def cost_section(cost: Mapping[str, Mapping], peak_gflops: float | None) -> Section:
    """Per step: seconds, block-positions forward/backward, GFLOP, GFLOP/s and fraction of the matmul peak."""
    rows = [
        [
            name,
            c["seconds"],
            "yes" if c.get("cached") else "",
            c.get("forward_block_positions"),
            c.get("backward_block_positions"),
            round(c["gflop_forward"] + c["gflop_backward"], 1) if "gflop_forward" in c else None,
            c.get("gflops"),
            c.get("fraction_of_peak"),
            c.get("seconds_at_peak"),
        ]
        for name, c in cost.items()
    ]
    floor = sum(c.get("seconds_at_peak") or 0.0 for c in cost.values())
    peak = f"{peak_gflops:.0f} GFLOP/s" if peak_gflops else "not timed"
    return Section(
        key="cost",
        title="What this report cost",
        text=(
            "Seconds per step, the transformer work each did (block-positions: one block on one token; a backward "
            "counts once its forward's FLOPs per gradient it computes: inputs, weights) and its rate as a fraction of this machine's float32 matmul peak "
            f"({peak}, a 2048 x 2048 matmul timed at the end of this run). FLOPs count matrix multiplications only, "
            "so a step whose time goes to other work (sampling, sorting, Python) shows a low fraction. Cached steps "
            "did no work in this run. Seconds at peak: the step's counted work at 100% of the peak, a floor no "
            f"implementation of the same work reaches on this machine (the whole report's: {floor:.0f} s)."
        ),
        tables=[
            Table(
                "Cost per step",
                [
                    "step",
                    "seconds",
                    "cached",
                    "forward block-positions",
                    "backward block-positions",
                    "GFLOP",
                    "GFLOP/s",
                    "fraction of peak",
                    "seconds at peak",
                ],
                rows,
            )
        ],
    )
