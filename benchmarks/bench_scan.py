"""Scan benchmarks on the testbed, each measured in one run.

speed: the screen against the exhaustive (--exact, stride 1) scan on one sample: tokens/s of
  each (median of --repeats runs, interleaved, after a load check; see benchmarks/harness.py),
  their ratio, and the screen's recall of the exhaustive scan's MEM windows. The sample is
  token slices around planted paragraphs repeated 128 and 64 times (where MEM windows are),
  starting at a random phase so the planted window does not start a screening chunk, plus
  slices of random files the planted text is not in.
proof: given an `interp scan` output of testbed corpus files, the recall of the planted
  paragraphs per repeat count (found = the window at the paragraph's file offset is MEM), whether
  every planted paragraph `interp memorized` calls MEM was found, and what else was found.

    python benchmarks/bench_scan.py speed [--slices 8] [--out DIR]
    python benchmarks/bench_scan.py proof SCAN.jsonl [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sysconfig
from pathlib import Path

import torch
from harness import Method, Session, add_arguments

from interp import load_model, score_paragraphs, testbed_paragraphs
from interp.io import write_json
from interp.scan import ScanConfig, resolve_corpus, scan_corpus
from interp.testbed.build import stdlib_files

ROOT = Path(sysconfig.get_paths()["stdlib"])


def _mem_windows(path: Path) -> set[tuple[str, int]]:
    out = set()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "mem":
            out |= {(rec["source"], s) for a, b in rec["mem_runs"] for s in range(a, b + 1)}
    return out


def speed(args) -> dict:
    session = Session("bench_scan speed", args)
    model = load_model("testbed", device=args.device)
    tok = model.tokenizer
    planted = testbed_paragraphs(("planted",))
    rng = random.Random(0)
    docs, meta = [], []
    for copies in (128, 64):
        idx = [i for i, c in enumerate(planted.counts) if c == copies and planted.meta["offset"][i] >= 200]
        for i in rng.sample(idx, args.slices):
            src, off = planted.meta["source"][i], planted.meta["offset"][i]
            toks = tok.encode((ROOT / src).read_text(encoding="utf-8", errors="replace"), add_special_tokens=False)
            start = off - 150 + rng.randrange(1, 50)  # planted window mid-chunk (chunks start every 50 tokens)
            docs.append(toks[start : start + 400])
            meta.append({"source": src, "slice_start": start, "planted_at": off - start, "copies": copies})
    planted_files = set(planted.meta["source"])
    others = [f for f in stdlib_files() if str(f.relative_to(ROOT)) not in planted_files]
    for f in rng.sample(others, args.slices):
        toks = tok.encode(f.read_text(encoding="utf-8", errors="replace"), add_special_tokens=False)
        start = rng.randrange(0, max(1, len(toks) - 400))
        docs.append(toks[start : start + 400])
        meta.append({"source": str(f.relative_to(ROOT)), "slice_start": start, "planted_at": None, "copies": 0})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus_path = out / "bench_corpus.jsonl"
    corpus_path.write_text("".join(json.dumps({"tokens": d}) + "\n" for d in docs))
    corpus = resolve_corpus([corpus_path])
    n_tokens = sum(map(len, docs))
    print(f"sample: {len(docs)} slices, {n_tokens} tokens ({args.slices} around 128x, {args.slices} around 64x planted "
          f"paragraphs, {args.slices} from other files)")
    configs = {"exact": ScanConfig(exact=True, n_controls=100), "screen": ScanConfig(n_controls=100, recall_sample=0.0),
               "screen_tol2": ScanConfig(n_controls=100, recall_sample=0.0, screen_tolerance=2)}
    runs = {}

    def method(name: str, cfg: ScanConfig) -> Method:
        def run():
            summary = scan_corpus(model, corpus, out / f"{name}.jsonl", cfg, force=True, batch_size=args.batch_size, progress=False)
            return summary, _mem_windows(out / f"{name}.jsonl")
        return Method(name, run, tokens=n_tokens)

    timings = session.time([method(name, cfg) for name, cfg in configs.items()], warmup=False)
    for name, t in timings.items():
        summary, mem = t.result
        runs[name] = {"seconds": t.median, "summary": summary, "mem": mem}
        print(f"{name:12s} {t.median:8.1f} s  {n_tokens / t.median:9.1f} tokens/s  "
              f"{summary.windows_scored} windows scored exactly, {summary.chunks_screened} chunks screened, "
              f"{len(mem)} MEM windows")
    for name in ("screen", "screen_tol2"):
        found = len(runs["exact"]["mem"] & runs[name]["mem"])
        session.report(f"scan of {len(docs)} testbed slices ({n_tokens} tokens)", timings, baseline="exact", candidate=name,
                       show_methods=name == "screen", recall_of_exact_mem=f"{found}/{len(runs['exact']['mem'])}")
    exact_mem = runs["exact"]["mem"]
    result = {"device": str(model.cfg.device), "tokens": n_tokens, "slices": meta, "runs": {}}
    for name, r in runs.items():
        found = len(exact_mem & r["mem"])
        result["runs"][name] = {"seconds": r["seconds"], "tokens_per_second": n_tokens / r["seconds"],
                                "speedup_vs_exact": runs["exact"]["seconds"] / r["seconds"],
                                "mem_windows": len(r["mem"]), "recall_of_exact_mem": found / max(1, len(exact_mem)),
                                "extra_mem_windows": len(r["mem"] - exact_mem)}
        print(f"{name:12s} speed x{result['runs'][name]['speedup_vs_exact']:.1f} vs exact, recall of exact MEM windows "
              f"{found}/{len(exact_mem)} = {found / max(1, len(exact_mem)):.3f}")
    sources = [f"{corpus_path}#{i + 1}" for i in range(len(docs))]
    for name in ("exact", "screen"):
        hit = sum((sources[i], m["planted_at"]) in runs[name]["mem"] for i, m in enumerate(meta) if m["planted_at"] is not None)
        result["runs"][name]["planted_windows_found"] = hit
        print(f"{name:12s} planted windows (mid-chunk) found as MEM: {hit}/{2 * args.slices}")
    write_json(out / "bench_speed.json", result)
    session.finish()
    return result


def proof(args) -> dict:
    model = load_model("testbed", device=args.device)
    planted = testbed_paragraphs(("planted",))
    scores = score_paragraphs(model, planted)  # what `interp memorized` computes for these paragraphs
    mem = _mem_windows(Path(args.scan))
    records = [json.loads(line) for line in Path(args.scan).read_text().splitlines()]
    scanned = {r["source"] for r in records}
    summary = json.loads(Path(args.scan).with_name(Path(args.scan).stem + ".summary.json").read_text())
    found = [(planted.meta["source"][i], planted.meta["offset"][i]) in mem for i in range(len(planted))]
    print(f"scan: {summary['documents']} files, {summary['tokens']:,} tokens, {summary['mem_spans']} MEM spans "
          f"({summary['mem_windows']} windows), {summary['seconds']:.0f} s = {summary['tokens_per_second']:.0f} tokens/s")
    print(f"{'copies':>6} {'planted':>8} {'memorized calls MEM':>20} {'found by scan':>14} {'recall':>7} {'recall of MEM':>14}")
    table = []
    counts = torch.tensor(planted.counts)
    for c in sorted(set(planted.counts), reverse=True):
        sel = (counts == c).nonzero().flatten().tolist()
        is_mem = [int(scores.em[i]) == 50 for i in sel]
        f = [found[i] for i in sel]
        mem_found = sum(a and b for a, b in zip(is_mem, f))
        row = {"copies": c, "planted": len(sel), "memorized_mem": sum(is_mem), "found": sum(f),
               "recall": sum(f) / len(sel), "mem_found": mem_found}
        table.append(row)
        print(f"{c:>6} {len(sel):>8} {sum(is_mem):>20} {sum(f):>14} {row['recall']:>7.3f} "
              f"{mem_found}/{sum(is_mem)}")
    all_mem_found = all(r["mem_found"] == r["memorized_mem"] for r in table)
    not_mem_found = sum(found[i] and int(scores.em[i]) < 50 for i in range(len(planted)))
    print(f"every planted paragraph `interp memorized` calls MEM was found: {all_mem_found}; "
          f"found although not MEM there: {not_mem_found}")
    planted_spans = {}
    for i in range(len(planted)):
        planted_spans.setdefault(planted.meta["source"][i], []).append(planted.meta["offset"][i])
    other = [r for r in records if r["kind"] == "mem" and not any(
        r["span_start"] < o + 100 and o < r["span_end"] for o in planted_spans.get(r["source"], []))]
    print(f"MEM spans not overlapping a planted paragraph: {len(other)}")
    for r in sorted(other, key=lambda r: -(r["span_end"] - r["span_start"]))[:15]:
        print(f"  {r['span_end'] - r['span_start']:5d} tokens {r['source']}@{r['span_start']}: {r['span_text'][:90]!r}")
    print("filters dropped:", summary["filtered"])
    for e in summary["filtered_examples"][:5]:
        print(f"  dropped {e['tokens']} tokens {e['source']}@{e['start']}: {e['text'][:90]!r}")
    result = {"by_copies": table, "all_memorized_mem_found": all_mem_found, "files_with_records": len(scanned),
              "other_mem_spans": [{k: r[k] for k in ("source", "span_start", "span_end", "nll", "span_text")} for r in other],
              "scan_summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench_proof.json", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--slices", type=int, default=8)
    s.add_argument("--batch-size", type=int, default=64)
    add_arguments(s)
    p = sub.add_parser("proof")
    p.add_argument("scan", help="output of `interp scan --model testbed` over testbed corpus files")
    for q in (s, p):
        q.add_argument("--out", default="out/bench_scan")
        q.add_argument("--device", default=None)
    args = parser.parse_args()
    speed(args) if args.what == "speed" else proof(args)


if __name__ == "__main__":
    main()
