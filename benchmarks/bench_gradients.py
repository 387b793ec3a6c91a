"""Per-paragraph gradient norms: batched ghost norms vs one backward per paragraph.

Prints, for the testbed and a GPT-Neo-125M-shaped model with random weights, the wall time and
the peak extra memory of both methods, their ratio, and the largest relative difference between
their norms, all measured in this one run. Peak memory is the process' peak RSS (VmHWM, reset
through /proc/self/clear_refs before each method) on CPU, or torch's peak allocation on CUDA.

    python benchmarks/bench_gradients.py [--paragraphs 8] [--device cpu] [--skip-125m]
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
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.data import Paragraphs
from interp.gradient_norms import per_paragraph_norms
from interp.gradients import COMPONENTS, HEAD_COMPONENTS, parameter_gradients


def gpt_neo_125m_shaped(device: str) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=2048, act_fn="gelu_new",
        normalization_type="LN", attn_types=["global", "local"] * 6, use_local_attn=True, window_size=256, use_attn_scale=False,
        original_architecture="GPTNeoForCausalLM", seed=0, device=device,
    )
    return HookedTransformer(cfg).eval()


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure(fn, device: str) -> tuple[object, float, float]:
    """(result, seconds, peak extra MiB over the memory in use just before the call)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
        before = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else _status_kib("VmHWM") * 1024
    return out, seconds, (peak - before) / 2**20


def one_backward_per_paragraph(model: HookedTransformer, paragraphs: Paragraphs) -> torch.Tensor:
    """The reference: autograd weight gradients of each paragraph alone, then their norms."""
    n_layers = model.cfg.n_layers
    rows = []
    for i in range(len(paragraphs)):
        g = parameter_gradients(model, paragraphs.select([i]), objective="nll")
        rows.append(torch.tensor([[float(g[f"blocks.{l}.{'attn' if c in HEAD_COMPONENTS else 'mlp'}.{c}"].norm()) for c in COMPONENTS]
                                  for l in range(n_layers)]))
    return torch.stack(rows)


def _model(name: str, device: str) -> HookedTransformer:
    if name == "testbed":
        from interp.models import load_model

        return load_model("testbed", device=device)
    return gpt_neo_125m_shaped(device)


def worker(name: str, method: str, n: int, device: str, out_path: str) -> None:
    """One method on one model in a fresh process, so that no earlier allocation hides its peak."""
    model = _model(name, device)
    prefix = 50
    g = torch.Generator().manual_seed(0)
    paragraphs = Paragraphs(torch.randint(0, model.cfg.d_vocab, (n, 2 * prefix), generator=g), prefix_len=prefix,
                            ids=tuple(str(i) for i in range(n)))
    if method == "ghost":
        fn = lambda: per_paragraph_norms(model, paragraphs, batch_size=n).norms  # noqa: E731
    else:
        fn = lambda: one_backward_per_paragraph(model, paragraphs)  # noqa: E731
    norms, seconds, peak = measure(fn, device)
    torch.save({"norms": norms, "seconds": seconds, "peak_mib": peak, "threads": torch.get_num_threads()}, out_path)


def bench(name: str, label: str, n: int, device: str) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("ghost", "per_paragraph"):
            out = f"{tmp}/{method}.pt"
            subprocess.run([sys.executable, __file__, "--worker", name, method, str(n), device, out], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results[method] = torch.load(out)
    ghost, naive = results["ghost"], results["per_paragraph"]
    rel = float(((ghost["norms"] - naive["norms"]).abs() / naive["norms"]).max())
    print(f"{label}: {n} paragraphs of 100 tokens, device {device}, {ghost['threads']} threads, each method in a fresh process")
    print(f"  one backward per paragraph: {naive['seconds']:8.2f} s  peak +{naive['peak_mib']:8.1f} MiB")
    print(f"  batched ghost norms:        {ghost['seconds']:8.2f} s  peak +{ghost['peak_mib']:8.1f} MiB")
    print(f"  speed-up {naive['seconds'] / ghost['seconds']:.2f}x, peak memory per-paragraph / ghost "
          f"{naive['peak_mib'] / max(ghost['peak_mib'], 1e-9):.2f}, max relative norm difference {rel:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-125m", action="store_true")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, method, n, device, out = args.worker
        worker(name, method, int(n), device, out)
        return
    from interp.models import TESTBED_DIR

    if (Path(TESTBED_DIR) / "metadata.json").exists():
        bench("testbed", "testbed", args.paragraphs, args.device)
    else:
        print(f"testbed checkpoint missing at {TESTBED_DIR}: skipped")
    if not args.skip_125m:
        bench("125m", "GPT-Neo-125M-shaped (random weights)", args.paragraphs, args.device)


if __name__ == "__main__":
    main()
