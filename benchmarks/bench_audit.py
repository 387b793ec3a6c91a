"""Seconds of the forgetting audit of the default methods on the testbed ("Is it really gone?").

    python benchmarks/bench_audit.py                 # one timed run of each budget
    python benchmarks/bench_audit.py --repeats 3     # the median of 3 runs, interleaved

The default methods are the report's audited rows at matched forgetting: unlearn all weights, top-0.1%,
random-0.1% (audited only if it reaches the level), gradient ascent on all weights (the report's
`unlearn_baselines`), LoReFT and decoding-time unlearning (the testbed's
companion), each target in its own run, on the report's first 2 MEM targets, their rates calibrated
once first (not timed: that is the unlearning step's work, printed apart). Then two budgets are timed:
the report step's (`interp.report.steps.audit.REPORT_AUDIT`, 16 never-known paragraphs, 4 retain) and
`interp audit`'s defaults (`AuditConfig()`, 32 never-known, 10 retain). Targets of 10 minutes (the
`interp audit` of the default methods) and 2 minutes (the report's step) are printed beside them.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from harness import Method, Session, add_arguments  # noqa: E402

from interp.audit import AuditConfig, audit  # noqa: E402
from interp.memorization import choose_sets, heldout_indices, memorization_split  # noqa: E402
from interp.models import load_model  # noqa: E402
from interp.report.steps.audit import RELEARN_RETAIN, REPORT_AUDIT, proxy_row  # noqa: E402
from interp.testbed import testbed_paragraphs  # noqa: E402
from interp.unlearning import UnlearnConfig, calibrate  # noqa: E402
from interp.unlearning.reft import ReftConfig  # noqa: E402

TARGETS, RETAIN_PER_RUN = 2, 10


def calibrated_runs(model, targets, retain) -> dict[str, list]:
    """Each default method at its calibrated rate, one run per target: name -> [(model, hooks)]."""
    configs = [
        UnlearnConfig(method="unlearn", select=s, lr=1e-3, steps=10, weight_decay=1.0)
        for s in ("all", "topk", "random")
    ]
    configs += [UnlearnConfig(method="ga", select="all", lr=1e-3, steps=10, weight_decay=1.0)]
    configs += [ReftConfig(method="unlearn"), proxy_row(model, "auto")]
    runs = {}
    for config in configs:
        start = time.perf_counter()
        search = calibrate(model, targets, retain, config, retain_per_run=RETAIN_PER_RUN)
        print(f"  calibrated {config.label} in {time.perf_counter() - start:.0f} s: {search.describe()}", flush=True)
        if not search.reached:
            continue
        tuned = replace(config, lr=search.lr)
        runs[config.label] = []
        for i in range(len(targets)):
            kept = retain.select(range(i * RETAIN_PER_RUN, (i + 1) * RETAIN_PER_RUN))
            result = tuned.run(model, targets.select([i]), kept)
            runs[config.label].append((result.model, result.hooks()))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(repeats=1)
    args = parser.parse_args(argv)
    session = Session("bench_audit", args)
    model = load_model("testbed")
    paragraphs = testbed_paragraphs()
    split = memorization_split(model, paragraphs, n_examples=0)
    mem, nmem = choose_sets(split, paragraphs, n_mem=16, n_nmem=64, seed=0)  # the report's default sets
    targets, retain = mem.select(range(TARGETS)), nmem.select(range(TARGETS * RETAIN_PER_RUN))
    held = heldout_indices(split)
    held = held[split.scores.em[held] <= split.nmem_max]
    runs = calibrated_runs(model, targets, retain)
    print(f"auditing {', '.join(runs)} on {len(targets)} target(s), one run each", flush=True)
    budgets = {
        "report step": (REPORT_AUDIT, 16, RELEARN_RETAIN),
        "interp audit defaults": (AuditConfig(), 32, 10),
    }

    def job(config: AuditConfig, n_never_known: int, n_retain: int):
        def run():
            return audit(
                model,
                runs,
                targets,
                paragraphs.select(held[:n_never_known]),
                retain=retain.select(range(n_retain)),
                pool=paragraphs,
                config=config,
            )

        return run

    timings = session.time([Method(name, job(*b)) for name, b in budgets.items()], warmup=False)
    print(timings["report step"].result.format())
    for name, limit in (("report step", 120), ("interp audit defaults", 600)):
        config, k, r = budgets[name]
        session.report_alone(
            f"audit of {len(runs)} methods x {len(targets)} targets, {name}",
            timings[name],
            target_s=limit,
            budgets=f"relearning {config.relearn_steps} steps at {config.relearn_lr:g} on <= {config.related_limit} "
            f"related / {r} retain paragraphs, {config.perturb_k} prefix edits, shifts {config.shifts}, {k} never-known",
            threads=torch.get_num_threads(),
        )
    session.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
