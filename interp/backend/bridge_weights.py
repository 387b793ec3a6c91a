"""TransformerLens-named weight views of a Hugging Face model's own parameters (the TransformerBridge backend).

Under TransformerBridge the parameters are the Hugging Face modules' (`transformer.h.1.mlp.c_proj.weight`),
while every mask, gradient map and result in interp names TransformerLens weights in TransformerLens layouts
(`blocks.1.mlp.W_out`, [d_mlp, d_model]). Each entry here pairs a TransformerLens name with the Hugging Face
leaf that holds it and a function giving the TransformerLens layout of any tensor shaped like that leaf (the
parameter itself, its gradient, a mask). Every such function is a view (reshape, transpose, slice): applied
to the parameter it shares its storage, so an in-place edit of the view edits the model, and applied to a
gradient it maps it without a copy.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from interp.backend.named import NamedWeight, same


def _transposed(t: Tensor) -> Tensor:
    return t.T


def _norms(ln1: str, ln2: str) -> dict[str, tuple[str, Callable]]:
    return {
        f"{tl}.{x}": (f"{hf}.{w}", same)
        for tl, hf in (("ln1", ln1), ("ln2", ln2))
        for x, w in (("w", "weight"), ("b", "bias"))
    }


def _mlp(w_in: str, w_out: str, layout: Callable) -> dict[str, tuple[str, Callable]]:
    return {
        "mlp.W_in": (f"{w_in}.weight", layout),
        "mlp.b_in": (f"{w_in}.bias", same),
        "mlp.W_out": (f"{w_out}.weight", layout),
        "mlp.b_out": (f"{w_out}.bias", same),
    }


# The Llama family: one module layout (q/k/v/o_proj, gate/up/down_proj, RMS or weightless norms). Gemma is left out:
# the hooked backend folds its 1 + w norms and embedding scale into the weights, so the two backends' weights differ.
LLAMA_FAMILY = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "OlmoForCausalLM",
    "Olmo2ForCausalLM",
)
ARCHITECTURES = ("GPTNeoForCausalLM", "GPT2LMHeadModel", "GPTNeoXForCausalLM", *LLAMA_FAMILY)  # those `_table` maps

_GPT_TOP = {  # GPT-Neo and GPT-2 name everything outside the blocks alike
    "embed.W_E": ("transformer.wte.weight", same),
    "pos_embed.W_pos": ("transformer.wpe.weight", same),
    "ln_final.w": ("transformer.ln_f.weight", same),
    "ln_final.b": ("transformer.ln_f.bias", same),
    "unembed.W_U": ("lm_head.weight", _transposed),
}


def _in_blocks(prefix: str, block: dict[str, tuple[str, Callable]]) -> dict[str, tuple[str, Callable]]:
    """A block's entries with their Hugging Face names under `prefix`, the blocks' path (the layer as `{l}`)."""
    return {tl: (prefix + hf, layout) for tl, (hf, layout) in block.items()}


def kv_names(n_heads: int, n_kv_heads: int | None) -> dict[str, str]:
    """HookedTransformer's names of the key / value weights: `_W_K` ... under grouped-query attention (its `W_K` is
    then the key weight repeated over the query heads, not a parameter)."""
    grouped = n_kv_heads not in (None, n_heads)
    return {x: f"attn.{'_' if grouped else ''}{x}" for x in ("W_K", "W_V", "b_K", "b_V")}


def _llama_table(arch: str, n_heads: int, n_kv_heads: int | None) -> tuple[dict, dict]:
    h, kv = n_heads, n_kv_heads or n_heads
    names = kv_names(n_heads, n_kv_heads)

    def heads_in(n):  # [(n d), m] -> [n, m, d]
        return lambda t: t.unflatten(0, (n, -1)).transpose(1, 2)

    def heads(n):  # [(n d)] -> [n, d]
        return lambda t: t.unflatten(0, (n, -1))

    norms = ("post_attention_layernorm", "post_feedforward_layernorm") if arch == "Olmo2ForCausalLM" else (
        "input_layernorm", "post_attention_layernorm")  # fmt: skip
    block = {
        "ln1.w": (f"{norms[0]}.weight", same),
        "ln2.w": (f"{norms[1]}.weight", same),
        "attn.W_Q": ("self_attn.q_proj.weight", heads_in(h)),
        "attn.b_Q": ("self_attn.q_proj.bias", heads(h)),
        names["W_K"]: ("self_attn.k_proj.weight", heads_in(kv)),
        names["W_V"]: ("self_attn.v_proj.weight", heads_in(kv)),
        names["b_K"]: ("self_attn.k_proj.bias", heads(kv)),
        names["b_V"]: ("self_attn.v_proj.bias", heads(kv)),
        "attn.W_O": ("self_attn.o_proj.weight", lambda t: t.unflatten(1, (h, -1)).permute(1, 2, 0)),
        "attn.q_norm.w": ("self_attn.q_norm.weight", same),
        "attn.k_norm.w": ("self_attn.k_norm.weight", same),
        "mlp.W_in": ("mlp.up_proj.weight", _transposed),
        "mlp.W_gate": ("mlp.gate_proj.weight", _transposed),
        "mlp.W_out": ("mlp.down_proj.weight", _transposed),
    }
    top = {
        "embed.W_E": ("model.embed_tokens.weight", same),
        "ln_final.w": ("model.norm.weight", same),
        "unembed.W_U": ("lm_head.weight", _transposed),
    }
    return _in_blocks("model.layers.{l}.", block), top


def _table(
    arch: str, n_heads: int, n_kv_heads: int | None = None
) -> tuple[dict[str, tuple[str, Callable]], dict[str, tuple[str, Callable]]]:
    """(per-block entries {tl suffix: (hf suffix, layout)}, model-level entries) for one architecture; an entry
    whose leaf the checkpoint lacks (OLMo's weightless norms, Llama's q/k/v biases) is left out by `named_weights`."""
    if arch in LLAMA_FAMILY:
        return _llama_table(arch, n_heads, n_kv_heads)
    h = n_heads

    def rows_to_heads(t):  # [(h d), m] -> [h, m, d]
        return t.unflatten(0, (h, -1)).transpose(1, 2)

    def cols_to_heads_out(t):  # [m, (h d)] -> [h, d, m]
        return t.unflatten(1, (h, -1)).permute(1, 2, 0)

    def rows_to_heads_out(t):  # [(h d), m] -> [h, d, m]
        return t.unflatten(0, (h, -1))

    def heads(t):  # [(h d)] -> [h, d]
        return t.unflatten(0, (h, -1))

    if arch == "GPTNeoForCausalLM":
        block = {
            **_norms("ln_1", "ln_2"),
            "attn.W_Q": ("attn.attention.q_proj.weight", rows_to_heads),
            "attn.W_K": ("attn.attention.k_proj.weight", rows_to_heads),
            "attn.W_V": ("attn.attention.v_proj.weight", rows_to_heads),
            "attn.W_O": ("attn.attention.out_proj.weight", cols_to_heads_out),
            "attn.b_O": ("attn.attention.out_proj.bias", same),
            **_mlp("mlp.c_fc", "mlp.c_proj", _transposed),
        }
        return _in_blocks("transformer.h.{l}.", block), _GPT_TOP
    if arch == "GPT2LMHeadModel":

        def qkv(i):  # c_attn (Conv1D) [m, 3 (h d)] -> [h, m, d]
            return lambda t: t.unflatten(-1, (3, h, -1))[..., i, :, :].permute(1, 0, 2)

        def qkv_bias(i):
            return lambda t: t.unflatten(0, (3, h, -1))[i]

        block = {
            **_norms("ln_1", "ln_2"),
            **{f"attn.W_{x}": ("attn.c_attn.weight", qkv(i)) for i, x in enumerate("QKV")},
            **{f"attn.b_{x}": ("attn.c_attn.bias", qkv_bias(i)) for i, x in enumerate("QKV")},
            "attn.W_O": ("attn.c_proj.weight", rows_to_heads_out),
            "attn.b_O": ("attn.c_proj.bias", same),
            **_mlp("mlp.c_fc", "mlp.c_proj", same),
        }
        return _in_blocks("transformer.h.{l}.", block), _GPT_TOP
    if arch == "GPTNeoXForCausalLM":

        def qkv(i):  # query_key_value [(h 3 d), m] -> [h, m, d]
            return lambda t: t.unflatten(0, (h, 3, -1))[:, i].transpose(1, 2)

        def qkv_bias(i):
            return lambda t: t.unflatten(0, (h, 3, -1))[:, i]

        block = {
            **_norms("input_layernorm", "post_attention_layernorm"),
            **{f"attn.W_{x}": ("attention.query_key_value.weight", qkv(i)) for i, x in enumerate("QKV")},
            **{f"attn.b_{x}": ("attention.query_key_value.bias", qkv_bias(i)) for i, x in enumerate("QKV")},
            "attn.W_O": ("attention.dense.weight", cols_to_heads_out),
            "attn.b_O": ("attention.dense.bias", same),
            **_mlp("mlp.dense_h_to_4h", "mlp.dense_4h_to_h", _transposed),
        }
        top = {
            "embed.W_E": ("gpt_neox.embed_in.weight", same),
            "ln_final.w": ("gpt_neox.final_layer_norm.weight", same),
            "ln_final.b": ("gpt_neox.final_layer_norm.bias", same),
            "unembed.W_U": ("embed_out.weight", _transposed),
        }
        return _in_blocks("gpt_neox.layers.{l}.", block), top
    raise NotImplementedError(
        f"the TransformerBridge backend maps weights of {', '.join(ARCHITECTURES)} only, not {arch}: use the "
        "HookedTransformer backend (transformer-lens>=3.9,<4) for it"
    )


# HookedTransformer's parameter order within a block, kept here so that anything drawn per weight in order
# (random perturbations, masks) draws the same numbers under both backends (a gated MLP orders its weights first)
BLOCK_ORDER = (
    "ln1.w", "ln1.b", "ln2.w", "ln2.b",
    "attn.W_Q", "attn.W_O", "attn.b_Q", "attn.b_O", "attn.W_K", "attn.W_V", "attn.b_K", "attn.b_V",
    "attn._W_K", "attn._W_V", "attn._b_K", "attn._b_V", "attn.q_norm.w", "attn.k_norm.w",
    "mlp.W_in", "mlp.b_in", "mlp.W_out", "mlp.b_out",
)  # fmt: skip
GATED_BLOCK_ORDER = (*BLOCK_ORDER[:-4], "mlp.W_in", "mlp.W_out", "mlp.W_gate", "mlp.b_in", "mlp.b_out")


RENAMED = {"embed_out.weight": "lm_head.weight"}  # NeoX's unembedding under newer transformers


def hf_parameters(hf_model: nn.Module) -> dict[str, nn.Parameter]:
    """The Hugging Face model's parameters under its checkpoint's names, tied ones under each of their names.

    The bridge wraps Hugging Face modules in its own components (the original under `_original_component`)
    and adds aliases (`ln1`, `attn.q`, `mlp.in`); a checkpoint name is the path that enters every wrapper
    through `_original_component` at once, with those segments removed."""
    out: dict[str, nn.Parameter] = {}
    for name, p in hf_model.named_parameters(remove_duplicate=False):
        parts = name.split(".")
        canonical = all(
            parts[i + 1] == "_original_component"
            for i in range(len(parts) - 1)
            if parts[i] != "_original_component"
            and hasattr(hf_model.get_submodule(".".join(parts[: i + 1])), "_original_component")
        )
        if canonical:
            out[name.replace("._original_component", "")] = p
    return out


def named_weights(
    hf_model: nn.Module, arch: str, n_layers: int, n_heads: int, n_kv_heads: int | None = None
) -> dict[str, NamedWeight]:
    """Every TransformerLens-named weight the checkpoint has, in TransformerLens's order (blocks, then the rest).

    A weight the architecture lacks (GPT-Neo's b_Q, b_K, b_V; the rotary models' W_pos) has no entry.
    """
    params = hf_parameters(hf_model)
    block, top = _table(arch, n_heads, n_kv_heads)
    out: dict[str, NamedWeight] = {}
    for name in ("embed.W_E", "pos_embed.W_pos"):
        if name in top and top[name][0] in params:
            out[name] = NamedWeight(params[top[name][0]], top[name][1])
    order = GATED_BLOCK_ORDER if "mlp.W_gate" in block else BLOCK_ORDER
    for layer in range(n_layers):
        for suffix in order:
            if suffix not in block:
                continue
            hf, layout = block[suffix]
            if hf.format(l=layer) in params:
                out[f"blocks.{layer}.{suffix}"] = NamedWeight(params[hf.format(l=layer)], layout)
    for name in ("ln_final.w", "ln_final.b", "unembed.W_U"):
        if name not in top:
            continue
        hf = top[name][0] if top[name][0] in params else RENAMED.get(top[name][0])
        if hf in params:
            out[name] = NamedWeight(params[hf], top[name][1])
    return out


def split_qkv(attn: nn.Module, layer: int, n_heads: int, n_kv_heads: int | None = None) -> dict[str, NamedWeight]:
    """The query / key / value weights the bridge's attention runs with, when it holds them as its own
    `nn.Linear` q, k, v ([(head d_head), d_model]): for fused checkpoints (GPT-2's c_attn, NeoX's
    query_key_value) the bridge splits the fused weight into such copies at boot and never reads the fused
    one again, so these, not the fused leaf, are the weights (for GPT-Neo and the Llama family they are the
    checkpoint's q_proj / k_proj / v_proj themselves)."""
    names = {"Q": ("attn.W_Q", "attn.b_Q")} | {
        x: (kv_names(n_heads, n_kv_heads)[f"W_{x}"], kv_names(n_heads, n_kv_heads)[f"b_{x}"]) for x in "KV"
    }
    out: dict[str, NamedWeight] = {}
    for x in "QKV":
        linear = getattr(getattr(attn, x.lower(), None), "_original_component", None)
        if isinstance(linear, nn.Linear):
            n = n_heads if x == "Q" else n_kv_heads or n_heads
            w, b = names[x]
            out[f"blocks.{layer}.{w}"] = NamedWeight(
                linear.weight, lambda t, n=n: t.unflatten(0, (n, -1)).transpose(1, 2)
            )
            if linear.bias is not None:
                out[f"blocks.{layer}.{b}"] = NamedWeight(linear.bias, lambda t, n=n: t.unflatten(0, (n, -1)))
    return out
