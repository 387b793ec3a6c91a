"""The seam's promises, checked on the testbed under whichever backend is active (CI runs this module under both:
HookedTransformer with transformer-lens<4, TransformerBridge with transformer-lens>=4).

Each test compares interp's answer with one computed without interp: the checkpoint's own Hugging Face model
(logits, gradients), teacher forcing (greedy decoding), the mask (which weights moved), a reload (saving).
"""

from __future__ import annotations

import pytest
import torch

from interp import backend, load_model, save_model, testbed_paragraphs
from interp.gradients import parameter_gradients
from interp.models import TESTBED_DIR
from interp.unlearning import UnlearnConfig, unlearn


def _em(logits, tokens, p):
    return (logits[:, p - 1 : -1].argmax(-1) == tokens[:, p:]).long().cumprod(1).sum(1)


@pytest.fixture(scope="module")
def hf_testbed():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(TESTBED_DIR, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def paragraphs():
    return testbed_paragraphs().select(range(8))


def test_logits_and_em_equal_the_checkpoints_own_forward(testbed, hf_testbed, paragraphs):
    with torch.no_grad():
        ours = testbed(paragraphs.tokens).float()
        theirs = hf_testbed(paragraphs.tokens).logits.float()
    assert (ours - theirs).abs().max() <= 1e-4
    p = paragraphs.prefix_len
    assert torch.equal(_em(ours, paragraphs.tokens, p), _em(theirs, paragraphs.tokens, p))


def test_gradients_are_the_checkpoints_gradients_in_transformerlens_layout(testbed, hf_testbed, paragraphs):
    two = paragraphs.select([0, 1])
    ours = parameter_gradients(testbed, two, objective="nll")
    p = two.prefix_len
    hf_testbed.zero_grad()
    logp = hf_testbed(two.tokens).logits[:, p - 1 : -1].float().log_softmax(-1)
    (-logp.gather(-1, two.tokens[:, p:, None]).mean(dim=(1, 2)).sum() / 2).backward()
    block = hf_testbed.transformer.h[2]
    n_heads = testbed.cfg.n_heads
    expected = {
        "blocks.2.mlp.W_out": block.mlp.c_proj.weight.grad.T,
        "blocks.2.mlp.W_in": block.mlp.c_fc.weight.grad.T,
        "blocks.2.attn.W_Q": block.attn.attention.q_proj.weight.grad.unflatten(0, (n_heads, -1)).transpose(1, 2),
        "blocks.2.attn.W_O": block.attn.attention.out_proj.weight.grad.unflatten(1, (n_heads, -1)).permute(1, 2, 0),
    }
    for name, g in expected.items():
        assert ours[name].shape == g.shape, name
        assert (ours[name] - g).abs().max() <= 1e-6 * max(1.0, float(g.abs().max())), name
    assert all(q.grad is None for q in testbed.parameters())


def test_greedy_decoding_equals_teacher_forced_argmax(testbed, paragraphs):
    p = paragraphs.prefix_len
    decoded = backend.greedy_decode(testbed, paragraphs.tokens[:, :p], 20)
    with torch.no_grad():
        forced = testbed(torch.cat([paragraphs.tokens[:, :p], decoded], 1))[:, p - 1 : -1].argmax(-1)
    assert torch.equal(decoded, forced)


def test_hooks_are_removed_when_the_body_raises(testbed, paragraphs):
    seen = []
    with pytest.raises(RuntimeError, match="inside"):
        with backend.hooks_on(testbed, [(backend.act_name("z", 1), lambda x, hook: seen.append(x.shape))]):
            with torch.no_grad():
                testbed(paragraphs.tokens[:1])
            raise RuntimeError("inside")
    with torch.no_grad():
        testbed(paragraphs.tokens[:1])
    assert len(seen) == 1


def test_run_to_and_run_from_compose_to_the_forward(testbed, paragraphs):
    tokens = paragraphs.tokens[:2]
    with torch.no_grad():
        full = testbed(tokens)
        resid = backend.run_to(testbed, tokens, 3)
        assert (backend.run_from(testbed, resid, 3) - full).abs().max() <= 1e-5
        last = backend.run_from(testbed, resid, 3, testbed.cfg.n_layers)
        end = backend.unembed(testbed, backend.final_norm(testbed, last))
        assert (end - full).abs().max() <= 1e-4


def test_masked_unlearning_moves_only_masked_weights_and_saves_them(testbed, paragraphs, tmp_path):
    before = {n: w.tensor.detach().clone() for n, w in backend.named_weights(testbed).items()}
    config = UnlearnConfig(method="unlearn", select="topk", fraction=1e-4, lr=1e-2, steps=2, seed=0)
    mask = {backend.param_name(2, "W_out"): torch.rand_like(before[backend.param_name(2, "W_out")]) < 0.01}
    result = unlearn(testbed, paragraphs.select([0]), paragraphs.select([4, 5]), config, mask=mask)
    for name, w in backend.named_weights(testbed).items():  # the model given is untouched
        assert torch.equal(w.tensor.detach(), before[name]), name
    edited = backend.named_weights(result.model)
    for name, w in edited.items():
        moved = w.tensor.detach() != before[name]
        allowed = mask.get(name, torch.zeros_like(moved))
        assert not (moved & ~allowed).any(), name
    assert 0 < result.weights_changed <= int(mask[backend.param_name(2, "W_out")].sum())
    reloaded = load_model(str(save_model(result.model, tmp_path / "edited")), device="cpu")
    for name, w in backend.named_weights(reloaded).items():
        if name in edited:
            assert torch.equal(w.tensor.detach(), edited[name].tensor.detach()), name
    with torch.no_grad():
        assert (reloaded(paragraphs.tokens[:2]) - result.model(paragraphs.tokens[:2])).abs().max() <= 1e-5


def test_copy_model_after_a_backward_is_independent(testbed, paragraphs):
    parameter_gradients(testbed, paragraphs.select([0]), objective="nll")  # leaves the bridge's forward caches
    copied = backend.copy_model(testbed)
    with torch.no_grad():
        backend.weight(copied, 1, "W_out")[3] += 1.0
    assert not torch.equal(backend.weight(copied, 1, "W_out"), backend.weight(testbed, 1, "W_out"))
    with torch.no_grad():
        assert not torch.equal(copied(paragraphs.tokens[:1]), testbed(paragraphs.tokens[:1]))


def test_a_copy_of_a_model_that_ran_runs_on_its_own_modules_after_the_model_is_gone(paragraphs):
    """The bridge wires hooks at a block's first forward that reach its attention through weak proxies: a copy
    must not keep the source's (its forward wrote into the source's attention, and failed once it was freed)."""
    import gc

    source = load_model(str(TESTBED_DIR))
    tokens = paragraphs.tokens[:2]
    with torch.no_grad():
        expected = source(tokens)
        copied = backend.copy_model(source)
        kept = [vars(block.attn).get("_captured_pre_ln_residual") for block in source.blocks]
        copied(paragraphs.tokens[2:3])
        after = [vars(block.attn).get("_captured_pre_ln_residual") for block in source.blocks]
        assert all(a is b for a, b in zip(after, kept))
        del source
        gc.collect()
        assert torch.equal(copied(tokens), expected)


def test_cost_accounting_counts_the_blocks_and_unembedding_of_a_forward(testbed, paragraphs):
    """Each backend's block and unembedding are found and sized (the bridge's components keep no `cfg`)."""
    from interp.cost import count_work, forward_flops

    tokens = paragraphs.tokens[:2]
    with count_work() as work, torch.no_grad():
        testbed(tokens)
    rows, seq = tokens.shape
    assert work.forward_positions == testbed.cfg.n_layers * rows * seq
    assert work.logit_positions == rows * seq
    assert work.forward_flops == pytest.approx(forward_flops(testbed.cfg, rows, seq))
    assert work.backward_flops == 0


@pytest.mark.parametrize("kind", ["llama", "qwen2", "olmo2"])
def test_llama_family_checkpoints_run_under_this_backend(kind, tmp_path):
    """A tiny Llama (grouped-query), Qwen2 (q/k/v biases) and OLMo-2 (post-norm, q/k norms): the log-probs of the
    checkpoint's own forward, the gated MLP's weights and neuron hook where the neuron-level methods read them,
    cost accounting's count of a forward, and greedy decoding (teacher-forced argmax)."""
    from test_models import FAMILY_VOCAB, _family_model, _tokenizer

    hf = _family_model(kind)
    hf.save_pretrained(tmp_path)
    _tokenizer(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    tokens = torch.randint(0, FAMILY_VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    logits, acts = backend.capture(model, tokens, [backend.act_name("post", 1)])
    with torch.no_grad():
        theirs = hf(tokens).logits
    assert (logits.log_softmax(-1) - theirs.log_softmax(-1)).abs().max() <= 1e-4
    assert acts["post", 1].shape == (2, 16, hf.config.intermediate_size)
    mlp = hf.model.layers[1].mlp
    assert torch.equal(backend.weight(model, 1, "W_out").detach(), mlp.down_proj.weight.detach().T)
    assert torch.equal(backend.weight(model, 1, "W_gate").detach(), mlp.gate_proj.weight.detach().T)
    from interp.cost import count_work, forward_flops

    with count_work() as work, torch.no_grad():  # each block is found and sized (a gated MLP counts 3 matrices)
        model(tokens)
    assert work.forward_flops == pytest.approx(forward_flops(model.cfg, *tokens.shape))
    decoded = backend.greedy_decode(model, tokens[:, :6], 10)
    with torch.no_grad():
        forced = model(torch.cat([tokens[:, :6], decoded], 1))[:, 5:-1].argmax(-1)
    assert torch.equal(decoded, forced)


def test_gradient_maps_and_norms_of_a_gated_grouped_query_model(tmp_path):
    """A tiny Llama (gated MLP, 2 key/value heads for 4 query heads): the gradient map, the per-paragraph norms and
    the locator's gradient scores run, W_gate is a seventh component, every layer weight (W_gate, `_W_K`, `_W_V`
    included) counts in a layer's norm, and a head's W_K / W_V cells are those of the key/value head it reads."""
    from test_models import FAMILY_VOCAB, _family_model, _tokenizer

    from interp.data import Paragraphs
    from interp.gradient_norms import per_paragraph_norms
    from interp.gradients import GATED_COMPONENTS, gradient_map, parameter_gradients, selected_weights
    from interp.locator.gradient_scores import gradient_scores

    hf = _family_model("llama")
    hf.save_pretrained(tmp_path)
    _tokenizer(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    tokens = torch.randint(0, FAMILY_VOCAB, (6, 16), generator=torch.Generator().manual_seed(3))
    mem, nmem = Paragraphs(tokens[:3], 8, ("m0", "m1", "m2")), Paragraphs(tokens[3:], 8, ("n0", "n1", "n2"))
    assert {n for n in selected_weights(model) if n.startswith("blocks.0.")} >= {
        "blocks.0.attn._W_K", "blocks.0.attn._W_V", "blocks.0.mlp.W_gate"
    }  # fmt: skip
    grads = parameter_gradients(model, mem.select([0]), objective="nll", batch_size=1)
    norms = per_paragraph_norms(model, mem)
    assert norms.components == GATED_COMPONENTS and norms.norms.shape == (3, 2, 7)
    layer0 = sum(float(g.double().pow(2).sum()) for n, g in grads.items() if n.startswith("blocks.0."))
    assert float(norms.layer_norms[0, 0]) ** 2 == pytest.approx(layer0, rel=1e-4)
    k = grads["blocks.1.attn._W_K"]  # [kv head, d_model, d_head]; query heads 0, 1 read kv head 0; 2, 3 read 1
    assert torch.allclose(norms.head_norms[0, 1, :, 1], k.flatten(1).norm(dim=1).repeat_interleave(2), rtol=1e-4)
    grad_map = gradient_map(model, mem, nmem, objective="nll", reduce="max", batch_size=3)
    assert grad_map.components == GATED_COMPONENTS and grad_map.mem.shape == (2, 7)
    assert torch.equal(grad_map.mem_heads[:, 0, 1], grad_map.mem_heads[:, 1, 1])  # same key/value head
    assert not torch.equal(grad_map.mem_heads[:, 1, 1], grad_map.mem_heads[:, 2, 1])
    scores = gradient_scores(model, mem, nmem, variants=("gradient_l2", "grad_x_weight"), batch_size=3)
    assert scores["gradient_l2"].score.shape == (2, 4) and torch.isfinite(scores["grad_x_weight"].score).all()
    neurons = gradient_scores(model, mem, nmem, unit="neuron", variants=("gradient_l2",), batch_size=3)
    assert neurons["gradient_l2"].score.shape == (2, hf.config.intermediate_size)
