"""What every benchmark shares: a load check, interleaved repeats, a matmul peak, work counts.

A benchmark built on this module
- checks the 1-minute load average before it starts (`os.getloadavg`) and waits, up to a bound,
  for it to fall below a threshold (default 0.3, the level at which the quiet-machine figures
  were taken); when it does not, every line it prints is preceded by a BUSY line and the JSON
  says `"busy": true`;
- runs every method of a comparison `repeats` times (default 3), interleaved: round r runs
  all methods, in reversed order on odd rounds, so a drift of the machine hits all alike;
- times a float32 [2048 x 2048] matmul on the same threads in every round, and quotes each
  method's achieved GFLOP/s as a fraction of that peak (the median over the rounds);
- prints the median and the range (min - max) of wall seconds, the median CPU seconds, and
  the ratio of medians with the range of the per-round ratios.

FLOPs count the matrix multiplications a method runs (2 per multiply-add): the linear maps of
every block it runs, the attention products as TransformerLens computes them (dense query x key,
masked afterwards) and the unembedding of the positions whose logits it computes. Elementwise
work (LayerNorm, GELU, softmax) is not counted. "Layer-tokens" count block applications: one
token through one block is one.

Each benchmark writes its rows as JSON (`--json`); benchmarks/run_all.py collects them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from interp.cost import (  # noqa: F401 (re-exported: the benchmarks take work counts from here)
    PEAK_N,
    block_flops,
    forward_flops,
    greedy_flops,
    matmul_gflops,
    matmul_seconds,
    unembed_flops,
)

LOAD_THRESHOLD = 0.3  # 1-minute load average under which the machine counts as quiet (2 cores)
MAX_WAIT_S = 300.0  # how long to wait for a quiet machine before measuring anyway, marked BUSY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark takes."""
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each method, interleaved (>= 3 for a spread)"
    )
    parser.add_argument(
        "--load-threshold",
        type=float,
        default=LOAD_THRESHOLD,
        help="1-minute load average below which the machine counts as quiet",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=MAX_WAIT_S,
        help="seconds to wait for the load to fall below the threshold; then measure, marked BUSY",
    )
    parser.add_argument("--json", default=None, help="write the rows measured here to this JSON file")


def wait_for_quiet(threshold: float, max_wait: float, poll: float = 5.0) -> dict:
    """Wait until the 1-minute load average is below `threshold` (at most `max_wait` s); say what was found."""
    start = time.monotonic()
    load = os.getloadavg()[0]
    while load >= threshold and time.monotonic() - start < max_wait:
        time.sleep(min(poll, max(0.0, max_wait - (time.monotonic() - start))))
        load = os.getloadavg()[0]
    waited = time.monotonic() - start
    busy = load >= threshold
    if busy:
        print(
            f"BUSY: 1-minute load average {load:.2f} >= {threshold} after waiting {waited:.0f} s; "
            "the timings below are NOT quiet-machine figures",
            flush=True,
        )
    else:
        print(f"machine quiet: 1-minute load average {load:.2f} < {threshold} (waited {waited:.0f} s)", flush=True)
    return {"load_before": round(load, 2), "load_threshold": threshold, "waited_s": round(waited, 1), "busy": busy}


# --- timing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What a method may return when it times itself (e.g. in a worker process, to own its peak memory)."""

    result: Any
    seconds: float
    cpu_seconds: float
    peak_mib: float | None = None


@dataclass(frozen=True)
class Method:
    """A method to time: `fn()` runs it once; work counts describe one run."""

    name: str
    fn: Callable[[], Any]
    flops: float | None = None
    tokens: int | None = None  # forward tokens (or paragraphs' tokens), for tokens/s
    layer_tokens: int | None = None


@dataclass
class Timing:
    method: Method
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def _run_once(method: Method) -> tuple[Any, float, float, float | None]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = method.fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if isinstance(out, Measured):
        return out.result, out.seconds, out.cpu_seconds, out.peak_mib
    return out, wall, cpu, None


class Session:
    """One benchmark process: the load check, the peak, the comparisons, the JSON."""

    def __init__(self, name: str, args: argparse.Namespace, peak_n: int = PEAK_N):
        self.name, self.repeats, self.peak_n = name, args.repeats, peak_n
        if self.repeats < 1:
            raise SystemExit("--repeats must be at least 1")
        print(
            f"{name}: {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"python {platform.python_version()}; each method runs {self.repeats} times, interleaved",
            flush=True,
        )
        self.machine = wait_for_quiet(args.load_threshold, args.max_wait)
        self.machine |= {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__}
        self.peaks: list[float] = []
        self.rows: list[dict] = []
        self.json_path = args.json

    def time(self, methods: list[Method], warmup: bool = True) -> dict[str, Timing]:
        """Run every method `repeats` times, interleaved, with a matmul peak in every round."""
        timings = {m.name: Timing(m) for m in methods}
        if warmup:
            for m in methods:
                m.fn()
        for r in range(self.repeats):
            self.peaks.append(matmul_gflops(self.peak_n))
            for m in methods if r % 2 == 0 else methods[::-1]:
                out, wall, cpu, peak = _run_once(m)
                t = timings[m.name]
                t.seconds.append(wall)
                t.cpu_seconds.append(cpu)
                if peak is not None:
                    t.peak_mib.append(peak)
                t.result = out
        self.peaks.append(matmul_gflops(self.peak_n))
        return timings

    @property
    def peak(self) -> float:
        return statistics.median(self.peaks) if self.peaks else matmul_gflops(self.peak_n)

    def method_row(self, t: Timing) -> dict:
        m = t.method
        row = {
            "median_s": t.median,
            "min_s": min(t.seconds),
            "max_s": max(t.seconds),
            "runs_s": t.seconds,
            "cpu_median_s": statistics.median(t.cpu_seconds),
        }
        if m.flops is not None:
            row |= {
                "gflop": m.flops / 1e9,
                "gflops": m.flops / 1e9 / t.median,
                "fraction_of_peak": m.flops / 1e9 / t.median / self.peak,
            }
        if m.tokens is not None:
            row |= {"tokens": m.tokens, "tokens_per_s": m.tokens / t.median}
        if m.layer_tokens is not None:
            row["layer_tokens"] = m.layer_tokens
        if t.peak_mib:
            row |= {"peak_mib": statistics.median(t.peak_mib), "peak_mib_runs": t.peak_mib}
        return row

    def report(
        self,
        case: str,
        timings: dict[str, Timing],
        baseline: str,
        candidate: str,
        *,
        show_methods: bool = True,
        **notes: Any,
    ) -> dict:
        """Print one comparison (every method unless shown already, then candidate vs baseline) and keep it for the JSON."""
        base, cand = timings[baseline], timings[candidate]
        per_round = [b / c for b, c in zip(base.seconds, cand.seconds)]
        row = {
            "case": case,
            "baseline": baseline,
            "candidate": candidate,
            "ratio": base.median / cand.median,
            "ratio_min": min(per_round),
            "ratio_max": max(per_round),
            "peak_gflops": self.peak,
            "methods": {name: self.method_row(t) for name, t in timings.items()},
            "busy": self.machine["busy"],
        }
        if base.method.layer_tokens and cand.method.layer_tokens:
            row["work_ratio"] = base.method.layer_tokens / cand.method.layer_tokens
        if base.method.flops and cand.method.flops:
            row["flop_ratio"] = base.method.flops / cand.method.flops
        row |= notes
        width = max(len(n) for n in timings)
        if show_methods:
            print(f"{case}  (matmul peak {self.peak:.0f} GFLOP/s{', BUSY machine' if self.machine['busy'] else ''})")
        for name, t in timings.items() if show_methods else ():
            r = row["methods"][name]
            line = (
                f"  {name:<{width}}  median {r['median_s']:8.3f} s  range {r['min_s']:.3f}-{r['max_s']:.3f} "
                f"({len(t.seconds)} runs)  cpu {r['cpu_median_s']:8.2f} s"
            )
            if "gflops" in r:
                line += f"  {r['gflops']:6.1f} GFLOP/s = {r['fraction_of_peak']:4.0%} of peak"
            if "tokens_per_s" in r:
                line += f"  {r['tokens_per_s']:9.0f} tokens/s"
            if "layer_tokens" in r:
                line += f"  {r['layer_tokens'] / 1e3:9.1f}k layer-tokens"
            if "peak_mib" in r:
                line += f"  peak +{r['peak_mib']:.0f} MiB"
            print(line)
        work = "".join(f", {k.replace('_', ' ')} {row[k]:.2f}x" for k in ("work_ratio", "flop_ratio") if k in row)
        extra = _notes_text(notes)
        print(
            f"  ratio {row['ratio']:.2f}x ({candidate} vs {baseline}; per round {row['ratio_min']:.2f}-"
            f"{row['ratio_max']:.2f}){work}{extra}",
            flush=True,
        )
        self.rows.append(row)
        return row

    def report_alone(self, case: str, timing: Timing, **notes: Any) -> dict:
        """Print one method that has nothing to be compared with (e.g. against a time budget) and keep it."""
        name = timing.method.name
        row = {
            "case": case,
            "baseline": None,
            "candidate": name,
            "peak_gflops": self.peak,
            "methods": {name: self.method_row(timing)},
            "busy": self.machine["busy"],
        } | notes
        r = row["methods"][name]
        print(
            f"{case}: {name} median {r['median_s']:.1f} s, range {r['min_s']:.1f}-{r['max_s']:.1f} "
            f"({len(timing.seconds)} runs){_notes_text(notes)}",
            flush=True,
        )
        self.rows.append(row)
        return row

    def finish(self) -> None:
        """Write the JSON (when asked) with the machine state at both ends of the run."""
        self.machine |= {
            "load_after": round(os.getloadavg()[0], 2),
            "peak_gflops": self.peak,
            "peaks": self.peaks,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        if self.json_path:
            from interp.io import write_json

            write_json(
                self.json_path,
                {"benchmark": self.name, "argv": sys.argv[1:], "machine": self.machine, "rows": self.rows},
            )


def _notes_text(notes: dict[str, Any]) -> str:
    return "".join(f", {k.replace('_', ' ')}: {_fmt(v)}" for k, v in notes.items())


def _fmt(v: Any) -> str:
    return f"{v:.2e}" if isinstance(v, float) and (abs(v) < 1e-2 or abs(v) >= 1e4) and v != 0 else str(v)


MODELS = ("testbed", "neo125m-shaped")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--rows` and `--models`, for the benchmarks that time the same paths on each model."""
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)


def benchmark_models(names: list[str]) -> Iterator[tuple[str, Any]]:
    """(label, model) for each name of MODELS, each built only when its turn comes."""
    for name in names:
        if name == "testbed":
            from interp import load_model

            yield "testbed", load_model("testbed", device="cpu")
        else:
            yield "GPT-Neo-125M-shaped", neo_125m_shaped()


def neo_125m_shaped(device: str = "cpu"):
    """A random-weight model of GPT-Neo 125M's shape (12 x 12 heads, d 768, vocab 50257): the size benchmarks quote."""
    from transformer_lens import HookedTransformer

    return HookedTransformer(neo_125m_config(device)).eval()


def neo_125m_config(device: str = "cpu"):
    """GPT-Neo 125M's HookedTransformerConfig (no weights built)."""
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        n_layers=12,
        d_model=768,
        n_heads=12,
        d_head=64,
        d_mlp=3072,
        d_vocab=50257,
        n_ctx=2048,
        act_fn="gelu_new",
        normalization_type="LN",
        attn_types=["global", "local"] * 6,
        use_local_attn=True,
        window_size=256,
        use_attn_scale=False,
        original_architecture="GPTNeoForCausalLM",
        positional_embedding_type="standard",
        device=device,
        seed=0,
    )
