"""Loading into a HookedTransformer and converting its weights back to Hugging Face names (TransformerLens 3.x).

Weights are loaded AS-IS: no LayerNorm folding, no centering, no value-bias folding, so every weight a
result names is the checkpoint's own weight, reshaped, and `hf_state` gives it back bit-for-bit.
"""

from __future__ import annotations

import contextlib
import io

import einops
import torch
from transformer_lens import HookedTransformer
from transformer_lens import loading_from_pretrained as tl_loading

NO_PROCESSING = dict(fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False)


def from_hf(path: str, hf_model, hf_config, tokenizer, device, dtype, n_devices: int) -> HookedTransformer:
    """A HookedTransformer holding the weights of `hf_model` (loaded from the local folder `path`)."""
    cfg = tl_loading.get_pretrained_model_config(path, device=device, n_devices=n_devices, dtype=dtype, fold_ln=False)
    if hf_config.architectures[0] == "GPTNeoForCausalLM" and getattr(hf_config, "intermediate_size", None):
        cfg.d_mlp = hf_config.intermediate_size  # TransformerLens assumes 4 * d_model for GPT-Neo
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


def _neo_state(model: HookedTransformer) -> dict[str, torch.Tensor]:
    sd, cfg = model.state_dict(), model.cfg
    out = {"transformer.wte.weight": sd["embed.W_E"], "transformer.wpe.weight": sd["pos_embed.W_pos"]}
    for l in range(cfg.n_layers):
        p, b = f"transformer.h.{l}", f"blocks.{l}"
        out[f"{p}.ln_1.weight"], out[f"{p}.ln_1.bias"] = sd[f"{b}.ln1.w"], sd[f"{b}.ln1.b"]
        for hf, tl in (("q_proj", "W_Q"), ("k_proj", "W_K"), ("v_proj", "W_V")):
            out[f"{p}.attn.attention.{hf}.weight"] = einops.rearrange(sd[f"{b}.attn.{tl}"], "h m d -> (h d) m")
        out[f"{p}.attn.attention.out_proj.weight"] = einops.rearrange(sd[f"{b}.attn.W_O"], "h d m -> m (h d)")
        out[f"{p}.attn.attention.out_proj.bias"] = sd[f"{b}.attn.b_O"]
        out[f"{p}.ln_2.weight"], out[f"{p}.ln_2.bias"] = sd[f"{b}.ln2.w"], sd[f"{b}.ln2.b"]
        out[f"{p}.mlp.c_fc.weight"], out[f"{p}.mlp.c_fc.bias"] = sd[f"{b}.mlp.W_in"].T, sd[f"{b}.mlp.b_in"]
        out[f"{p}.mlp.c_proj.weight"], out[f"{p}.mlp.c_proj.bias"] = sd[f"{b}.mlp.W_out"].T, sd[f"{b}.mlp.b_out"]
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["ln_final.w"], sd["ln_final.b"]
    out["lm_head.weight"] = sd["unembed.W_U"].T
    return out


def _gpt2_state(model: HookedTransformer) -> dict[str, torch.Tensor]:
    sd, cfg = model.state_dict(), model.cfg
    out = {"transformer.wte.weight": sd["embed.W_E"], "transformer.wpe.weight": sd["pos_embed.W_pos"]}
    for l in range(cfg.n_layers):
        p, b = f"transformer.h.{l}", f"blocks.{l}"
        out[f"{p}.ln_1.weight"], out[f"{p}.ln_1.bias"] = sd[f"{b}.ln1.w"], sd[f"{b}.ln1.b"]
        w = [einops.rearrange(sd[f"{b}.attn.W_{x}"], "h m d -> m (h d)") for x in "QKV"]
        bias = [einops.rearrange(sd[f"{b}.attn.b_{x}"], "h d -> (h d)") for x in "QKV"]
        out[f"{p}.attn.c_attn.weight"], out[f"{p}.attn.c_attn.bias"] = torch.cat(w, 1), torch.cat(bias)
        out[f"{p}.attn.c_proj.weight"] = einops.rearrange(sd[f"{b}.attn.W_O"], "h d m -> (h d) m")
        out[f"{p}.attn.c_proj.bias"] = sd[f"{b}.attn.b_O"]
        out[f"{p}.ln_2.weight"], out[f"{p}.ln_2.bias"] = sd[f"{b}.ln2.w"], sd[f"{b}.ln2.b"]
        out[f"{p}.mlp.c_fc.weight"], out[f"{p}.mlp.c_fc.bias"] = sd[f"{b}.mlp.W_in"], sd[f"{b}.mlp.b_in"]
        out[f"{p}.mlp.c_proj.weight"], out[f"{p}.mlp.c_proj.bias"] = sd[f"{b}.mlp.W_out"], sd[f"{b}.mlp.b_out"]
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["ln_final.w"], sd["ln_final.b"]
    out["lm_head.weight"] = sd["unembed.W_U"].T
    return out


def _neox_state(model: HookedTransformer) -> dict[str, torch.Tensor]:
    sd, cfg = model.state_dict(), model.cfg
    out = {"gpt_neox.embed_in.weight": sd["embed.W_E"]}
    for l in range(cfg.n_layers):
        p, b = f"gpt_neox.layers.{l}", f"blocks.{l}"
        out[f"{p}.input_layernorm.weight"], out[f"{p}.input_layernorm.bias"] = sd[f"{b}.ln1.w"], sd[f"{b}.ln1.b"]
        qkv = torch.stack([sd[f"{b}.attn.W_{x}"] for x in "QKV"], dim=0)  # [3, h, m, d]
        out[f"{p}.attention.query_key_value.weight"] = einops.rearrange(qkv, "qkv h m d -> (h qkv d) m")
        qkv_b = torch.stack([sd[f"{b}.attn.b_{x}"] for x in "QKV"], dim=0)  # [3, h, d]
        out[f"{p}.attention.query_key_value.bias"] = einops.rearrange(qkv_b, "qkv h d -> (h qkv d)")
        out[f"{p}.attention.dense.weight"] = einops.rearrange(sd[f"{b}.attn.W_O"], "h d m -> m (h d)")
        out[f"{p}.attention.dense.bias"] = sd[f"{b}.attn.b_O"]
        out[f"{p}.post_attention_layernorm.weight"] = sd[f"{b}.ln2.w"]
        out[f"{p}.post_attention_layernorm.bias"] = sd[f"{b}.ln2.b"]
        out[f"{p}.mlp.dense_h_to_4h.weight"], out[f"{p}.mlp.dense_h_to_4h.bias"] = (
            sd[f"{b}.mlp.W_in"].T,
            sd[f"{b}.mlp.b_in"],
        )
        out[f"{p}.mlp.dense_4h_to_h.weight"], out[f"{p}.mlp.dense_4h_to_h.bias"] = (
            sd[f"{b}.mlp.W_out"].T,
            sd[f"{b}.mlp.b_out"],
        )
    out["gpt_neox.final_layer_norm.weight"], out["gpt_neox.final_layer_norm.bias"] = sd["ln_final.w"], sd["ln_final.b"]
    out["embed_out.weight"] = sd["unembed.W_U"].T
    return out


TO_HF = {"GPTNeoForCausalLM": _neo_state, "GPT2LMHeadModel": _gpt2_state, "GPTNeoXForCausalLM": _neox_state}


def architecture(model: HookedTransformer) -> str:
    """The Hugging Face architecture the model was loaded from (e.g. "GPTNeoForCausalLM")."""
    return model.cfg.original_architecture


def hf_state(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """The model's current weights under its Hugging Face checkpoint's names (architectures in TO_HF)."""
    return TO_HF[architecture(model)](model)
