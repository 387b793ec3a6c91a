"""load_model on local Hugging Face folders (GPT-Neo, GPT-2, NeoX; the Llama family), saving back, bad specs."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from interp import backend, load_model, save_model
from interp.errors import UserError

VOCAB = 96
# the tests of the bridge's weight views compare them with a HookedTransformer's parameters: the hooked backend's
HOOKED_ONLY = pytest.mark.skipif(
    backend.NAME != "hooked", reason="compares the bridge's views with a HookedTransformer's own parameters"
)


def _tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(VOCAB - 1)} | {"<|endoftext|>": VOCAB - 1}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(folder)


def _hf_model(arch: str):
    import transformers as tf

    torch.manual_seed(1)
    if arch == "neo":
        cfg = tf.GPTNeoConfig(
            vocab_size=VOCAB,
            max_position_embeddings=64,
            hidden_size=32,
            num_layers=2,
            attention_types=[[["global", "local"], 1]],
            num_heads=4,
            intermediate_size=64,
            window_size=8,
            activation_function="gelu_new",
        )
        return tf.GPTNeoForCausalLM(cfg)
    if arch == "gpt2":
        cfg = tf.GPT2Config(
            vocab_size=VOCAB,
            n_positions=64,
            n_ctx=64,  # real GPT-2 configs carry n_ctx
            n_embd=32,
            n_layer=2,
            n_head=4,
        )
        return tf.GPT2LMHeadModel(cfg)
    cfg = tf.GPTNeoXConfig(
        vocab_size=VOCAB,
        max_position_embeddings=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        rotary_pct=0.25,
        use_parallel_residual=True,
    )
    return tf.GPTNeoXForCausalLM(cfg)


@pytest.fixture(scope="module", params=["neo", "gpt2", "neox"])
def hf_folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    model = _hf_model(request.param).eval()
    # Non-trivial LayerNorm and bias values, so a conversion that dropped or folded them would show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    _tokenizer(folder)
    return folder, model


def _log_probs_hf(model, tokens):
    with torch.no_grad():
        return model(tokens).logits.log_softmax(-1)


def test_local_folder_matches_transformers(hf_folder):
    folder, hf = hf_folder
    tokens = torch.randint(0, VOCAB, (3, 20))
    model = load_model(str(folder), device="cpu")
    assert not model.training
    assert model.tokenizer is not None
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
    assert (ours - _log_probs_hf(hf, tokens)).abs().max() <= 1e-4


def test_weights_are_loaded_unprocessed(hf_folder):
    folder, hf = hf_folder
    model = load_model(str(folder), device="cpu")
    ln_w = next(p for n, p in hf.named_parameters() if ("ln_1" in n or "input_layernorm" in n) and n.endswith("weight"))
    assert torch.equal(model.blocks[0].ln1.w.detach(), ln_w.detach())


def test_save_and_reload_edited_weights(hf_folder, tmp_path):
    folder, _ = hf_folder
    model = load_model(str(folder), device="cpu")
    with torch.no_grad():
        model.blocks[1].attn.W_V[2, 5, 3] += 0.5
        model.blocks[0].mlp.W_out[7, 1] -= 0.25
    tokens = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        before = model(tokens)
    save_model(model, tmp_path / "edited")
    again = load_model(str(tmp_path / "edited"), device="cpu")
    for name, p in model.state_dict().items():
        if not isinstance(p, torch.Tensor) or name.endswith(("mask", "IGNORE")) or "rotary" in name:
            continue
        assert torch.equal(p, again.state_dict()[name]), name
    with torch.no_grad():
        assert (again(tokens) - before).abs().max() <= 1e-5


def test_testbed_loads_as_gpt_neo(testbed):
    cfg = testbed.cfg
    assert backend.architecture(testbed) == "GPTNeoForCausalLM"
    assert cfg.n_layers >= 4 and cfg.n_heads >= 4
    from interp.models import model_source

    assert model_source(testbed).hf_config["attention_layers"][:2] == ["global", "local"]
    if backend.NAME == "hooked":  # the TransformerBridge's config has no attn_types (the Hugging Face modules attend)
        assert cfg.attn_types[:2] == ["global", "local"]
        assert not cfg.use_attn_scale


@pytest.mark.parametrize("spec", ["no-such-model-xyz", "/no/such/folder/anywhere"])
def test_unknown_spec_names_the_three_kinds(spec):
    with pytest.raises(UserError, match="testbed"):
        load_model(spec)


def test_folder_without_config(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_model(str(tmp_path))


def test_tokenizer_that_does_not_match(hf_folder, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    folder, _ = hf_folder
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    big = AutoTokenizer.from_pretrained(folder)
    big.add_tokens([f"extra{i}" for i in range(10)])
    big.save_pretrained(bad)
    with pytest.raises(UserError, match="tokenizer"):
        load_model(str(bad))


def test_official_name_offline_fails_fast(monkeypatch):
    import time

    import interp.models as models

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    t0 = time.time()
    with pytest.raises(UserError, match="network"):
        load_model("gpt2")
    assert time.time() - t0 < 10


def test_hooks_are_hookpoints(testbed):
    assert isinstance(testbed.blocks[1].attn.hook_pattern, HookPoint)


@HOOKED_ONLY
def test_bridge_weight_views_equal_hookedtransformers_weights(hf_folder):
    """The TransformerBridge backend's layout maps (interp.backend.bridge_weights), applied to the Hugging Face
    model's own parameters, give every HookedTransformer weight exactly, share the Hugging Face storage (an
    edit through the view is an edit of the checkpoint), and `leaf_masks` puts a head's mask where that
    head's weights lie in the fused leaf (GPT-2's c_attn, NeoX's query_key_value)."""
    from interp.backend import leaf_masks
    from interp.backend.bridge_weights import named_weights

    folder, hf = hf_folder
    model = load_model(str(folder), device="cpu")
    arch = type(hf).__name__
    views = named_weights(hf, arch, model.cfg.n_layers, model.cfg.n_heads)
    hooked = dict(model.named_parameters())
    assert len(views) > 10 * model.cfg.n_layers
    for name, w in views.items():
        assert torch.equal(w.tensor.detach(), hooked[name].detach()), name
        assert w.tensor.untyped_storage().data_ptr() == w.leaf.untyped_storage().data_ptr(), name
    absent = set(hooked) - set(views)  # HookedTransformer's zero biases the checkpoint has no tensor for
    assert all(".b_" in n or "IGNORE" in n for n in absent), sorted(absent)
    mask = torch.zeros_like(hooked["blocks.1.attn.W_K"], dtype=torch.bool)
    mask[2] = True
    (leaf,), (leaf_mask,) = leaf_masks(views, {"blocks.1.attn.W_K": mask})
    assert leaf is views["blocks.1.attn.W_K"].leaf and int(leaf_mask.sum()) == int(mask.sum())
    with torch.no_grad():
        leaf.add_(leaf_mask.float())  # moves exactly head 2's W_K, wherever the architecture stores it
    for name, w in views.items():
        if w.leaf is leaf:
            moved = (w.tensor.detach() - hooked[name].detach()).abs() > 0
            assert torch.equal(moved, mask) if name == "blocks.1.attn.W_K" else not moved.any(), name


FAMILY_VOCAB = 256
# tiny random checkpoints of the Llama family: gated MLPs, RMSNorm (OLMo: weightless LayerNorm), rotary positions;
# grouped-query attention where the architecture has it, biases on q/k/v (Qwen2), q/k norms (Qwen3, OLMo-2),
# post-norm blocks (OLMo-2), a scaled embedding and 1 + w norms (Gemma)
FAMILY = {
    "llama": ("LlamaConfig", {"num_key_value_heads": 2}),
    "mistral": ("MistralConfig", {"num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", {"num_key_value_heads": 2}),
    "qwen3": ("Qwen3Config", {"num_key_value_heads": 2, "head_dim": 16}),
    "gemma": ("GemmaConfig", {"num_key_value_heads": 2, "head_dim": 16}),
    "olmo": ("OlmoConfig", {}),
    "olmo2": ("Olmo2Config", {}),
}


def _family_model(kind: str):
    import transformers as tf

    config_class, extra = FAMILY[kind]
    torch.manual_seed(2)
    config = getattr(tf, config_class)(
        vocab_size=FAMILY_VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        **extra,
    )
    model = tf.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so dropping or mis-folding one would show
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module", params=list(FAMILY))
def family_folder(request, tmp_path_factory):
    # the folder's name says "llama" whatever the architecture: the architecture must come from config.json
    if request.param == "gemma" and backend.NAME == "bridge":
        pytest.skip("Gemma has no TransformerLens-named weight table under the bridge (docs/architectures.md)")
    folder = tmp_path_factory.mktemp(f"llama-{request.param}")
    model = _family_model(request.param)
    model.save_pretrained(folder)
    _tokenizer(folder)
    return folder, model


def test_llama_family_folder_matches_transformers(family_folder):
    folder, hf = family_folder
    tokens = torch.randint(0, FAMILY_VOCAB, (3, 24), generator=torch.Generator().manual_seed(0))
    model = load_model(str(folder), device="cpu")
    assert model.cfg.gated_mlp and model.cfg.positional_embedding_type == "rotary"
    with torch.no_grad():
        ours = model(tokens).log_softmax(-1)
    assert (ours - _log_probs_hf(hf, tokens)).abs().max() <= 1e-4


def test_gated_mlps_fire_the_neuron_hook_the_neuron_methods_read(family_folder):
    """Restoration's MLP coefficients and the neuron-level locator methods read `mlp.hook_post`: for a gated MLP
    it must be what the checkpoint's down projection reads (act(gate) * up), so that patching or ablating it
    moves the output."""
    from interp.backend import act_name, capture, hooks_on

    folder, hf = family_folder
    model = load_model(str(folder), device="cpu")
    tokens = torch.randint(0, FAMILY_VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    read: list[torch.Tensor] = []
    handle = hf.model.layers[1].mlp.down_proj.register_forward_pre_hook(lambda module, args: read.append(args[0]))
    try:
        with torch.no_grad():
            hf(tokens)
    finally:
        handle.remove()
    post = act_name("post", 1)
    logits, acts = capture(model, tokens, [post])
    assert (acts[post] - read[0]).abs().max() <= 1e-5
    with hooks_on(model, [(post, lambda x, hook: torch.zeros_like(x))]), torch.no_grad():
        assert not torch.allclose(model(tokens), logits)


def test_an_unsupported_architecture_is_one_line_naming_the_supported_ones(tmp_path):
    import json

    from interp.models import SUPPORTED_LOCAL

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FalconForCausalLM"], "model_type": "falcon"}))
    with pytest.raises(UserError) as raised:
        load_model(str(tmp_path))
    message = str(raised.value)
    assert "\n" not in message and "FalconForCausalLM" in message
    assert all(arch in message for arch in SUPPORTED_LOCAL) and "LlamaForCausalLM" in SUPPORTED_LOCAL


@HOOKED_ONLY
def test_bridge_weight_views_of_the_llama_family_equal_hookedtransformers_weights(family_folder):
    """The bridge backend's layout maps for the Llama family, on the Hugging Face model's own parameters, give
    every HookedTransformer weight exactly (key / value weights as `_W_K` / `_W_V` under grouped-query
    attention), in HookedTransformer's order, sharing the checkpoint's storage. Gemma's hooked weights are
    processed (1 + w norms, a scaled embedding), so the bridge does not map it."""
    from interp.backend.bridge_weights import ARCHITECTURES, named_weights

    folder, hf = family_folder
    arch = type(hf).__name__
    if arch not in ARCHITECTURES:
        assert arch == "GemmaForCausalLM"
        return
    model = load_model(str(folder), device="cpu")
    cfg = model.cfg
    views = named_weights(hf, arch, cfg.n_layers, cfg.n_heads, cfg.n_key_value_heads)
    hooked = dict(model.named_parameters())
    for name, w in views.items():
        assert torch.equal(w.tensor.detach(), hooked[name].detach()), name
        assert w.tensor.untyped_storage().data_ptr() == w.leaf.untyped_storage().data_ptr(), name
    absent = set(hooked) - set(views)  # the zero biases and OLMo's unit norms the checkpoint has no tensor for
    assert all(".b_" in n or "._b_" in n or "ln" in n for n in absent), sorted(absent)
    assert "blocks.1.mlp.W_gate" in views
    assert list(views) == [n for n in hooked if n in views]


def test_a_missing_shipped_model_names_itself_and_how_to_rebuild_it(monkeypatch, tmp_path):
    import re

    import interp.models

    expected = {
        "testbed": "the bundled testbed is missing from {}; rebuild it with `interp testbed build`",
        "testbed-companion": "the testbed's companion is missing from {}; rebuild it with "
        "interp.testbed.build.build_companion()",
        "testbed-reference": "the testbed's reference model is missing from {}; rebuild it with `interp testbed "
        "build --reference --force` (about 35 minutes on 2 cores)",
    }
    assert set(interp.models.SHIPPED) == set(expected)
    for spec, (_, rebuild) in list(interp.models.SHIPPED.items()):
        monkeypatch.setitem(interp.models.SHIPPED, spec, (tmp_path, rebuild))
        with pytest.raises(UserError, match=re.escape(expected[spec].format(tmp_path))):
            load_model(spec)
