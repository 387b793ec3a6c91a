"""The whole default report on a Llama-family model: a tiny Llama (gated MLP, grouped-query attention, rotary
positions) trained here to recite 12 random-token paragraphs, under whichever backend runs the tests."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SMALL_REPORT

from interp import load_model
from interp.data import Paragraphs
from interp.report import ReportOptions, default_steps, run_report

N, SEQ, PREFIX, N_MEM = 100, 40, 20, 12


@pytest.mark.slow
def test_the_default_report_runs_every_step_on_a_gated_grouped_query_model(tmp_path):
    from test_models import FAMILY_VOCAB, _family_model, _tokenizer

    hf = _family_model("llama")
    assert hf.config.num_key_value_heads < hf.config.num_attention_heads
    tokens = torch.randint(0, FAMILY_VOCAB, (N, SEQ), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(hf.parameters(), lr=3e-3)
    hf.train()
    for _ in range(300):
        hf(tokens[:N_MEM], labels=tokens[:N_MEM]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    hf.eval()
    hf.save_pretrained(tmp_path / "model")
    _tokenizer(tmp_path / "model")
    model = load_model(str(tmp_path / "model"), device="cpu")
    split = tuple("planted" if i < N_MEM else "heldout" if i >= N - 12 else "once" for i in range(N))
    paragraphs = Paragraphs(tokens, PREFIX, tuple(f"p{i}" for i in range(N)), meta={"split": split})
    options = ReportOptions(**{**SMALL_REPORT, "n_nmem": 16})
    run_report(model, paragraphs, tmp_path / "report", options=options, image_formats=())
    steps = json.loads((tmp_path / "report" / "results.json").read_text())["steps"]
    assert list(steps) == [s.name for s in default_steps()]
    for name, step in steps.items():
        assert "skipped" not in (step["result"] or {}), (name, step["result"])
    assert steps["memorization"]["result"]["n_mem"] == N_MEM
    assert steps["gradients"]["result"]["nll"]["components"][-1] == "W_gate"
    trust = steps["locator_trust"]["result"]["heads"][0]["injection"]
    assert not any("W_K" in p or "W_V" in p for p in trust["parameters"])  # a key/value head is its group's
