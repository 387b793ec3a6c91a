"""`scan_corpus`: find the windows of a corpus a model recites, as a paragraph file.

Documents are gathered into groups of about `group_tokens` tokens so that short documents still
fill a batch; each group is screened (or, with `exact`, scored window by window), its candidates
scored exactly, filtered, merged into spans and appended to a `.partial` file beside the output.
In screen mode a seeded random sample of windows (`recall_sample`) is also scored exactly
whatever the screen says: the recall audit. Its MEM windows, and how many of them the screen
flagged, measure the screen's recall; the summary states it with a 95% interval only when the
audit holds at least `recall_min_mem` MEM windows, and otherwise says that recall is unmeasured
and which --recall-sample would measure it.
After a group the scan records, beside the output, how many documents are done and how long
the partial file is; an interrupted scan resumes from there, cutting off anything written after
that record. The JSONL output appears only once complete (written to a temp file, renamed).

Output records (one JSON object a line, read by `interp.data.load_paragraphs`): "id", "tokens"
(prefix + continuation), "text", "source", "offset" (token offset in the source), "em", "nll",
"log10_p" (the probability that sampling at temperature 1 reproduces the whole continuation, as a
log10: -nll * continuation length / ln 10, the same teacher-forced pass), "kind" ("mem": one record per memorized span, its lowest-NLL window; "nmem": a bottom-k sample
of windows with EM <= nmem_max; "intermediate": on request), plus span fields for MEM records.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.backend import Model
from interp.data import BATCH_SIZE, is_boilerplate, unique_fraction
from interp.errors import UserError
from interp.io import write_json
from interp.models import model_name
from interp.scan.config import ScanConfig
from interp.scan.corpus import Corpus, Document, iter_documents, stable_hash
from interp.scan.windows import Span, merge_spans, sample_keys, score_windows, screen_windows, window_tokens

N_LONGEST = 10
N_EXAMPLES = 10
CHECKPOINT_SECONDS = 10.0
RECALL_TARGET = 0.9  # below this measured recall the summary tells the user to scan exhaustively


@dataclass(frozen=True)
class ScanSummary:
    """What a scan (or a merge of shard scans) saw and found."""

    out: str
    model: str
    mode: str
    shards: tuple[tuple[int, int], ...]
    config: dict
    documents: int
    tokens: int
    windows: int  # window starts considered (on the stride grid)
    windows_scored: int  # windows scored exactly (each one forward of prefix + continuation)
    chunks_screened: int
    forward_tokens: dict  # positions run through the model: screen, verify, audit, controls
    mem_windows: int
    mem_spans: int
    intermediate: int
    nmem: int
    filtered: dict  # reason -> kind -> windows the filters dropped
    filtered_examples: tuple  # the longest memorized spans the filters dropped
    longest_spans: tuple
    screen_recall: dict  # the recall audit: windows scored exactly, MEM among them, MEM the screen flagged
    skipped_binary: tuple
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def forward_per_token(self) -> dict:
        """Forward tokens per corpus token by purpose; "scan" sums screen, verify and audit, which grow
        with the corpus; "all" adds the NMEM sample, a fixed cost of about n_controls windows."""
        per = {k: v / self.tokens if self.tokens else 0.0 for k, v in self.forward_tokens.items()}
        scan = sum(v for k, v in per.items() if k != "controls")
        return {**per, "scan": scan, "all": scan + per.get("controls", 0.0)}

    @property
    def recall(self) -> dict:
        return recall_estimate(self.screen_recall, self.mode, self.config, self.mem_windows)

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "tokens_per_second": self.tokens_per_second,
            "forward_per_token": self.forward_per_token,
            "recall": self.recall,
        }

    @classmethod
    def from_json(cls, obj: dict) -> ScanSummary:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in obj.items() if k in names}
        kw["shards"] = tuple(tuple(s) for s in kw["shards"])
        for key in ("filtered_examples", "longest_spans", "skipped_binary"):
            kw[key] = tuple(kw[key])
        return cls(**kw)

    def lines(self) -> list[str]:
        """A human-readable account, for the terminal."""
        per = self.forward_per_token
        out = [
            f"scanned {self.documents} documents, {self.tokens:,} tokens, {self.windows:,} windows "
            f"({self.mode} mode, {self.windows_scored:,} scored exactly, {self.chunks_screened:,} chunks screened) "
            f"in {self.seconds:.0f} s: {self.tokens_per_second:,.0f} tokens/s",
            "cost: {:.2f} forward tokens per corpus token ({}); the NMEM sample added {:,} forward tokens".format(
                per["scan"],
                ", ".join(f"{k} {per[k]:.2f}" for k in self.forward_tokens if k != "controls"),
                self.forward_tokens.get("controls", 0),
            ),
            f"MEM: {self.mem_windows} windows in {self.mem_spans} spans   NMEM sample: {self.nmem}   "
            f"intermediate: {self.intermediate}",
            self.recall["message"],
        ]
        for reason, kinds in self.filtered.items():
            if any(kinds.values()):
                out.append(f"filter {reason} dropped: " + ", ".join(f"{n} {k}" for k, n in kinds.items() if n))
        if self.skipped_binary:
            out.append(f"skipped {len(self.skipped_binary)} binary files the glob matched")
        if self.longest_spans:
            out.append("longest memorized spans:")
            for s in self.longest_spans:
                out.append(f"  {s['tokens']:6d} tokens  {s['source']} @{s['start']}  {s['text'][:70]!r}")
        return out


def _round_up(x: float) -> float:
    """x rounded up to two significant digits."""
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / scale - 1e-9) * scale


def recall_estimate(counts: dict, mode: str, config: dict, mem_windows: int) -> dict:
    """The screen's recall from the audit counts, with a 95% Clopper-Pearson interval, and a sentence
    for the user: a number only when the audit holds at least `recall_min_mem` MEM windows; otherwise
    that recall is unmeasured and the --recall-sample that would measure it: sized so that the audit
    is expected to hold twice the minimum, from the MEM windows the scan found (a lower bound on
    those in the corpus, so the expectation is a lower bound too)."""
    out = {**counts, "measured": False, "recall": None, "ci95": None}
    if mode == "exact":
        return {**out, "message": "exact mode: every window was scored exactly, nothing can have been missed"}
    rate, need, mem, found = config["recall_sample"], config["recall_min_mem"], counts["mem"], counts["found"]
    if mem >= need:
        from scipy.stats import beta

        low = float(beta.ppf(0.025, found, mem - found + 1)) if found else 0.0
        high = float(beta.ppf(0.975, found + 1, mem - found)) if found < mem else 1.0
        recall = found / mem
        msg = (
            f"screen recall: the screen flagged {found} of the {mem} MEM windows in a random audit of "
            f"{counts['windows']:,} windows scored exactly = {recall:.3f} (95% interval {low:.3f}-{high:.3f})"
        )
        if recall < RECALL_TARGET:
            msg += (
                f"; below {RECALL_TARGET}: the screen misses memorized text on this model, rescan with --exact "
                "(or a smaller --screen-step, a larger --screen-tolerance)"
            )
        return {**out, "measured": True, "recall": recall, "ci95": (low, high), "message": msg}
    total = max(mem_windows, mem)  # MEM windows in the corpus, at least (mem / rate is too noisy when mem is small)
    suggest = _round_up(2 * need / total) if total else 1.0  # expect twice the minimum
    if suggest < 0.5:
        window_len = config["prefix_len"] + config["continuation_len"]
        fix = (
            f"pass --recall-sample {suggest:g} to measure it (the audit then costs about {suggest * window_len:.1f} "
            "forward tokens per corpus token), or scan with --exact"
        )
    elif total:
        fix = "the corpus holds too few MEM windows for a sample to measure recall: scan it with --exact"
    else:
        fix = "if the corpus should hold memorized text, scan it (or one --shard of it) with --exact"
    return {
        **out,
        "message": (
            f"screen recall NOT MEASURED: the recall audit scored {counts['windows']:,} windows exactly "
            f"(--recall-sample {rate:g}) and they hold {mem} MEM window{'s' * (mem != 1)}, fewer than the {need} "
            f"needed to say anything, so the screen may have missed memorized text unseen; {fix}"
        ),
    }


def _new_tally(cfg: ScanConfig) -> dict:
    kinds = {"mem": 0, "intermediate": 0, "nmem": 0}
    return {
        "documents": 0,
        "tokens": 0,
        "windows": 0,
        "windows_scored": 0,
        "chunks_screened": 0,
        "forward_tokens": {"screen": 0, "verify": 0, "audit": 0, "controls": 0}
        if not cfg.exact
        else {"verify": 0, "controls": 0},
        "mem_windows": 0,
        "mem_spans": 0,
        "intermediate": 0,
        "filtered": {"low_unique": dict(kinds), "boilerplate": dict(kinds)} if cfg.filters else {},
        "filtered_examples": [],
        "longest_spans": [],
        "screen_recall": {"windows": 0, "mem": 0, "found": 0},
        "seconds": 0.0,
        "bytes": 0,
    }


def _keep_longest(items: list[dict], new: dict, n: int) -> None:
    items.append(new)
    items.sort(key=lambda s: (-s["tokens"], s["source"], s["start"]))
    del items[n:]


@dataclass
class _Controls:
    """The bottom-k sample of NMEM windows: the k smallest sample keys among eligible windows."""

    k: int
    heap: list = field(default_factory=list)  # (-key, record): the largest key on top

    @property
    def threshold(self) -> int:
        return -self.heap[0][0] if len(self.heap) >= self.k else 1 << 64

    def offer(self, key: int, record: dict) -> None:
        if key >= self.threshold:
            return
        heapq.heappush(self.heap, (-key, record))
        if len(self.heap) > self.k:
            heapq.heappop(self.heap)

    def records(self) -> list[dict]:
        return [rec for _, rec in sorted(self.heap, key=lambda kr: -kr[0])]


@dataclass(frozen=True)
class OutputPaths:
    """The output JSONL and what lives beside it while (and after) a scan runs."""

    out: Path

    @property
    def summary(self) -> Path:
        return self.out.with_name(self.out.stem + ".summary.json")

    @property
    def state(self) -> Path:
        return self.out.with_name(self.out.name + ".scan-state.json")

    @property
    def partial(self) -> Path:
        return self.out.with_name(self.out.name + ".partial")

    def check(self, resume: bool, force: bool) -> str:
        """'fresh', 'resume' or 'done' (complete and --resume): refuses to overwrite without --force."""
        if resume and force:
            raise UserError("--resume and --force contradict each other: pick one")
        if self.out.is_dir():
            raise UserError(f"--out {self.out} is a folder; give a file name such as {self.out / 'scan.jsonl'}")
        if not self.out.parent.exists():
            raise UserError(f"the folder of --out {self.out} does not exist")
        if force:
            return "fresh"
        if self.state.exists():
            if resume:
                return "resume"
            raise UserError(
                f"an interrupted scan of {self.out} is recorded in {self.state}: "
                "pass --resume to continue it or --force to start again"
            )
        if self.out.exists():
            if resume and self.summary.exists():
                return "done"
            raise UserError(f"{self.out} exists: pass --force to replace it (or choose another --out)")
        return "fresh"


def fingerprint(model: Model, corpus: Corpus, cfg: ScanConfig, shard: tuple[int, int]) -> dict:
    """What must not change between an interrupted scan and its resumption."""
    return {
        "model": model_name(model),
        "d_vocab": model.cfg.d_vocab,
        "n_params": sum(p.numel() for p in model.parameters()),
        "corpus": [[f.source, f.size] for f in corpus.files],
        "config": to_config_json(cfg),
        "shard": list(shard),
    }


def to_config_json(cfg: ScanConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


class _Scan:
    """One scan's mutable state: the tally, the control sample, the partial output."""

    def __init__(
        self, model, corpus: Corpus, cfg: ScanConfig, shard, paths: OutputPaths, state: dict | None, batch_size: int
    ):
        self.model, self.corpus, self.cfg, self.shard, self.paths = model, corpus, cfg, shard, paths
        self.batch_size = batch_size
        self.last_source = state.get("last_source") if state else None
        self.tokenizer = model.tokenizer
        self.fingerprint = fingerprint(model, corpus, cfg, shard)
        if state is None:
            self.tally, self.next_doc, self.controls = _new_tally(cfg), 0, _Controls(cfg.n_controls)
            paths.partial.write_bytes(b"")
        else:
            if state["fingerprint"] != self.fingerprint:
                diff = sorted(k for k in self.fingerprint if state["fingerprint"].get(k) != self.fingerprint[k])
                raise UserError(
                    f"cannot resume {paths.out}: the {', '.join(diff)} differ from the interrupted scan's; "
                    "rerun it with the same options, or pass --force to start again"
                )
            self.tally, self.next_doc = state["tally"], state["next_doc"]
            self.controls = _Controls(cfg.n_controls, [(-int(k), rec) for k, rec in state["controls"]])
            heapq.heapify(self.controls.heap)
            with paths.partial.open("r+b") as fh:
                fh.truncate(state["partial_bytes"])
        self.fh = paths.partial.open("ab")

    # ---- one group of documents -------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, verbose=False)

    def stream(self, doc: Document) -> torch.Tensor:
        toks = doc.tokens if doc.tokens is not None else self.tokenize(doc.text)
        x = torch.tensor(toks, dtype=torch.long)
        if len(x) and (int(x.min()) < 0 or int(x.max()) >= self.model.cfg.d_vocab):
            raise UserError(
                f"{doc.source}: token ids outside the model's vocabulary (0..{self.model.cfg.d_vocab - 1}); "
                "were they made with another tokenizer?"
            )
        return x

    def grid(self, doc: Document, length: int) -> torch.Tensor:
        first = (-doc.offset_base) % self.cfg.stride
        return torch.arange(first, max(first, length - self.cfg.window_len + 1), self.cfg.stride)

    def audited(self, doc: Document, starts: torch.Tensor) -> torch.Tensor:
        """Which windows the recall audit scores exactly: a seeded sample of windows, independent of
        the screen and of the NMEM sample, the same in a sharded scan and in one run."""
        keys = sample_keys(stable_hash(f"audit\0{doc.source}"), starts + doc.offset_base, self.cfg.seed)
        return torch.from_numpy(keys < self.cfg.recall_sample * 2.0**63)

    def process(self, docs: list[Document]) -> None:
        cfg, tally = self.cfg, self.tally
        streams = [self.stream(d) for d in docs]
        grids = [self.grid(d, len(x)) for d, x in zip(docs, streams)]
        tally["documents"] += len(docs)
        tally["tokens"] += sum(len(x) for x in streams)
        tally["windows"] += sum(len(g) for g in grids)
        live = [i for i, g in enumerate(grids) if len(g)]
        if cfg.exact:
            scored = self.score({i: (streams[i], grids[i]) for i in live}, "verify")
        else:
            scored = self.screen_and_verify(docs, streams, grids, live)
        for i, (starts, em, nll) in scored.items():
            self.emit(docs[i], streams[i], starts, em, nll)
        self.sample_controls(docs, streams, grids, scored)

    def screen_and_verify(self, docs, streams, grids, live) -> dict[int, tuple]:
        """Screen the live documents, score the flagged windows and the audit sample exactly, and
        count the audit's MEM windows and how many of them the screen flagged."""
        cfg, tally = self.cfg, self.tally
        if not live:
            return {}
        screen = screen_windows(
            self.model,
            [streams[i] for i in live],
            [grids[i] for i in live],
            prefix_len=cfg.prefix_len,
            window_len=cfg.window_len,
            step=cfg.screen_step,
            batch_size=self.batch_size,
        )
        tally["chunks_screened"] += screen.chunks
        tally["forward_tokens"]["screen"] += screen.forward_tokens
        recall = tally["screen_recall"]
        flagged, sampled, verify, audit = {}, {}, {}, {}
        for i, misses, lead in zip(live, screen.misses, screen.lead):
            flagged[i], sampled[i] = misses <= cfg.screen_tolerance, self.audited(docs[i], grids[i])
            wanted = flagged[i] | (lead > cfg.nmem_max) if cfg.intermediate else flagged[i]
            verify[i], audit[i] = (streams[i], grids[i][wanted]), (streams[i], grids[i][sampled[i] & ~wanted])
            recall["windows"] += int(sampled[i].sum())
        scored = self.score(verify, "verify")
        for i, extra in self.score(audit, "audit").items():
            both = [torch.cat([a, b]) for a, b in zip(scored[i], extra)] if i in scored else list(extra)
            order = torch.argsort(both[0])
            scored[i] = tuple(t[order] for t in both)
        for i, (starts, em, _) in scored.items():
            at = torch.searchsorted(grids[i], starts)
            mem_audited = (em == cfg.continuation_len) & sampled[i][at]
            recall["mem"] += int(mem_audited.sum())
            recall["found"] += int((mem_audited & flagged[i][at]).sum())
        return scored

    def score(self, jobs: dict[int, tuple[torch.Tensor, torch.Tensor]], purpose: str) -> dict[int, tuple]:
        """Exact EM / NLL of the given window starts of each document, batched across documents;
        their forward tokens are counted under `purpose`."""
        jobs = {i: (x, s) for i, (x, s) in jobs.items() if len(s)}
        if not jobs:
            return {}
        windows = torch.cat([window_tokens(x, s, self.cfg.window_len) for x, s in jobs.values()])
        em, nll = score_windows(self.model, windows, self.cfg.prefix_len, self.batch_size)
        self.tally["windows_scored"] += len(windows)
        self.tally["forward_tokens"][purpose] += windows.numel()
        out, pos = {}, 0
        for i, (_, s) in jobs.items():
            out[i] = (s, em[pos : pos + len(s)], nll[pos : pos + len(s)])
            pos += len(s)
        return out

    def passes_filters(self, windows: torch.Tensor, kind: str) -> torch.Tensor:
        """Which windows the paper's filters keep; counts the ones they drop."""
        keep = torch.ones(len(windows), dtype=torch.bool)
        if not self.cfg.filters or not len(windows):
            return keep
        unique_ok = unique_fraction(windows) >= self.cfg.min_unique
        self.tally["filtered"]["low_unique"][kind] += int((~unique_ok).sum())
        keep &= unique_ok
        for j in keep.nonzero().flatten().tolist():
            if is_boilerplate(self.tokenizer.decode(windows[j].tolist()), self.cfg.boilerplate_patterns):
                keep[j] = False
                self.tally["filtered"]["boilerplate"][kind] += 1
        return keep

    def record(self, doc: Document, window: torch.Tensor, start: int, em: int, nll: float, kind: str) -> dict:
        offset = doc.offset_base + start
        toks = window.tolist()
        return {
            "id": f"{doc.source}@{offset}",
            "tokens": toks,
            "text": self.tokenizer.decode(toks),
            "source": doc.source,
            "offset": offset,
            "em": em,
            "nll": round(nll, 5),
            "log10_p": round(-nll * self.cfg.continuation_len / math.log(10), 4),
            "kind": kind,
            "prefix_len": self.cfg.prefix_len,
        }

    def emit(self, doc: Document, x: torch.Tensor, starts, em, nll) -> None:
        cfg, tally, W = self.cfg, self.tally, self.cfg.window_len
        mem = em == cfg.continuation_len
        if mem.any():
            s_mem, nll_mem = starts[mem], nll[mem]
            keep = self.passes_filters(window_tokens(x, s_mem, W), "mem")
            if (~keep).any():
                for span in self.spans(s_mem[~keep], nll_mem[~keep]):
                    _keep_longest(tally["filtered_examples"], self.span_summary(doc, x, span), N_EXAMPLES)
            for span in self.spans(s_mem[keep], nll_mem[keep]):
                rec = self.record(
                    doc, x[span.best : span.best + W], span.best, cfg.continuation_len, span.best_nll, "mem"
                )
                rec.update(
                    span_start=doc.offset_base + span.start,
                    span_end=doc.offset_base + span.end,
                    span_windows=span.n_windows,
                    mem_runs=[[doc.offset_base + a, doc.offset_base + b] for a, b in span.runs],
                    span_text=self.tokenizer.decode(x[span.start : span.end].tolist()),
                )
                self.write(rec)
                tally["mem_windows"] += span.n_windows
                tally["mem_spans"] += 1
                _keep_longest(tally["longest_spans"], self.span_summary(doc, x, span), N_LONGEST)
        if cfg.intermediate:
            mid = (em > cfg.nmem_max) & (em < cfg.continuation_len)
            s_mid, em_mid, nll_mid = starts[mid], em[mid], nll[mid]
            windows = window_tokens(x, s_mid, W)
            keep = self.passes_filters(windows, "intermediate")
            for j in keep.nonzero().flatten().tolist():
                self.write(
                    self.record(doc, windows[j], int(s_mid[j]), int(em_mid[j]), float(nll_mid[j]), "intermediate")
                )
                tally["intermediate"] += 1

    def spans(self, starts: torch.Tensor, nlls: torch.Tensor) -> list[Span]:
        s, n = starts.tolist(), nlls.tolist()
        if self.cfg.merge:
            return merge_spans(s, n, self.cfg.window_len, self.cfg.stride)
        return [Span(a, a + self.cfg.window_len, a, b, 1, ((a, a),)) for a, b in zip(s, n)]

    def span_summary(self, doc: Document, x: torch.Tensor, span: Span) -> dict:
        return {
            "source": doc.source,
            "start": doc.offset_base + span.start,
            "end": doc.offset_base + span.end,
            "tokens": span.end - span.start,
            "windows": span.n_windows,
            "text": self.tokenizer.decode(x[span.start : span.end].tolist())[:400],
        }

    def sample_controls(self, docs, streams, grids, scored) -> None:
        """Offer this group's eligible NMEM windows to the bottom-k sample, smallest keys first,
        scoring (in batches) only those whose key could still enter it."""
        if self.cfg.n_controls == 0:
            return
        pool = []
        for i, (doc, g) in enumerate(zip(docs, grids)):
            if not len(g):
                continue
            keys = sample_keys(stable_hash(doc.source), g + doc.offset_base, self.cfg.seed)
            below = (keys < min(self.controls.threshold, 1 << 63)).nonzero()[0]
            pool += [(int(keys[j]), i, int(g[j])) for j in below]
        pool.sort()
        known = {i: dict(zip(s.tolist(), zip(e.tolist(), n.tolist()))) for i, (s, e, n) in scored.items()}
        pos = 0
        while pos < len(pool) and pool[pos][0] < self.controls.threshold:
            batch = [p for p in pool[pos : pos + self.batch_size] if p[0] < self.controls.threshold]
            pos += self.batch_size
            need: dict[int, list[int]] = {}
            for _, i, s in batch:
                if s not in known.get(i, {}):
                    need.setdefault(i, []).append(s)
            new = self.score({i: (streams[i], torch.tensor(s)) for i, s in need.items()}, "controls")
            for i, (s, e, n) in new.items():
                known.setdefault(i, {}).update(zip(s.tolist(), zip(e.tolist(), n.tolist())))
            eligible = [(k, i, s) for k, i, s in batch if known[i][s][0] <= self.cfg.nmem_max]
            if not eligible:
                continue
            windows = torch.stack([streams[i][s : s + self.cfg.window_len] for _, i, s in eligible])
            keep = self.passes_filters(windows, "nmem")
            for j in keep.nonzero().flatten().tolist():
                k, i, s = eligible[j]
                em, nll = known[i][s]
                self.controls.offer(k, {**self.record(docs[i], windows[j], s, em, nll, "nmem"), "sample_key": k})

    # ---- files -----------------------------------------------------------------------------

    def write(self, rec: dict) -> None:
        self.fh.write((json.dumps(rec) + "\n").encode())

    def checkpoint(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        write_json(
            self.paths.state,
            {
                "fingerprint": self.fingerprint,
                "next_doc": self.next_doc,
                "partial_bytes": self.fh.tell(),
                "tally": self.tally,
                "controls": [[str(-nk), rec] for nk, rec in self.controls.heap],
                "last_source": self.last_source,
            },
        )

    def finish(self) -> None:
        """Partial records + the control sample -> the output, atomically; then the summary."""
        self.fh.close()
        tmp = self.paths.out.with_name(f".{self.paths.out.name}.tmp")
        with tmp.open("wb") as out, self.paths.partial.open("rb") as part:
            while chunk := part.read(1 << 20):
                out.write(chunk)
            for rec in self.controls.records():
                out.write((json.dumps(rec) + "\n").encode())
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.paths.out)


def scan_corpus(
    model: Model,
    corpus: Corpus,
    out: str | Path,
    config: ScanConfig = ScanConfig(),
    shard: tuple[int, int] = (1, 1),
    resume: bool = False,
    force: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> ScanSummary:
    """Scan the shard's part of `corpus` for windows `model` recites; write them to `out` (JSONL),
    the summary beside it (`<out stem>.summary.json`); return the summary.

    The model is only run forward (no hooks, no weight changes).
    """
    config.check_model(model)
    paths = OutputPaths(Path(out))
    status = paths.check(resume, force)
    if status == "done":
        return ScanSummary.from_json(json.loads(paths.summary.read_text()))
    state = json.loads(paths.state.read_text()) if status == "resume" else None
    scan = _Scan(model, corpus, config, shard, paths, state, batch_size)
    scan.checkpoint()  # from here on the scan is recorded: rerunning it needs --resume or --force
    total = corpus.size // shard[1] if shard[1] > 1 else corpus.size
    bar = tqdm(  # advances by bytes read (the one total known up front), shows tokens and windows
        total=total,
        initial=scan.tally["bytes"],
        desc=f"scan {shard[0]}/{shard[1]}",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
        disable=not progress,
    )
    t0, last_ckpt, done_before = time.time(), time.time(), scan.tally["seconds"]
    group: list[Document] = []
    group_tokens = 0

    def flush() -> None:
        nonlocal group, group_tokens, last_ckpt
        if not group:
            return
        scan.process(group)
        scan.next_doc += len(group)
        scan.last_source = group[-1].source
        nbytes = sum(d.nbytes for d in group)
        scan.tally["bytes"] += nbytes
        scan.tally["seconds"] = done_before + time.time() - t0
        bar.update(nbytes)
        bar.set_postfix_str(
            f"{scan.tally['tokens']:,} tokens ({scan.tally['tokens'] / max(scan.tally['seconds'], 1e-9):,.0f}/s), "
            f"{scan.tally['windows']:,} windows, {scan.tally['mem_spans']} memorized"
        )
        group, group_tokens = [], 0
        if time.time() - last_ckpt >= CHECKPOINT_SECONDS:
            scan.checkpoint()
            last_ckpt = time.time()

    try:
        for n, doc in enumerate(iter_documents(corpus, shard, scan.tokenize)):
            if n < scan.next_doc:
                continue
            group.append(doc)
            group_tokens += len(doc.tokens) if doc.tokens is not None else len(doc.text) // 3  # ~3 chars a token
            if group_tokens >= config.group_tokens:
                flush()
        flush()
    except BaseException:
        scan.fh.flush()
        bar.close()
        raise
    bar.close()
    scan.tally["seconds"] = done_before + time.time() - t0
    if scan.tally["windows"] == 0 and shard[1] == 1:
        scan.fh.close()
        paths.partial.unlink(missing_ok=True)
        paths.state.unlink(missing_ok=True)
        raise UserError(
            f"the corpus has no stretch of {config.window_len} tokens (prefix + continuation) to scan: "
            f"{scan.tally['tokens']} tokens in {scan.tally['documents']} documents"
        )
    scan.finish()
    tally = scan.tally
    counts = {k: v for k, v in tally.items() if k != "bytes"} | {  # the tally's other keys are ScanSummary fields
        "filtered_examples": tuple(tally["filtered_examples"]),
        "longest_spans": tuple(tally["longest_spans"]),
        "seconds": round(tally["seconds"], 3),
    }
    summary = ScanSummary(
        out=str(paths.out),
        model=model_name(model),
        mode=config.mode,
        shards=(tuple(shard),),
        config=to_config_json(config),
        nmem=len(scan.controls.heap),
        skipped_binary=corpus.skipped_binary,
        **counts,
    )
    write_json(paths.summary, summary.to_json())
    paths.state.unlink(missing_ok=True)
    paths.partial.unlink(missing_ok=True)
    return summary
