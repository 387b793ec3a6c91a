"""Run one testbed probe: a build with config overrides into /tmp/probes/NAME, then a fine sweep of
k (tokens of held-out text before each planted paragraph). Prints one JSON summary line.

    python analyses/testbed_probe.py NAME '{"n_layers": 4, "stream_tokens": 450000}' [--two-slots] [--sweep-step 5]

--two-slots replaces the uniform placement by the earlier probes' scheme (every copy sequence holds
two copies, gaps before / between / after drawn uniformly; start offsets 57..99 never occur), to
test why those probes lost recall at k = 64.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from interp.testbed import build


def two_slot_placement(cfg, n_copies, rng):
    L, free = cfg.seq_len, cfg.context - 2 * cfg.seq_len
    perm = rng.permutation(n_copies)
    offsets = np.zeros(n_copies, dtype=np.int64)
    units = []
    for a, b in zip(perm[0::2], perm[1::2]):
        cuts = np.sort(rng.choice(free + 2, size=2, replace=False))  # stars and bars: g0 + g1 + g2 = free
        g0, g1 = cuts[0], cuts[1] - cuts[0] - 1
        offsets[a], offsets[b] = g0, g0 + L + g1
        units.append((int(a), int(b)))
    if n_copies % 2:
        offsets[perm[-1]] = rng.integers(0, cfg.context - L + 1)
        units.append((int(perm[-1]),))
    return offsets, units


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("overrides", default="{}")
    ap.add_argument("--two-slots", action="store_true")
    ap.add_argument("--sweep-step", type=int, default=5)
    args = ap.parse_args()
    over = json.loads(args.overrides)
    if "planted" in over:
        over["planted"] = tuple(tuple(x) for x in over["planted"])
    cfg = replace(build.TestbedConfig(), **over)
    if args.two_slots:
        build.draw_placement = two_slot_placement
        cfg = replace(cfg, margin=0)
    root = Path("/tmp/probes") / args.name
    t0 = time.time()
    meta = build.build_testbed(root / "out", cfg, work_dir=root / "work")

    from interp import load_model, testbed_paragraphs
    from interp.position import position_robustness

    model = load_model(str(root / "out"), device="cpu")
    paras = testbed_paragraphs(path=root / "out")
    split = paras.meta["split"]
    planted = paras.select([i for i, s in enumerate(split) if s == "planted"])
    filler = paras.select([i for i, s in enumerate(split) if s == "heldout"]).tokens
    ks = tuple(range(0, cfg.context - cfg.seq_len + 1, args.sweep_step))
    sweep = position_robustness(model, planted, filler=filler, ks=ks, seed=cfg.seed)
    counts = torch.tensor(planted.counts)
    full = sweep.em == cfg.continuation_len
    sweep_by_count = {str(c): [int(full[i][counts == c].sum()) for i in range(len(sweep.ks))] for c, _ in cfg.planted}
    rob = meta["position_robustness"]
    summary = {
        "name": args.name,
        "two_slots": args.two_slots,
        "overrides": over,
        "tokens": meta["training"]["tokens"],
        "planted_share": round(meta["data"]["planted_share"], 3),
        "stream_tokens_trained": meta["data"]["stream_tokens_trained"],
        "train_minutes": round(meta["training"]["train_seconds"] / 60, 1),
        "wall_minutes": round((time.time() - t0) / 60, 1),
        "final_loss": round(meta["training"]["final_loss"], 3),
        "n_mem": meta["n_mem"],
        "fraction_once_em_le_10": meta["fraction_once_em_le_10"],
        "heldout_mean_em": meta["memorization_by_count"]["0"]["mean_em"],
        "mem_by_count": {
            c: [v["n_memorized"], v["n"], round(v["mean_em"], 1)] for c, v in meta["memorization_by_count"].items()
        },
        "share_kept": {r["k"]: round(r["share_kept"], 3) for r in rob["table"]},
        "em_full_by_count_k": {str(r["count"]): {} for r in rob["by_count"]},
        "offsets": meta["data"]["offsets"],
        "sweep_ks": list(sweep.ks),
        "sweep_em_full_by_count": sweep_by_count,
        "load_average": [meta["training"]["load_average_start"][0], meta["training"]["load_average_end"][0]],
    }
    for r in rob["by_count"]:
        summary["em_full_by_count_k"][str(r["count"])][r["k"]] = r["n_em_full"]
    (root / "summary.json").write_text(json.dumps(summary))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
