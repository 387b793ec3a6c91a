"""Scan benchmarks: what the default scan finds of what --exact finds, at what cost, in one run.

The corpus: every planted paragraph of the model's paragraph set is written INTO an unrelated
corpus file (a stdlib file that is no planted paragraph's source) at a uniformly random token
offset, seeded; documents are token lists (JSONL), so the planted tokens are exactly there.

design: the recall/cost table. Slices of host files (--slice-len tokens, the paragraph at a
  random offset inside) plus slices of files with nothing planted. `--exact` and the default scan
  run end to end (tokens/s, their speed ratio, the recall audit's verdict); then each candidate
  screen runs over the same corpus: the stitched screen this project had before (chunks of W
  every C tokens), the aligned screen at several steps and tolerances. For each: forward tokens
  per corpus token (screen + exact verification of what it flags), the share of the exact MEM
  windows it flags, and the share of planted paragraphs MEM at their offset that it flags.
  `--toy` runs it on the rotary GPT-NeoX model tests/test_scan.py trains (its own corpus).
speed: `--exact` and the default scan over the same planted corpus, timed with benchmarks/harness.py
  (load check, >= 3 interleaved rounds, medians and ranges, corpus tokens/s, forward tokens per
  corpus token, the default's share of --exact's MEM windows, the matmul peak of the same run);
  benchmarks/run_all.py runs this.
proof: the planted-truth proof. Whole host files with the paragraphs inside, scanned with the
  default settings; per repeat count: planted, MEM by `interp memorized` (the paragraph fed
  alone, which is --exact's verdict on the window at its offset), found by the scan, recall;
  MEM spans elsewhere; cost and tokens/s.

Every run prints a float32 matmul GFLOP/s measured in the same process, for scale.

    python benchmarks/bench_scan.py design [--slices 32] [--model testbed|CHECKPOINT_DIR] [--out DIR]
    python benchmarks/bench_scan.py design --toy
    python benchmarks/bench_scan.py speed [--slices 32] [--repeats 3] [--json OUT]
    python benchmarks/bench_scan.py proof [--model testbed|CHECKPOINT_DIR] [--limit N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sysconfig
import time
from pathlib import Path

import torch
from harness import Method, Session, add_arguments, matmul_gflops

from interp import load_model, score_paragraphs, testbed_paragraphs
from interp.data import Paragraphs
from interp.io import write_json
from interp.models import TESTBED_DIR
from interp.scan import ScanConfig, resolve_corpus, scan_corpus, screen_windows
from interp.testbed.build import stdlib_files

ROOT = Path(sysconfig.get_paths()["stdlib"])


def load_note() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def planted_corpus(tokenizer, planted: Paragraphs, *, seed: int, slice_len: int | None, n_background: int = 0):
    """Documents (token lists) with each planted paragraph at a uniformly random token offset of a
    host file that is no planted paragraph's source; whole hosts, or `slice_len`-token slices of
    them. Returns the documents and, per planted paragraph, (document index, offset)."""
    rng = random.Random(seed)
    sources = set(planted.meta.get("source") or ())
    hosts = [f for f in stdlib_files() if str(f.relative_to(ROOT)) not in sources]
    rng.shuffle(hosts)
    W = planted.tokens.shape[1]
    docs, where, names = [], [], []
    encode = lambda f: tokenizer.encode(f.read_text(encoding="utf-8", errors="replace"), add_special_tokens=False)  # noqa: E731
    for i in range(len(planted)):
        host = encode(hosts[i % len(hosts)])
        if slice_len is not None:
            start = rng.randrange(0, max(1, len(host) - (slice_len - W)))
            host = host[start : start + slice_len - W]
        at = rng.randrange(0, len(host) + 1)
        docs.append(host[:at] + planted.tokens[i].tolist() + host[at:])
        where.append((len(docs) - 1, at))
        names.append(str(hosts[i % len(hosts)].relative_to(ROOT)))
    for f in hosts[len(planted) : len(planted) + n_background]:
        toks = encode(f)
        start = rng.randrange(0, max(1, len(toks) - (slice_len or len(toks))))
        docs.append(toks[start : start + slice_len] if slice_len else toks)
        names.append(str(f.relative_to(ROOT)))
    return docs, where, names


def model_and_planted(args):
    """The model and its planted paragraphs: the shipped testbed, or a testbed-style checkpoint
    folder (metadata.json + paragraphs.jsonl beside the weights, e.g. a testbed built elsewhere)."""
    model = load_model(args.model, device=args.device)
    folder = TESTBED_DIR if args.model == "testbed" else Path(args.model)
    if not (folder / "paragraphs.jsonl").is_file():
        raise SystemExit(f"{args.model}: no paragraphs.jsonl with planted paragraphs beside it (or use --toy)")
    return model, testbed_paragraphs(("planted",), path=folder)


def write_corpus(path: Path, docs: list[list[int]]) -> Path:
    path.write_text("".join(json.dumps({"tokens": d}) + "\n" for d in docs))
    return path


def mem_windows(path: Path) -> set[tuple[str, int]]:
    out = set()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "mem":
            out |= {(rec["source"], s) for a, b in rec["mem_runs"] for s in range(a, b + 1)}
    return out


@torch.no_grad()
def stitched_screen(model, streams: list[torch.Tensor], prefix_len: int, window_len: int, batch_size: int):
    """The screen this project had before, as a control: chunks of W tokens every C = W - P tokens,
    one hit stream stitched from them; per window, the misses in its continuation."""
    step = window_len - prefix_len
    jobs = [(i, c) for i, x in enumerate(streams) for c in range(0, max(len(x) - prefix_len, 0), step)]
    hits = [torch.zeros(len(x), dtype=torch.bool) for x in streams]
    fwd = 0
    for b in range(0, len(jobs), batch_size):
        batch = jobs[b : b + batch_size]
        segs = [streams[i][c : c + window_len] for i, c in batch]
        rows = torch.zeros(len(segs), max(map(len, segs)), dtype=torch.long)
        for j, s in enumerate(segs):
            rows[j, : len(s)] = s
        ok = (
            model(rows.to(model.cfg.device))[:, prefix_len - 1 : -1].argmax(-1)
            == rows[:, prefix_len:].to(model.cfg.device)
        ).cpu()
        fwd += rows.numel()
        for j, ((i, c), s) in enumerate(zip(batch, segs)):
            hits[i][c + prefix_len : c + len(s)] = ok[j, : len(s) - prefix_len]
    misses = []
    for x, h in zip(streams, hits):
        cum = torch.cat([torch.zeros(1, dtype=torch.long), (~h).long().cumsum(0)])
        s = torch.arange(0, len(x) - window_len + 1)
        misses.append(cum[s + window_len] - cum[s + prefix_len])
    return misses, fwd


def _toy_setup():
    """The rotary model tests/test_scan.py trains, and its corpus (Markov text, paragraphs at random offsets)."""
    import tempfile

    import tests.test_scan as ts

    folder = Path(tempfile.mkdtemp()) / "tok"
    model, paragraphs, succ = ts.train_rotary(ts.toy_tokenizer(folder))
    docs, at = ts.rotary_corpus(succ, paragraphs, n_docs=48, seed=1)
    planted = Paragraphs(
        torch.stack([paragraphs[d % len(paragraphs)] for d in range(len(docs))]),
        ts.P,
        tuple(map(str, range(len(docs)))),
    )
    return model, planted, docs, list(enumerate(at)), ScanConfig(prefix_len=ts.P, continuation_len=ts.C)


def design(args) -> dict:
    t_start = time.time()
    gflops = matmul_gflops()
    print(f"matmul {gflops:.0f} GFLOP/s; {load_note()}")
    if args.toy:
        model, planted, docs, where, base = _toy_setup()
        names = [f"toy{d}" for d in range(len(docs))]
    else:
        model, planted = model_and_planted(args)
        if args.slices and args.slices < len(planted):  # a seeded sample across repeat counts
            planted = planted.select(sorted(random.Random(args.seed).sample(range(len(planted)), args.slices)))
        docs, where, names = planted_corpus(
            model.tokenizer, planted, seed=args.seed, slice_len=args.slice_len, n_background=len(planted) // 2
        )
        base = ScanConfig(prefix_len=planted.prefix_len, continuation_len=planted.continuation_len)
    P, W = base.prefix_len, base.window_len
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus_path = write_corpus(out / "design_corpus.jsonl", docs)
    corpus = resolve_corpus([corpus_path])
    sources = [f"{corpus_path}#{d + 1}" for d in range(len(docs))]
    n_tokens = sum(map(len, docs))
    print(
        f"corpus: {len(docs)} documents, {n_tokens:,} tokens, {len(where)} planted paragraphs at random offsets "
        f"(model {args.model if not args.toy else 'toy rotary'}, n_ctx {model.cfg.n_ctx}, window {P}+{W - P})"
    )
    common = dict(filters=False, n_controls=0)
    runs = {}
    for name, cfg in (
        ("exact", ScanConfig(**{**base.__dict__, **common, "exact": True})),
        ("default", ScanConfig(**{**base.__dict__, **common})),
    ):
        t = time.perf_counter()
        summary = scan_corpus(
            model, corpus, out / f"{name}.jsonl", cfg, force=True, batch_size=args.batch_size, progress=False
        )
        runs[name] = {"seconds": time.perf_counter() - t, "summary": summary, "mem": mem_windows(out / f"{name}.jsonl")}
    exact_mem = runs["exact"]["mem"]
    planted_mem = [(sources[d], at) for d, at in where if (sources[d], at) in exact_mem]
    print(
        f"exact: {len(exact_mem)} MEM windows; planted paragraphs MEM at their offset: {len(planted_mem)}/{len(where)}"
    )
    result = {
        "model": args.model if not args.toy else "toy",
        "tokens": n_tokens,
        "documents": len(docs),
        "planted": len(where),
        "planted_mem": len(planted_mem),
        "exact_mem_windows": len(exact_mem),
        "matmul_gflops": gflops,
        "load": load_note(),
        "end_to_end": {},
        "screens": [],
    }
    for name, r in runs.items():
        s = r["summary"]
        found = len(exact_mem & r["mem"])
        pf = sum(p in r["mem"] for p in planted_mem)
        row = {
            "seconds": r["seconds"],
            "tokens_per_second": n_tokens / r["seconds"],
            "forward_per_token": s.forward_per_token,
            "recall_windows": found / max(1, len(exact_mem)),
            "recall_planted": pf / max(1, len(planted_mem)),
            "recall_audit": s.recall,
        }
        result["end_to_end"][name] = row
        print(
            f"{name:8s} {r['seconds']:7.1f} s  {row['tokens_per_second']:8.0f} tokens/s  "
            f"{s.forward_per_token['scan']:6.2f} forward tokens per corpus token  "
            f"MEM windows {found}/{len(exact_mem)}  planted {pf}/{len(planted_mem)}"
        )
    ratio = runs["exact"]["seconds"] / runs["default"]["seconds"]
    print(f"default vs exact: speed x{ratio:.1f}")
    print(f"default's recall audit: {runs['default']['summary'].recall['message']}")
    result["speedup_default_vs_exact"] = ratio
    result["screens"] = screen_table(model, docs, sources, exact_mem, planted_mem, base, args)
    result["seconds"] = time.time() - t_start
    write_json(out / "bench_design.json", result)
    return result


def speed(args) -> None:
    """--exact vs the default scan on the planted corpus, interleaved rounds (benchmarks/harness.py)."""
    session = Session("bench_scan", args)
    model, planted = model_and_planted(args)
    if args.slices and args.slices < len(planted):
        planted = planted.select(sorted(random.Random(args.seed).sample(range(len(planted)), args.slices)))
    docs, where, _ = planted_corpus(
        model.tokenizer, planted, seed=args.seed, slice_len=args.slice_len, n_background=len(planted) // 2
    )
    base = ScanConfig(prefix_len=planted.prefix_len, continuation_len=planted.continuation_len)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = resolve_corpus([write_corpus(out / "speed_corpus.jsonl", docs)])
    n_tokens = sum(map(len, docs))
    summaries = {}

    def scan(name: str, cfg: ScanConfig):
        def run():
            summaries[name] = scan_corpus(
                model, corpus, out / f"{name}.jsonl", cfg, force=True, batch_size=args.batch_size, progress=False
            )
            return mem_windows(out / f"{name}.jsonl")

        return run

    common = {**base.__dict__, "filters": False, "n_controls": 0}
    methods = [
        Method("exact scan", scan("exact", ScanConfig(**{**common, "exact": True})), tokens=n_tokens),
        Method("default scan", scan("default", ScanConfig(**common)), tokens=n_tokens),
    ]
    print(f"corpus: {len(docs)} documents, {n_tokens:,} tokens, {len(where)} planted paragraphs", flush=True)
    timings = session.time(methods, warmup=False)
    exact_mem, default_mem = timings["exact scan"].result, timings["default scan"].result
    session.report(
        f"testbed scan: {n_tokens:,} corpus tokens, {len(where)} planted",
        timings,
        baseline="exact scan",
        candidate="default scan",
        forward_tokens_per_corpus_token={k: round(v.forward_per_token["scan"], 2) for k, v in summaries.items()},
        default_finds_of_exact_mem_windows=f"{len(exact_mem & default_mem)}/{len(exact_mem)}",
    )
    session.finish()


def screen_table(model, docs, sources, exact_mem, planted_mem, base: ScanConfig, args) -> list[dict]:
    """Recall and cost of each candidate screen over the same corpus, against the exact MEM windows."""
    P, W = base.prefix_len, base.window_len
    streams = [torch.tensor(d) for d in docs]
    n_tokens = sum(map(len, docs))
    grids = [torch.arange(0, max(0, len(x) - W + 1)) for x in streams]
    widest = model.cfg.n_ctx - W + 1
    steps = sorted({s for s in args.steps if s <= widest} | {widest})
    candidates = [("stitched (before)", None)] + [(f"aligned step {s}", s) for s in steps]
    rows = []
    print(
        f"{'screen':22s} {'tol':>3s} {'fwd/token':>9s} {'screen':>7s} {'verify':>7s} {'MEM windows':>14s} "
        f"{'planted':>9s} {'screen fwd tok/s':>16s}"
    )
    for name, step in candidates:
        t = time.perf_counter()
        if step is None:
            misses, fwd = stitched_screen(model, streams, P, W, args.batch_size)
        else:
            res = screen_windows(
                model, streams, grids, prefix_len=P, window_len=W, step=step, batch_size=args.batch_size
            )
            misses, fwd = res.misses, res.forward_tokens
        seconds = time.perf_counter() - t
        for tol in args.tolerances:
            flagged = {(src, int(s)) for src, g, m in zip(sources, grids, misses) for s in g[m <= tol]}
            found = len(flagged & exact_mem)
            pf = sum(p in flagged for p in planted_mem)
            row = {
                "screen": name,
                "step": step,
                "tolerance": tol,
                "screen_per_token": fwd / n_tokens,
                "verify_per_token": W * len(flagged) / n_tokens,
                "forward_per_token": (fwd + W * len(flagged)) / n_tokens,
                "recall_windows": found / max(1, len(exact_mem)),
                "recall_planted": pf / max(1, len(planted_mem)),
                "screen_forward_tokens_per_second": fwd / seconds,
            }
            rows.append(row)
            print(
                f"{name:22s} {tol:3d} {row['forward_per_token']:9.2f} {row['screen_per_token']:7.2f} "
                f"{row['verify_per_token']:7.2f} {found:6d}/{len(exact_mem):<7d} {pf:4d}/{len(planted_mem):<4d} "
                f"{row['screen_forward_tokens_per_second']:16.0f}"
            )
    print(
        "(the default adds its recall audit: recall-sample x window = "
        f"{base.recall_sample * W:.2f} forward tokens per corpus token)"
    )
    return rows


def proof(args) -> dict:
    t_start = time.time()
    gflops = matmul_gflops()
    print(f"matmul {gflops:.0f} GFLOP/s; {load_note()}")
    model, planted = model_and_planted(args)
    if args.limit:
        planted = planted.select(range(min(args.limit, len(planted))))
    scores = score_paragraphs(model, planted)  # what `interp memorized` computes: the paragraph fed alone
    docs, where, names = planted_corpus(model.tokenizer, planted, seed=args.seed, slice_len=None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus_path = write_corpus(out / "proof_corpus.jsonl", docs)
    write_json(
        out / "proof_manifest.json",
        [
            {
                "document": d + 1,
                "host": names[d],
                "paragraph": planted.ids[i],
                "copies": planted.counts[i],
                "offset": at,
            }
            for i, (d, at) in enumerate(where)
        ],
    )
    config = ScanConfig(prefix_len=planted.prefix_len, continuation_len=planted.continuation_len)
    summary = scan_corpus(
        model,
        resolve_corpus([corpus_path]),
        out / "proof_scan.jsonl",
        config,
        force=True,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    mem = mem_windows(out / "proof_scan.jsonl")
    found = [(f"{corpus_path}#{d + 1}", at) in mem for d, at in where]
    C = planted.continuation_len
    per = summary.forward_per_token
    print(
        f"scan (default settings): {summary.documents} files, {summary.tokens:,} tokens, {summary.mem_spans} MEM spans "
        f"({summary.mem_windows} windows), {summary.seconds:.0f} s = {summary.tokens_per_second:,.0f} tokens/s, "
        f"{per['scan']:.2f} forward tokens per corpus token (screen {per['screen']:.2f}, verify {per['verify']:.2f}, "
        f"audit {per['audit']:.2f})"
    )
    print(summary.recall["message"])
    print(f"{'copies':>6} {'planted':>8} {'MEM (memorized)':>16} {'found by scan':>14} {'recall of MEM':>14}")
    table = []
    counts = torch.tensor(planted.counts)
    for c in sorted(set(planted.counts), reverse=True):
        sel = (counts == c).nonzero().flatten().tolist()
        is_mem = [int(scores.em[i]) == C for i in sel]
        mem_found = sum(found[i] for i, m in zip(sel, is_mem) if m)
        row = {
            "copies": c,
            "planted": len(sel),
            "memorized_mem": sum(is_mem),
            "found": sum(found[i] for i in sel),
            "mem_found": mem_found,
            "recall_of_mem": mem_found / sum(is_mem) if any(is_mem) else None,
        }
        table.append(row)
        print(f"{c:>6} {len(sel):>8} {sum(is_mem):>16} {row['found']:>14} {mem_found:>7}/{sum(is_mem):<6}")
    n_mem = sum(r["memorized_mem"] for r in table)
    n_found = sum(r["mem_found"] for r in table)
    wrong = sum(f and int(e) < C for f, e in zip(found, scores.em.tolist()))
    print(
        f"planted paragraphs MEM when fed alone: {n_mem}; found by the default scan at their random offsets: "
        f"{n_found} = {n_found / max(1, n_mem):.3f}; found although not MEM alone: {wrong}"
    )
    records = [json.loads(line) for line in (out / "proof_scan.jsonl").read_text().splitlines()]
    spots = {(f"{corpus_path}#{d + 1}", at) for d, at in where}
    W = planted.tokens.shape[1]
    other = [
        r
        for r in records
        if r["kind"] == "mem"
        and not any(src == r["source"] and r["span_start"] < at + W and at < r["span_end"] for src, at in spots)
    ]
    print(f"MEM spans not overlapping a planted copy: {len(other)}")
    for r in sorted(other, key=lambda r: -(r["span_end"] - r["span_start"]))[:10]:
        print(
            f"  {r['span_end'] - r['span_start']:5d} tokens {names[int(r['source'].rsplit('#', 1)[1]) - 1]}"
            f"@{r['span_start']}: {r['span_text'][:80]!r}"
        )
    result = {
        "by_copies": table,
        "planted_mem": n_mem,
        "found": n_found,
        "recall": n_found / max(1, n_mem),
        "found_not_mem": wrong,
        "other_mem_spans": len(other),
        "matmul_gflops": gflops,
        "load": load_note(),
        "scan_summary": summary.to_json(),
        "seconds": time.time() - t_start,
    }
    write_json(out / "bench_proof.json", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("design")
    s = sub.add_parser("speed")
    p = sub.add_parser("proof")
    add_arguments(s)
    for q in (d, s):
        q.add_argument("--slices", type=int, default=32, help="planted paragraphs to use (0 = all)")
        q.add_argument("--slice-len", type=int, default=400, help="tokens per document, planted paragraph included")
    d.add_argument("--toy", action="store_true", help="the rotary model and corpus of tests/test_scan.py")
    d.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50], help="aligned screen steps to try")
    d.add_argument("--tolerances", type=int, nargs="+", default=[0, 2], help="screen tolerances to try")
    p.add_argument("--limit", type=int, default=0, help="use only the first N planted paragraphs (0 = all)")
    p.add_argument("--quiet", action="store_true")
    for q in (d, s, p):
        q.add_argument("--model", default="testbed", help="'testbed' or a testbed-style checkpoint folder")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--batch-size", type=int, default=64)
        q.add_argument("--out", default="out/bench_scan")
        q.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.what == "proof":
        proof(args)
    elif args.what == "speed":
        speed(args)
    else:
        design(args)


if __name__ == "__main__":
    main()
