"""`merge_scans`: combine the outputs of `--shard K/N` scans into the one file a single scan writes.

MEM and intermediate records are disjoint across shards (each document is in one shard) and are
copied through, streamed. The NMEM controls are a bottom-k sample by key in every shard, so the
k smallest keys over all shards are exactly the sample one unsharded scan would have kept. The
recall audit samples windows by key too, so its summed counts are the unsharded scan's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from interp.errors import UserError
from interp.io import write_json
from interp.scan.engine import N_EXAMPLES, N_LONGEST, OutputPaths, ScanSummary


def _load_summary(path: Path) -> ScanSummary:
    paths = OutputPaths(path)
    if not path.is_file():
        raise UserError(f"shard output {path} does not exist")
    if not paths.summary.is_file():
        raise UserError(
            f"{path} has no summary beside it ({paths.summary.name}): is it a finished `interp scan` output?"
        )
    return ScanSummary.from_json(json.loads(paths.summary.read_text()))


def _add(a: dict, b: dict) -> dict:
    return {k: _add(a.get(k, {}), v) if isinstance(v, dict) else a.get(k, 0) + v for k, v in b.items()}


def _longest(items, n: int) -> tuple:
    return tuple(sorted(items, key=lambda s: (-s["tokens"], s["source"], s["start"]))[:n])


def merge_scans(inputs: list[str | Path], out: str | Path, force: bool = False, partial: bool = False) -> ScanSummary:
    """Merge shard outputs of one scan into `out` (atomically) and its summary; return the summary.

    All shards must come from the same model and options; every shard 1..N must be present
    unless `partial` (then the summary lists the shards it covers).
    """
    out = Path(out)
    if not inputs:
        raise UserError("give the shard outputs to merge")
    if out.exists() and not force:
        raise UserError(f"{out} exists: pass --force to replace it")
    paths = [Path(p) for p in inputs]
    if out.resolve() in {p.resolve() for p in paths}:
        raise UserError(f"--out {out} is one of the inputs; write the merge elsewhere")
    summaries = [_load_summary(p) for p in paths]
    first = summaries[0]
    for p, s in zip(paths, summaries):
        if (s.model, s.config) != (first.model, first.config):
            raise UserError(
                f"{p} was scanned with another model or other options than {paths[0]}: merge only shards of one scan"
            )
    shards = sorted(sh for s in summaries for sh in s.shards)
    if len(set(shards)) < len(shards):
        raise UserError(f"a shard appears twice among the inputs: {shards}")
    ns = {n for _, n in shards}
    if len(ns) > 1:
        raise UserError(f"the inputs split the corpus in different ways (N = {sorted(ns)})")
    n = ns.pop()
    missing = sorted(set(range(1, n + 1)) - {k for k, _ in shards})
    if missing and not partial:
        raise UserError(
            f"shards {', '.join(f'{k}/{n}' for k in missing)} are missing: merge them too, "
            "or pass --partial to merge what is there"
        )
    k = first.config["n_controls"]
    controls: list[tuple[int, str]] = []
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w") as fh:
        for p in paths:
            with p.open() as src:
                for line in src:
                    rec = json.loads(line)
                    if rec["kind"] == "nmem":
                        controls.append((int(rec["sample_key"]), line))
                    else:
                        fh.write(line)
        controls.sort()
        for _, line in controls[:k]:
            fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(out)
    total: dict = {}
    for s in summaries:
        total = _add(
            total,
            {
                "documents": s.documents,
                "tokens": s.tokens,
                "windows": s.windows,
                "windows_scored": s.windows_scored,
                "chunks_screened": s.chunks_screened,
                "forward_tokens": s.forward_tokens,
                "mem_windows": s.mem_windows,
                "mem_spans": s.mem_spans,
                "intermediate": s.intermediate,
                "filtered": s.filtered,
                "screen_recall": s.screen_recall,
                "seconds": s.seconds,
            },
        )
    summary = ScanSummary(
        out=str(out),
        model=first.model,
        mode=first.mode,
        shards=tuple(shards),
        config=first.config,
        nmem=min(k, len(controls)),
        filtered_examples=_longest([e for s in summaries for e in s.filtered_examples], N_EXAMPLES),
        longest_spans=_longest([e for s in summaries for e in s.longest_spans], N_LONGEST),
        skipped_binary=first.skipped_binary,
        **total,
    )
    write_json(OutputPaths(out).summary, summary.to_json())
    return summary
