"""The benchmark harness: load check, interleaving, medians and ratios, work counts, the run_all table.

Every test but the fused blocks' runs under both backends: the harness and run_all import interp alone, and the work
counts read only a model config's fields (the backend's ModelConfig)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

from interp import backend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import harness  # noqa: E402
import run_all  # noqa: E402


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    harness.add_arguments(parser)
    return parser.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in kw.items()])


def test_load_check_says_busy_or_quiet(capsys):
    assert harness.wait_for_quiet(threshold=1e9, max_wait=0)["busy"] is False
    busy = harness.wait_for_quiet(threshold=0.0, max_wait=0)  # a load average is never below 0
    assert busy["busy"] is True and busy["waited_s"] < 1
    assert "BUSY" in capsys.readouterr().out


def test_methods_run_interleaved_and_report_medians(tmp_path, capsys):
    calls = []
    seconds = {"slow": iter([9.0, 10.0, 30.0]), "fast": iter([2.0, 5.0, 4.0])}

    def method(name):
        def run():
            calls.append(name)
            return harness.Measured(result=name, seconds=next(seconds[name]), cpu_seconds=1.0, peak_mib=7.0)

        return harness.Method(name, run, flops=8e9, layer_tokens=100 if name == "slow" else 40)

    session = harness.Session(
        "test", _args(repeats=3, max_wait=0, load_threshold=1e9, json=tmp_path / "rows.json"), peak_n=64
    )
    timings = session.time([method("slow"), method("fast")], warmup=False)
    assert calls == ["slow", "fast", "fast", "slow", "slow", "fast"]  # odd rounds reversed
    assert len(session.peaks) == 4 and all(p > 0 for p in session.peaks)
    row = session.report("case", timings, baseline="slow", candidate="fast", check="ok")
    assert row["ratio"] == pytest.approx(10.0 / 4.0)  # medians 10 and 4
    assert (row["ratio_min"], row["ratio_max"]) == pytest.approx((2.0, 7.5))  # per round: 9/2, 10/5, 30/4
    assert row["work_ratio"] == pytest.approx(2.5)
    fast = row["methods"]["fast"]
    assert (fast["median_s"], fast["min_s"], fast["max_s"], fast["peak_mib"]) == (4.0, 2.0, 5.0, 7.0)
    assert fast["gflops"] == pytest.approx(2.0) and fast["fraction_of_peak"] == pytest.approx(2.0 / session.peak)
    out = capsys.readouterr().out
    assert "median    4.000 s  range 2.000-5.000 (3 runs)" in out and "ratio 2.50x" in out
    session.finish()
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert saved["rows"][0]["check"] == "ok" and saved["machine"]["busy"] is False


def test_work_counts():
    # d_vocab_out given: a hand-built TransformerBridgeConfig leaves it -1 (a loaded model's config has it)
    cfg = backend.ModelConfig(
        n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=10, d_vocab_out=10, n_ctx=16, act_fn="gelu_new"
    )
    # per token: Q, K, V, O 4 * 8 * 8 and MLP 2 * 8 * 16 multiply-adds; attention 2 * heads * seq * d_head
    block = 2 * 3 * 5 * (4 * 64 + 256) + 2 * 2 * 3 * 2 * 5 * 5 * 4
    assert harness.block_flops(cfg, rows=3, seq=5) == block
    assert harness.forward_flops(cfg, 3, 5) == 2 * block + 2 * 3 * 5 * 8 * 10
    assert harness.forward_flops(cfg, 3, 5, start_layer=1, logit_positions=2) == block + 2 * 3 * 2 * 8 * 10
    one_token = 2 * 1 * (4 * 64 + 256) + 2 * 2 * 2 * 1 * 6 * 4  # a 6th token attending to 6 keys
    assert harness.greedy_flops(cfg, rows=1, prefix_len=5, new_tokens=2) == (
        harness.forward_flops(cfg, 1, 5) + 2 * one_token + 2 * 8 * 10
    )


@pytest.mark.parametrize("use_attn_scale", [False, True])
def test_fused_blocks_compute_the_transformerlens_blocks(tiny_model, use_attn_scale):
    """bench_fusion times the same function as TransformerLens' blocks: global and local (window 3 < 7 positions)
    layers, GPT-Neo's unscaled scores and the scaled ones; a wrong mask, scale or weight layout differs by O(1)."""
    if backend.NAME != "hooked":
        pytest.skip("bench_fusion runs HookedTransformer's own blocks, which TransformerLens 4 no longer has")
    import bench_fusion

    model = tiny_model(n_layers=2, window_size=3, use_local_attn=True, use_attn_scale=use_attn_scale)
    assert [b.attn.attn_type for b in model.blocks] == ["global", "local"]
    x = torch.randn(3, 7, model.cfg.d_model)
    with torch.no_grad():
        expected = bench_fusion.tl_blocks(model, x)
        fused = bench_fusion.fused_blocks(model, bench_fusion.fused_weights(model, requires_grad=False), x)
    assert torch.allclose(fused, expected, atol=1e-5, rtol=1e-5)
    window_blind = [dict(w, local=False) for w in bench_fusion.fused_weights(model, requires_grad=False)]
    with torch.no_grad():
        assert not torch.allclose(bench_fusion.fused_blocks(model, window_blind, x), expected, atol=1e-3)


def test_run_all_table_marks_busy_and_failed():
    method = {"median_s": 4.0, "min_s": 3.0, "max_s": 5.0, "gflops": 10.0, "fraction_of_peak": 0.25, "peak_mib": 50.0}
    row = {
        "case": "testbed head_out",
        "baseline": "tl",
        "candidate": "ours",
        "ratio": 2.0,
        "ratio_min": 1.5,
        "ratio_max": 2.5,
        "work_ratio": 1.8,
        "methods": {"tl": method | {"median_s": 8.0}, "ours": method},
    }
    results = [
        {"benchmark": "bench_x", "returncode": 0, "timed_out": False, "machine": {"busy": True}, "rows": [row]},
        {"benchmark": "bench_y", "returncode": 1, "timed_out": False, "machine": None, "rows": []},
    ]
    lines = run_all.table(results).splitlines()
    assert "2.00x (1.50-2.50)" in lines[1] and "1.80x" in lines[1] and "10 (25%)" in lines[1]
    assert "8.00 (3.00-5.00)" in lines[1] and lines[1].endswith("BUSY") and "50/50" in lines[1]
    assert "FAILED (exit 1)" in lines[2]
