"""Per-paragraph gradient norms: batched ghost norms vs one backward per paragraph, interleaved in one run.

    python benchmarks/bench_gradients.py [--paragraphs 32] [--batch-size 8] [--device cpu] [--skip-125m]

For the testbed and a GPT-Neo-125M-shaped model with random weights: the median wall time and
spread of both methods, each run in a fresh process (so that no earlier allocation hides its
peak memory; the runs of the two methods alternate), their peak extra memory, their ratio,
paragraph tokens/s, and the largest relative difference between their norms. Peak memory is
the worker's peak RSS (VmHWM, reset through /proc/self/clear_refs just before the method)
over its RSS at that moment on CPU, or torch's peak allocation on CUDA; model building and
process start are outside both the time and the memory.
"""

from __future__ import annotations

import argparse
import gc
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import Measured, Method, Session, add_arguments, neo_125m_shaped
from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.gradient_norms import per_paragraph_norms
from interp.gradients import COMPONENTS, HEAD_COMPONENTS, parameter_gradients

GHOST, LOOP = "batched ghost norms", "one backward per paragraph"


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure(fn, device: str) -> tuple[object, float, float, float]:
    """(result, seconds, CPU seconds, peak extra MiB over the memory in use just before the call)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
        before = _status_kib("VmRSS") * 1024
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else _status_kib("VmHWM") * 1024
    return out, seconds, cpu, (peak - before) / 2**20


def one_backward_per_paragraph(model: HookedTransformer, paragraphs: Paragraphs) -> torch.Tensor:
    """The reference: autograd weight gradients of each paragraph alone, then their norms."""
    n_layers = model.cfg.n_layers
    rows = []
    for i in range(len(paragraphs)):
        g = parameter_gradients(model, paragraphs.select([i]), objective="nll")
        rows.append(
            torch.tensor(
                [
                    [float(g[f"blocks.{l}.{'attn' if c in HEAD_COMPONENTS else 'mlp'}.{c}"].norm()) for c in COMPONENTS]
                    for l in range(n_layers)
                ]
            )
        )
    return torch.stack(rows)


def _model(name: str, device: str) -> HookedTransformer:
    if name == "testbed":
        from interp.models import load_model

        return load_model("testbed", device=device)
    return neo_125m_shaped(device)


def worker(name: str, method: str, n: int, batch_size: int, device: str, out_path: str) -> None:
    """One method on one model in a fresh process, so that no earlier allocation hides its peak."""
    model = _model(name, device)
    prefix = 50
    g = torch.Generator().manual_seed(0)
    paragraphs = Paragraphs(
        torch.randint(0, model.cfg.d_vocab, (n, 2 * prefix), generator=g),
        prefix_len=prefix,
        ids=tuple(str(i) for i in range(n)),
    )
    if method == "ghost":
        fn = lambda: per_paragraph_norms(model, paragraphs, batch_size=batch_size).norms  # noqa: E731
    else:
        fn = lambda: one_backward_per_paragraph(model, paragraphs)  # noqa: E731
    norms, seconds, cpu, peak = measure(fn, device)
    torch.save({"norms": norms, "seconds": seconds, "cpu": cpu, "peak_mib": peak}, out_path)


def in_worker(name: str, method: str, n: int, batch_size: int, device: str, tmp: str) -> Measured:
    out = f"{tmp}/{method}.pt"
    subprocess.run(
        [sys.executable, __file__, "--worker", name, method, str(n), str(batch_size), device, out],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r = torch.load(out)
    return Measured(result=r["norms"], seconds=r["seconds"], cpu_seconds=r["cpu"], peak_mib=r["peak_mib"])


def bench(session: Session, name: str, label: str, n: int, batch_size: int, device: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        methods = [
            Method(GHOST, lambda: in_worker(name, "ghost", n, batch_size, device, tmp), tokens=n * 100),
            Method(LOOP, lambda: in_worker(name, "loop", n, batch_size, device, tmp), tokens=n * 100),
        ]
        timings = session.time(methods, warmup=False)
    ghost, loop = timings[GHOST].result, timings[LOOP].result
    rel = float(((ghost - loop).abs() / loop).max())
    peak = {k: session.method_row(timings[k])["peak_mib"] for k in (GHOST, LOOP)}
    session.report(
        f"{label}: {n} paragraphs of 50 + 50 tokens, ghost passes of at most {batch_size} paragraphs (fewer where interp.gradient_norms._ghost_batch caps them for memory), device {device}",
        timings,
        baseline=LOOP,
        candidate=GHOST,
        max_relative_norm_diff=rel,
        peak_memory_loop_over_ghost=round(peak[LOOP] / max(peak[GHOST], 1e-9), 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="paragraphs per ghost-norm forward and backward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-125m", action="store_true")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    if args.worker:
        name, method, n, batch_size, device, out = args.worker
        worker(name, method, int(n), int(batch_size), device, out)
        return
    from interp.models import TESTBED_DIR

    session = Session("bench_gradients", args)
    if (Path(TESTBED_DIR) / "metadata.json").exists():
        bench(session, "testbed", "testbed", args.paragraphs, args.batch_size, args.device)
    else:
        print(f"testbed checkpoint missing at {TESTBED_DIR}: skipped")
    if not args.skip_125m:
        bench(session, "125m", "GPT-Neo-125M-shaped (random weights)", args.paragraphs, args.batch_size, args.device)
    session.finish()


if __name__ == "__main__":
    main()
