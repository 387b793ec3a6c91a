"""TransformerLens-named weights -> a Hugging Face checkpoint's state dict, per architecture (both backends save
through it: `TO_HF[architecture](state, n_layers)`, `state` keyed `blocks.1.attn.W_Q` in TransformerLens layouts)."""

from __future__ import annotations

import einops
import torch


def _neo_state(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    out = {"transformer.wte.weight": sd["embed.W_E"], "transformer.wpe.weight": sd["pos_embed.W_pos"]}
    for l in range(n_layers):
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


def _gpt2_state(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    out = {"transformer.wte.weight": sd["embed.W_E"], "transformer.wpe.weight": sd["pos_embed.W_pos"]}
    for l in range(n_layers):
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


def _neox_state(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    out = {"gpt_neox.embed_in.weight": sd["embed.W_E"]}
    for l in range(n_layers):
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
