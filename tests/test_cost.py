"""Work accounting: block-positions and FLOPs counted as models run, the global hook removed, the report's cost table."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from interp import backend
from interp.cost import block_flops, count_work, forward_flops, matmul_gflops
from interp.data import Paragraphs
from interp.report import ReportOptions, Step, run_report
from interp.report.types import Bundle


def _global_forward_pre_hooks() -> int:
    return len(nn.modules.module._global_forward_pre_hooks)


def test_a_forward_counts_its_blocks_and_unembedding_and_nothing_else(tiny_model):
    model = tiny_model(n_layers=3)
    tokens = torch.randint(0, 50, (5, 7))
    with torch.no_grad(), count_work() as work:
        model(tokens)
    assert work.forward_positions == 3 * 5 * 7
    assert work.logit_positions == 5 * 7
    assert work.forward_flops == pytest.approx(forward_flops(model.cfg, 5, 7))
    assert work.backward_positions == 0 and work.backward_flops == 0
    # Running from a layer counts the blocks that ran: on HookedTransformer those from the layer on; on the
    # TransformerBridge every block, since its start_at_layer runs blocks 0 .. k-1 on the injected residual and
    # drops their output (docs/backend_tl4.md).
    first = 2 if backend.NAME == "hooked" else 0
    with torch.no_grad(), count_work() as work:
        resid = torch.zeros(5, 7, model.cfg.d_model)
        model(resid, start_at_layer=2)
    assert work.forward_positions == (3 - first) * 5 * 7
    assert work.forward_flops == pytest.approx(forward_flops(model.cfg, 5, 7, start_layer=first))


def test_a_recorded_backward_counts_twice_its_forward_and_copies_count_too(tiny_model):
    import copy

    model = tiny_model(n_layers=2)
    tokens = torch.randint(0, 50, (4, 6))
    with count_work() as work:
        copy.deepcopy(model)(tokens, return_type="loss").backward()
    assert work.backward_positions == 2 * 4 * 6
    assert work.backward_flops == pytest.approx(2 * work.forward_flops)
    assert work.forward_flops == pytest.approx(2 * block_flops(model.cfg, 4, 6) + 2 * 4 * 6 * 32 * 50)


def test_a_backward_counts_only_the_gradients_it_needs(tiny_model):
    model = tiny_model(n_layers=2)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.blocks[1].parameters():
        p.requires_grad_(True)
    tokens = torch.randint(0, 50, (4, 6))
    with count_work() as work:
        model(tokens, return_type="loss").backward()
    # block 0: frozen, on a frozen stem (no backward); block 1: weight gradients only; unembedding: input gradients only
    assert work.backward_positions == 1 * 4 * 6
    assert work.backward_flops == pytest.approx(block_flops(model.cfg, 4, 6) + 2 * 4 * 6 * 32 * 50)


def test_the_counting_hook_is_removed_even_when_the_body_raises(tiny_model):
    before = _global_forward_pre_hooks()
    with pytest.raises(RuntimeError), count_work():
        assert _global_forward_pre_hooks() == before + 1
        raise RuntimeError("boom")
    assert _global_forward_pre_hooks() == before
    with torch.no_grad(), count_work() as work:
        pass
    tiny_model()(torch.randint(0, 50, (2, 3)))  # outside the block: not counted
    assert work.forward_positions == 0


def test_matmul_peak_is_a_positive_rate():
    assert matmul_gflops(n=256, reps=1) > 0


class _Logits:
    def __init__(self, value: float):
        self.value = value

    def to_json(self) -> dict:
        return {"value": self.value}


def test_the_report_records_each_steps_work_and_fraction_of_peak(tiny_model, tmp_path):
    from interp.views.report_html import Section

    model = tiny_model(n_layers=2)
    paragraphs = Paragraphs(torch.randint(0, 50, (6, 12)), 6, tuple(f"p{i}" for i in range(6)))

    def run_model(inputs):
        with torch.no_grad():
            return Bundle({"x": _Logits(float(inputs.model(inputs.paragraphs.tokens).mean()))})

    steps = [
        Step("forward", run_model, lambda r, rs: Section(key="forward", title="forward")),
        Step("idle", lambda inputs: _Logits(1.0), lambda r, rs: Section(key="idle", title="idle")),
    ]
    opts = ReportOptions(progress=False)
    run = run_report(model, paragraphs, tmp_path, options=opts, steps=steps, image_formats=())
    cost = json.loads((tmp_path / "results.json").read_text())["cost"]
    assert cost["peak_gflops"] > 0
    fwd = cost["steps"]["forward"]
    assert fwd["forward_block_positions"] == 2 * 6 * 12 and fwd["backward_block_positions"] == 0
    assert fwd["gflop_forward"] == pytest.approx(round(forward_flops(model.cfg, 6, 12) / 1e9, 3))
    assert cost["steps"]["idle"]["forward_block_positions"] == 0
    assert run.cost()["forward"]["seconds"] == run.seconds["forward"]
    assert "What this report cost" in (tmp_path / "report.html").read_text()
    run_report(model, paragraphs, tmp_path, options=opts, steps=steps, image_formats=())  # all cached: no work
    again = json.loads((tmp_path / "results.json").read_text())["cost"]["steps"]["forward"]
    assert again["cached"] is True and "forward_block_positions" not in again
