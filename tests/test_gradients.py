"""Gradient maps, parameter gradients and per-paragraph (ghost) norms on a tiny random GPT-Neo.

The reference for every per-paragraph norm is autograd with one backward per paragraph.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import hook_count
from factories import run_once
from factories import tiny_model as build_model

from interp.backend import named_weights, param_name, unembed_parts
from interp.data import Paragraphs
from interp.errors import UserError
from interp.gradient_norms import NormComparison, PerParagraphNorms, compare_norms, per_paragraph_norms
from interp.gradients import COMPONENTS, HEAD_COMPONENTS, gradient_map, parameter_gradients
from interp.io import to_jsonable
from interp.objectives import continuation_nll

N_LAYERS, N_HEADS, D_HEAD, D_MODEL = 2, 4, 8, 32


@pytest.fixture(scope="module")
def model():
    m = build_model(
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        n_heads=N_HEADS,
        d_head=D_HEAD,
        attn_types=["global", "local"],
        window_size=4,
        seed=4,  # a draw on which the whole-set control shows the set-size bias (test_sets_of_different_sizes_...)
    )
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial LayerNorm affines and biases, so ignoring them would show
        for name, w in named_weights(m).items():  # TransformerLens names, either backend
            if ".ln" in name or name.split(".")[-1].startswith("b_") or name.endswith(".w") or name.endswith(".b"):
                w.tensor.copy_(torch.randn_like(w.tensor) * 0.5 + (1.0 if name.endswith(".w") else 0.0))
    return run_once(m)  # its hooks whole: a TransformerBridge adds its norm hooks at its first forward


def _paragraphs(n: int, seed: int, tag: str) -> Paragraphs:
    g = torch.Generator().manual_seed(seed)
    return Paragraphs(
        torch.randint(0, 50, (n, 16), generator=g), prefix_len=8, ids=tuple(f"{tag}{i}" for i in range(n))
    )


@pytest.fixture(scope="module")
def mem():
    return _paragraphs(5, 1, "m")


@pytest.fixture(scope="module")
def nmem():
    return _paragraphs(6, 2, "n")


def _snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {n: p.requires_grad for n, p in model.named_parameters()},
        {n: p.grad for n, p in model.named_parameters()},
        hook_count(model),  # 0, or the TransformerBridge's own norm hooks
    )


def _assert_unchanged(model, snap):
    state, flags, grads, hooks = snap
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is grads[n] for n, p in model.named_parameters())
    assert hook_count(model) == hooks


def test_nll_gradients_match_autograd_and_skip_biases(model, mem):
    grads = parameter_gradients(model, mem, objective="nll", batch_size=2)  # 3 uneven batches
    assert set(grads) == {param_name(l, c) for l in range(N_LAYERS) for c in COMPONENTS}
    weights = named_weights(model)  # TransformerLens names: the leaf that holds each and its layout view
    loss = continuation_nll(model, mem.tokens, mem.prefix_len)
    reference = torch.autograd.grad(loss, [weights[k].leaf for k in grads])
    for (name, g), ref in zip(grads.items(), reference):
        assert g.shape == weights[name].tensor.shape
        torch.testing.assert_close(g, weights[name].to_tl(ref), rtol=1e-4, atol=1e-7)
    everything = parameter_gradients(model, mem, objective="nll", include_embeddings=True)
    assert set(everything) == set(weights)


def test_contrastive_gradient_is_minus_weighted_nll_at_original_weights(model, mem, nmem):
    nll = parameter_gradients(model, mem, objective="nll")
    co = parameter_gradients(model, mem, nmem, objective="contrastive", batch_size=4)
    for k in nll:
        torch.testing.assert_close(co[k], -0.1 * nll[k], rtol=1e-3, atol=1e-6)
    with pytest.raises(UserError, match="retain"):
        parameter_gradients(model, mem, None, objective="contrastive")
    with pytest.raises(UserError, match="objective"):
        parameter_gradients(model, mem, objective="kl")


def test_model_untouched_even_after_failure(model, mem, nmem):
    weights = named_weights(model)
    weights["embed.W_E"].leaf.requires_grad_(False)
    weights["blocks.0.attn.W_V"].leaf.requires_grad_(False)
    try:
        snap = _snapshot(model)
        parameter_gradients(model, mem, nmem)
        per_paragraph_norms(model, mem)
        _assert_unchanged(model, snap)
        bad = Paragraphs(torch.full((2, 16), 999), prefix_len=8, ids=("a", "b"))  # ids outside the vocabulary
        with pytest.raises(IndexError):
            parameter_gradients(model, bad, nmem)
        with pytest.raises(IndexError):
            per_paragraph_norms(model, bad)
        _assert_unchanged(model, snap)
    finally:
        weights["embed.W_E"].leaf.requires_grad_(True)
        weights["blocks.0.attn.W_V"].leaf.requires_grad_(True)


def test_gradient_map_reductions_match_raw_gradients(model, mem, nmem):
    nmem = nmem.select(range(5))  # equal sizes: one chunk per set, the whole set
    g_mem = parameter_gradients(model, mem, objective="nll")
    g_nmem = parameter_gradients(model, nmem, objective="nll")
    gm = gradient_map(model, mem, nmem, reduce="max", batch_size=4)
    l2 = gradient_map(model, mem, nmem, reduce="l2")
    mean = gradient_map(model, mem, nmem, reduce="mean")
    for l in range(N_LAYERS):
        for j, c in enumerate(COMPONENTS):
            key = param_name(l, c)
            assert gm.mem[l, j] == pytest.approx(float(g_mem[key].abs().max()), rel=1e-4)
            assert gm.nmem[l, j] == pytest.approx(float(g_nmem[key].abs().max()), rel=1e-4)
            assert l2.mem[l, j] == pytest.approx(float(g_mem[key].norm()), rel=1e-4)
            assert mean.nmem[l, j] == pytest.approx(float(g_nmem[key].abs().mean()), rel=1e-4)
            if c in HEAD_COMPONENTS:
                h = HEAD_COMPONENTS.index(c)
                assert gm.mem_heads[l, 2, h] == pytest.approx(float(g_mem[key][2].abs().max()), rel=1e-4)
    torch.testing.assert_close(gm.mem_heads.amax(1), gm.mem[:, :4])
    torch.testing.assert_close(l2.mem_heads.pow(2).sum(1).sqrt(), l2.mem[:, :4], rtol=1e-4, atol=0)
    torch.testing.assert_close(gm.diff, gm.mem - gm.nmem)
    torch.testing.assert_close(gm.mem_layers, gm.mem.amax(1))
    torch.testing.assert_close(l2.mem_layers, l2.mem.pow(2).sum(1).sqrt(), rtol=1e-4, atol=0)
    torch.testing.assert_close(l2.mem_share, l2.mem_layers.pow(2) / l2.mem_layers.pow(2).sum())
    torch.testing.assert_close(gm.mem_share, l2.mem_share)  # shares of the squared gradient, whatever the reduction
    assert float(gm.nmem_share.sum()) == pytest.approx(1.0)
    top = gm.most_salient()["mem"]
    assert gm.mem_heads[top["layer"], top["head"], HEAD_COMPONENTS.index(top["component"])] == gm.mem_heads.max()
    data = json.loads(json.dumps(gm.to_json()))
    assert len(data["cells"]) == N_LAYERS * 6 and len(data["heads"]) == N_LAYERS * N_HEADS * 4
    assert data["lower_half_share"]["mem"] == pytest.approx(float(gm.mem_share[0]))
    assert data["mem_other"] == {}
    with_emb = gradient_map(model, mem, nmem, include_embeddings=True)
    assert "embed.W_E" in with_emb.mem_other and "blocks.0.attn.b_O" in with_emb.nmem_other  # GPT-Neo: no b_Q
    with pytest.raises(UserError, match="reduce"):
        gradient_map(model, mem, nmem, reduce="median")


def test_sets_of_different_sizes_are_compared_at_equal_size(model):
    """Samples of ONE population: MEM / NMEM map ratios must be centred on 1 even when one set is 5x larger.
    The max of a batch-MEAN gradient shrinks as the batch grows, so comparing whole sets (the old
    behaviour, computed here by hand as the control) favours the smaller set. Averaged over 8 draws."""
    population = _paragraphs(48, 21, "p")
    keys = [param_name(l, c) for l in range(N_LAYERS) for c in COMPONENTS]

    def whole_set(ps):
        g = parameter_gradients(model, ps, objective="nll")
        return torch.stack([g[k].abs().max() for k in keys])

    biased, matched = [], []
    for draw in range(8):
        perm = torch.randperm(48, generator=torch.Generator().manual_seed(draw))
        small, large = population.select(perm[:8].sort().values), population.select(perm[8:].sort().values)
        biased.append(float((whole_set(small) / whole_set(large)).log().mean()))
        gm = gradient_map(model, small, large, reduce="max", seed=draw)
        assert gm.chunk_size == 8 and gm.n_nmem == 40
        matched.append(float((gm.mem / gm.nmem).log().mean()))
    assert sum(biased) / 8 > 0.2, "the control: whole sets of different sizes are NOT comparable"
    assert abs(sum(matched) / 8) < 0.12
    with pytest.raises(UserError, match="chunk_size"):
        gradient_map(model, population.select(range(8)), population.select(range(8, 48)), chunk_size=9)
    with pytest.warns(DeprecationWarning, match="chunk_size"):  # the old name still works, one release
        old = gradient_map(model, population.select(range(8)), population.select(range(8, 48)), set_size=4)
    with pytest.warns(DeprecationWarning, match="chunk_size"):
        assert old.set_size == old.chunk_size == 4


def test_contrastive_map_swaps_roles(model, mem, nmem):
    co = gradient_map(model, mem, nmem, objective="contrastive", reduce="l2")
    nll = gradient_map(model, mem, nmem, objective="nll", reduce="l2")
    torch.testing.assert_close(co.mem, 0.1 * nll.mem, rtol=1e-3, atol=1e-7)
    torch.testing.assert_close(co.nmem, 0.1 * nll.nmem, rtol=1e-3, atol=1e-7)


def _autograd_norms(model, paragraphs):
    """One backward per paragraph: the per-paragraph norms the ghost trick must reproduce."""
    layer = torch.zeros(len(paragraphs), N_LAYERS, len(COMPONENTS))
    heads = torch.zeros(len(paragraphs), N_LAYERS, N_HEADS, 4)
    for i in range(len(paragraphs)):
        g = parameter_gradients(model, paragraphs.select([i]), objective="nll")
        for l in range(N_LAYERS):
            for j, c in enumerate(COMPONENTS):
                w = g[param_name(l, c)].double()
                layer[i, l, j] = w.norm()
                if c in HEAD_COMPONENTS:
                    heads[i, l, :, j] = w.flatten(1).norm(dim=1)
    return layer, heads


def test_per_paragraph_norms_equal_one_backward_per_paragraph(model, mem):
    norms = per_paragraph_norms(model, mem, batch_size=3)
    ref_layer, ref_heads = _autograd_norms(model, mem)
    assert norms.norms.shape == (5, N_LAYERS, 6) and norms.head_norms.shape == (5, N_LAYERS, N_HEADS, 4)
    assert ((norms.norms - ref_layer).abs() / ref_layer).max() < 1e-4
    assert ((norms.head_norms - ref_heads).abs() / ref_heads).max() < 1e-4
    torch.testing.assert_close(
        norms.loss, continuation_nll(model, mem.tokens, mem.prefix_len, reduction="none").detach()
    )
    torch.testing.assert_close(norms.layer_share.sum(1), torch.ones(5))
    with pytest.raises(UserError, match="nll"):
        per_paragraph_norms(model, mem, objective="contrastive")


def test_per_paragraph_norms_other_activation_float64_and_gram_dtype(mem):
    """The recomputed-activation path for a non-gelu_new MLP, a float64 model (float64 Grams), and
    float32 Grams for float32 / half activations."""
    from interp.gradient_norms import _gram

    settings = dict(n_layers=N_LAYERS, d_model=D_MODEL, n_heads=N_HEADS, d_head=D_HEAD, d_mlp=64, d_vocab=50, n_ctx=32)
    settings.update(act_fn="gelu", attn_types=["global"] * N_LAYERS, seed=3)
    m = build_model(**settings)
    norms = per_paragraph_norms(m, mem, batch_size=2)
    ref_layer, ref_heads = _autograd_norms(m, mem)
    assert ((norms.norms - ref_layer).abs() / ref_layer).max() < 1e-4
    assert ((norms.head_norms - ref_heads).abs() / ref_heads).max() < 1e-4
    m64 = run_once(build_model(dtype=torch.float64, **settings))  # the same checkpoint in float64, its hooks whole
    snap = _snapshot(m64)
    norms64 = per_paragraph_norms(m64, mem, batch_size=5)
    _assert_unchanged(m64, snap)
    assert norms64.norms.dtype == torch.float32
    assert ((norms64.norms - ref_layer).abs() / ref_layer).max() < 1e-4
    for dtype, gram_dtype in (
        (torch.float64, torch.float64),
        (torch.float32, torch.float32),
        (torch.bfloat16, torch.float32),
    ):
        assert _gram(torch.ones(2, 3, 4, dtype=dtype)).dtype == gram_dtype


def _fake_norms(values: torch.Tensor) -> PerParagraphNorms:
    n = values.shape[0]
    return PerParagraphNorms(
        ids=tuple(str(i) for i in range(n)),
        components=COMPONENTS,
        norms=values,
        head_norms=torch.ones(n, values.shape[1], 2, 4),
        loss=torch.zeros(n),
    )


def test_compare_norms_statistics():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    mem = torch.rand(12, 3, 6, generator=g) + 0.1
    nmem = torch.rand(15, 3, 6, generator=g) + 0.1
    mem[:, 0] += 1.0  # MEM: clearly larger layer-0 gradients, so a larger layer-0 share
    cmp = compare_norms(_fake_norms(mem), _fake_norms(nmem))
    assert cmp.norm_rank_biserial[0] == pytest.approx(1.0) and cmp.share_rank_biserial[0] == pytest.approx(1.0)
    x, y = mem.pow(2).sum(-1).sqrt(), nmem.pow(2).sum(-1).sqrt()
    for l in range(3):
        u, p = stats.mannwhitneyu(x[:, l].numpy(), y[:, l].numpy(), alternative="two-sided")
        assert cmp.norm_p[l] == pytest.approx(p, rel=1e-5)
        assert cmp.norm_rank_biserial[l] == pytest.approx(2 * u / (12 * 15) - 1, abs=1e-6)
        pooled = ((11 * x[:, l].var() + 14 * y[:, l].var()) / 25).sqrt()
        assert cmp.norm_cohen_d[l] == pytest.approx(float((x[:, l].mean() - y[:, l].mean()) / pooled), rel=1e-4)
    assert cmp.norm_p[0] < 1e-4 and cmp.norm_p[1] > 1e-3
    assert cmp.component_rank_biserial[0].min() == pytest.approx(1.0)
    data = json.loads(json.dumps(cmp.to_json()))
    assert data["layers"][0]["norm"]["p_bonferroni"] == pytest.approx(min(1.0, 3 * float(cmp.norm_p[0])), rel=1e-5)
    with pytest.raises(UserError, match="at least 2"):
        compare_norms(_fake_norms(mem[:1]), _fake_norms(nmem))


def test_norm_comparison_reads_back_what_it_writes():
    """`NormComparison.from_json` of the written comparison (NaN written as null) writes the same JSON again, with
    float32 tensors of the same shapes and NaNs, and the flat names reading its tests' numbers."""
    g = torch.Generator().manual_seed(3)
    mem, nmem = torch.rand(6, 3, 6, generator=g) + 0.1, torch.rand(5, 3, 6, generator=g) + 0.1
    mem[:, :, 0], nmem[:, :, 0] = 1.0, 1.0  # one component equal everywhere: its rank test is NaN
    for a, b in ((mem, nmem), (torch.ones(4, 2, 6), torch.ones(3, 2, 6))):  # all equal: Cohen's d is NaN
        cmp = compare_norms(_fake_norms(a), _fake_norms(b))
        data = json.loads(json.dumps(to_jsonable(cmp.to_json())))
        back = NormComparison.from_json(data)
        assert json.loads(json.dumps(to_jsonable(back.to_json()))) == data
        assert back.components == cmp.components and (back.n_mem, back.n_nmem) == (cmp.n_mem, cmp.n_nmem)
        for name in ("norm_mem_median", "share_cohen_d", "norm_p", "component_rank_biserial", "component_p"):
            x, y = getattr(back, name), getattr(cmp, name)
            assert x.dtype == y.dtype == torch.float32 and x.shape == y.shape
            assert torch.equal(x.isnan(), y.isnan()) and torch.allclose(x.nan_to_num(), y.nan_to_num())
        assert back.lower_half_p == pytest.approx(cmp.lower_half_p, rel=1e-6, nan_ok=True)
        assert back.share.rank_biserial is back.share_rank_biserial and back.verdict() == cmp.verdict()
    assert math.isnan(
        compare_norms(_fake_norms(torch.ones(4, 2, 6)), _fake_norms(torch.ones(3, 2, 6))).lower_half_cohen_d
    )


def test_testbed_norms_and_grad_map_command(testbed, testbed_paragraph_set, tmp_path):
    """The testbed's real LayerNorm weights, the CLI end to end, and its JSON matching the library."""
    from interp.cli import main

    counts = torch.tensor(testbed_paragraph_set.counts)
    chosen = testbed_paragraph_set.select(torch.cat([(counts == 128).nonzero()[:3, 0], (counts == 1).nonzero()[:3, 0]]))
    ghost = per_paragraph_norms(testbed, chosen.select([0, 3]))
    cfg = testbed.cfg
    for i in (0, 1):
        g = parameter_gradients(testbed, chosen.select([[0, 3][i]]), objective="nll")
        ref = torch.tensor([[float(g[param_name(l, c)].norm()) for c in COMPONENTS] for l in range(cfg.n_layers)])
        assert ((ghost.norms[i] - ref).abs() / ref).max() < 1e-4

    path = tmp_path / "six.jsonl"
    chosen.save_jsonl(path)
    out_json, out_html = tmp_path / "g.json", tmp_path / "g.html"
    assert (
        main(
            [
                "grad-map",
                "--model",
                "testbed",
                "--paragraphs",
                str(path),
                "--set-size",
                "3",
                "--json",
                str(out_json),
                "--html",
                str(out_html),
            ]
        )
        == 0
    )
    data = json.loads(out_json.read_text())
    assert data["mem_ids"] == list(chosen.ids[:3]) and data["nmem_ids"] == list(chosen.ids[3:])
    gm = gradient_map(testbed, chosen.select([0, 1, 2]), chosen.select([3, 4, 5]))
    cells = data["map"]["cells"]
    assert len(cells) == cfg.n_layers * 6 and len(data["map"]["heads"]) == cfg.n_layers * cfg.n_heads * 4
    assert [c["mem"] for c in cells] == pytest.approx(gm.mem.flatten().tolist(), rel=1e-5)
    assert [c["diff"] for c in cells] == pytest.approx(gm.diff.flatten().tolist(), rel=1e-5, abs=1e-9)
    assert len(data["comparison"]["layers"]) == cfg.n_layers
    page = out_html.read_text()
    assert page.count("Plotly.newPlot") == 6 and "<script src=" not in page  # plotly.js inlined once: works offline
    assert main(["grad-map", "--model", "testbed", "--paragraphs", str(path), "--set-size", "1"]) == 2


def test_lower_half_verdict_is_a_rank_test_on_per_paragraph_shares():
    from scipy import stats

    g = torch.Generator().manual_seed(1)
    mem, nmem = torch.rand(12, 3, 6, generator=g) + 0.1, torch.rand(15, 3, 6, generator=g) + 0.1
    cmp = compare_norms(_fake_norms(mem), _fake_norms(nmem))
    sq_m, sq_n = mem.pow(2).sum(-1), nmem.pow(2).sum(-1)  # [n, layer]; 3 layers: layer 0 + half of layer 1
    low_m = (sq_m[:, 0] + 0.5 * sq_m[:, 1]) / sq_m.sum(-1)
    low_n = (sq_n[:, 0] + 0.5 * sq_n[:, 1]) / sq_n.sum(-1)
    u, p = stats.mannwhitneyu(low_m.numpy(), low_n.numpy(), alternative="two-sided")
    assert cmp.lower_half_p == pytest.approx(p, rel=1e-5)
    assert cmp.lower_half_rank_biserial == pytest.approx(2 * u / (12 * 15) - 1, abs=1e-6)
    assert cmp.lower_half_mem_median == pytest.approx(float(low_m.median()), rel=1e-5)
    assert cmp.lower_half_p > 0.05 and cmp.verdict().startswith("no difference detected")
    lower, upper = mem.clone(), mem.clone()
    lower[:, 0] += 1.0
    upper[:, 2] += 1.0
    assert "as the paper found" in compare_norms(_fake_norms(lower), _fake_norms(nmem)).verdict()
    assert "opposite of the paper" in compare_norms(_fake_norms(upper), _fake_norms(nmem)).verdict()
    assert json.loads(json.dumps(cmp.to_json()))["lower_half_share"]["p"] == pytest.approx(p, rel=1e-5)


def test_gradients_section_takes_its_verdict_from_the_test_not_the_batch_numbers(model, mem, nmem):
    """The batch map's two numbers point one way; the per-paragraph test is made to point the other (and
    to be significant): the section's verdict follows the test and names the share it shows correctly."""
    from interp.report.types import Bundle
    from interp.views.sections.gradients import gradients_section

    nll = gradient_map(model, mem, nmem, objective="nll", reduce="max")
    co = gradient_map(model, mem, nmem, objective="contrastive", reduce="max")
    low = nll.lower_half_share()
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(12, 2, 6, generator=g) + 0.1, torch.rand(12, 2, 6, generator=g) + 0.1
    a[:, 1 if low["mem"] > low["nmem"] else 0] += 1.0  # MEM per paragraph: opposite to the batch numbers
    cmp = compare_norms(_fake_norms(a), _fake_norms(b))
    assert cmp.lower_half_p < 0.01 and (cmp.lower_half_rank_biserial > 0) != (low["mem"] > low["nmem"])
    parts = dict(nll=nll, contrastive=co, norms_mem=_fake_norms(a), norms_nmem=_fake_norms(b), comparison=cmp)
    text = " ".join(gradients_section(Bundle(parts), {}).notes)
    assert cmp.verdict() in text and f"p = {cmp.lower_half_p:.2g}" in text
    wrong = "as the paper found" if cmp.lower_half_rank_biserial < 0 else "opposite of the paper"
    assert wrong not in text
    assert "max-|grad| per-layer total" not in text and "squared gradient norm" in text


@pytest.mark.parametrize("cap", [None, 2.0])
def test_chunked_token_nll_and_its_input_gradient_equal_autograd(tiny_model, cap):
    """`_ChunkedTokenNLL` over chunks of 3 rows (a partial last one), with and without a logit soft cap:
    the NLLs and the residual's gradient equal autograd through the unchunked logits."""
    from interp.gradient_norms import _ChunkedTokenNLL, _rows_token_nll

    torch.manual_seed(5)
    m = tiny_model(d_vocab=61, **({} if cap is None else {"output_logits_soft_cap": cap}))  # capped: hooked only
    resid = torch.randn(11, m.cfg.d_model, requires_grad=True)
    targets = torch.randint(0, 61, (11,))
    weight = torch.rand(11)
    _, w_u, b_u = unembed_parts(m)
    w_u, b_u = w_u.detach(), b_u.detach() + 0.3
    ref = _rows_token_nll(resid, w_u, b_u, targets, m.cfg)
    (ref_grad,) = torch.autograd.grad((ref * weight).sum(), resid)
    nll = _ChunkedTokenNLL.apply(resid, w_u, b_u, targets, m.cfg, 3)
    (grad,) = torch.autograd.grad((nll * weight).sum(), resid)
    torch.testing.assert_close(nll, ref.detach())
    torch.testing.assert_close(grad, ref_grad)
    uncapped = -(resid @ w_u + b_u).log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    assert torch.allclose(ref, uncapped) == (cap is None)  # the cap is really in play


def test_per_paragraph_norms_with_chunked_unembedding_equal_one_backward_per_paragraph(model, mem, monkeypatch):
    """The whole ghost pass with the continuation unembedded 3 rows at a time."""
    import interp.gradient_norms as gn

    monkeypatch.setattr(gn, "_chunk_rows", lambda d_vocab: 3)
    norms = per_paragraph_norms(model, mem, batch_size=2)
    ref_layer, ref_heads = _autograd_norms(model, mem)
    assert ((norms.norms - ref_layer).abs() / ref_layer).max() < 1e-4
    assert ((norms.head_norms - ref_heads).abs() / ref_heads).max() < 1e-4


def test_chunk_rows_bound_the_vocabulary_sized_temporaries():
    from interp.gradient_norms import CE_CHUNK_BYTES, MIN_CHUNK_ROWS, _chunk_rows

    for d_vocab in (50, 4096, 50257, 256000):
        rows = _chunk_rows(d_vocab)
        assert rows * d_vocab * 4 <= CE_CHUNK_BYTES or rows == MIN_CHUNK_ROWS
        assert rows >= MIN_CHUNK_ROWS
    assert _chunk_rows(50257) == 83 and _chunk_rows(4096) == 1024


def test_ghost_batch_keeps_saved_activations_within_the_loops_gradients(model):
    """A pass holds at most batch_size paragraphs, at least 1, and no more than fit their estimated
    bytes in the layer-weight gradients' (float32 accumulators and returned gradients)."""
    from interp.gradient_norms import _ghost_batch, _ghost_bytes_per_paragraph
    from interp.gradients import selected_weights

    budget = sum(w.tensor.numel() * 8 for w in selected_weights(model).values())  # float32 model
    for seq_len in (4, 16, 64, 512):
        batch = _ghost_batch(model, seq_len, 1000)
        assert batch == 1 or batch * _ghost_bytes_per_paragraph(model.cfg, seq_len) <= budget
        assert (batch + 1) * _ghost_bytes_per_paragraph(model.cfg, seq_len) > budget
    assert _ghost_batch(model, 4, 2) == 2 and _ghost_batch(model, 512, 1000) == 1
