"""Loading into a HookedTransformer and converting its weights back to Hugging Face names (TransformerLens 3.x).

Weights are loaded AS-IS: no LayerNorm folding, no centering, no value-bias folding, so every weight a
result names is the checkpoint's own weight, reshaped, and `hf_state` gives it back bit-for-bit.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import loading_from_pretrained as tl_loading

from interp.backend.hf_layout import TO_HF

NO_PROCESSING = dict(fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False)

# TransformerLens converts these configs from the checkpoint's own config.json
_FROM_CONFIG = (
    "GPTNeoForCausalLM",
    "GPT2LMHeadModel",
    "GPTNeoXForCausalLM",
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)
# TransformerLens converts these checkpoints' weights but knows their configs by official name only (its fixed
# sizes): `_family_config` reads the same fields from the checkpoint's config.json
_BY_NAME_ONLY = ("GemmaForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM")
LOCAL_ARCHITECTURES = _FROM_CONFIG + _BY_NAME_ONLY


@contextlib.contextmanager
def _neutral_path(path: str) -> Iterator[str]:
    """`path` under a name without "llama" or "gemma" in it (a link in a temporary folder): TransformerLens picks a
    local folder's architecture from those words in its path before reading its config.json, so that
    `checkpoints/llama-distilled-neo` would be read as a Llama without one."""
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "checkpoint"
        link.symlink_to(Path(path).resolve(), target_is_directory=True)
        yield str(link)


def _family_config(hf_config) -> dict:
    """HookedTransformerConfig fields of a Gemma, OLMo or OLMo-2 checkpoint, from its own config (the values
    TransformerLens writes for the official checkpoints of these architectures, read instead of assumed)."""
    arch = hf_config.architectures[0]
    heads, kv_heads = hf_config.num_attention_heads, hf_config.num_key_value_heads
    d_head = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // heads
    if arch != "GemmaForCausalLM" and kv_heads != heads:
        raise NotImplementedError(f"{arch} with grouped-query attention ({kv_heads} of {heads} key/value heads)")
    rope = getattr(hf_config, "rope_parameters", None) or {}
    cfg = {
        "d_model": hf_config.hidden_size,
        "d_head": d_head,
        "n_heads": heads,
        "d_mlp": hf_config.intermediate_size,
        "n_layers": hf_config.num_hidden_layers,
        "n_ctx": hf_config.max_position_embeddings,
        "d_vocab": hf_config.vocab_size,
        "act_fn": getattr(hf_config, "hidden_activation", None) or hf_config.hidden_act,
        "initializer_range": hf_config.initializer_range,
        "positional_embedding_type": "rotary",
        "rotary_dim": d_head,
        "rotary_base": rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0)),
        "rotary_adjacent_pairs": False,
        "gated_mlp": True,
        "original_architecture": arch,
    }
    if arch == "GemmaForCausalLM":
        return cfg | {"normalization_type": "RMS", "eps": hf_config.rms_norm_eps, "final_rms": True,
                      "n_key_value_heads": kv_heads}  # fmt: skip
    if arch == "OlmoForCausalLM":  # LayerNorm without weights (ones and zeros here), eps fixed at 1e-5
        return cfg | {"normalization_type": "LN", "eps": 1e-5, "clip_qkv": hf_config.clip_qkv}
    return cfg | {"normalization_type": "RMS", "eps": hf_config.rms_norm_eps}


def _config(path: str, hf_config, device, dtype, n_devices: int) -> HookedTransformerConfig:
    """The HookedTransformerConfig of the checkpoint in the local folder `path`."""
    arch = hf_config.architectures[0]
    if arch in _BY_NAME_ONLY:
        fields = _family_config(hf_config) | {
            "model_name": Path(path).name,
            "tokenizer_name": path,
            "init_weights": False,
            "device": device,
            "n_devices": n_devices,
            "dtype": dtype,
        }
        return HookedTransformerConfig.from_dict(fields)
    with _neutral_path(path) as neutral:
        cfg = tl_loading.get_pretrained_model_config(
            neutral, device=device, n_devices=n_devices, dtype=dtype, fold_ln=False
        )
    cfg.model_name, cfg.tokenizer_name = Path(path).name, path
    if arch == "GPTNeoForCausalLM" and getattr(hf_config, "intermediate_size", None):
        cfg.d_mlp = hf_config.intermediate_size  # TransformerLens assumes 4 * d_model for GPT-Neo
    return cfg


def from_hf(path: str, hf_model, hf_config, tokenizer, device, dtype, n_devices: int) -> HookedTransformer:
    """A HookedTransformer holding the weights of `hf_model` (loaded from the local folder `path`)."""
    cfg = _config(path, hf_config, device, dtype, n_devices)
    state = tl_loading.get_pretrained_state_dict(path, cfg, hf_model=hf_model, dtype=dtype)
    with contextlib.redirect_stdout(io.StringIO()):  # TransformerLens prints as it moves weights
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False, default_padding_side="right")
        model.load_and_process_state_dict(state, **NO_PROCESSING)
        model.to(device)
    return model


def official_name(name: str) -> str:
    """TransformerLens's official name for `name` (ValueError when it knows none)."""
    return tl_loading.get_official_model_name(name)


def from_official(official: str, device, dtype, n_devices: int) -> HookedTransformer:
    """A HookedTransformer of an official model (downloaded, or from the local Hugging Face cache)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return HookedTransformer.from_pretrained(
            official, device=device, dtype=dtype, n_devices=n_devices, **NO_PROCESSING
        )


def architecture(model: HookedTransformer) -> str:
    """The Hugging Face architecture the model was loaded from (e.g. "GPTNeoForCausalLM")."""
    return model.cfg.original_architecture


def hf_state(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """The model's current weights under its Hugging Face checkpoint's names (architectures in TO_HF)."""
    return TO_HF[architecture(model)](model.state_dict(), model.cfg.n_layers)
