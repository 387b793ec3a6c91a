"""The HookedTransformer backend (TransformerLens 3.x): every run-time operation interp needs from the library.

Hook names are TransformerLens's (`blocks.3.attn.hook_z`); weights are TransformerLens's reshaped parameters,
named `blocks.{layer}.attn.W_Q` / `blocks.{layer}.mlp.W_out` (`param_name`), in its layouts: attention
weights head-first (W_Q, W_K, W_V [head, d_model, d_head], W_O [head, d_head, d_model]), W_in
[d_model, d_mlp], W_out [d_mlp, d_model] (one row per neuron), W_U [d_model, d_vocab].
"""

from __future__ import annotations

import copy

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.components import TransformerBlock, Unembed
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from interp.backend.common import param_name
from interp.backend.named import NamedWeight

NAME = "hooked"
Model = HookedTransformer
ModelConfig = HookedTransformerConfig
HAS_GHOST_PASS = True  # interp.gradient_norms can read LayerNorm and MLP internals (ln1, ln2, mlp.act_fn)


def run_to(model: HookedTransformer, tokens: Int[Tensor, "n seq"], layer: int) -> Float[Tensor, "n seq d_model"]:
    """The residual stream entering block `layer` (after the last block when layer == n_layers), hooks firing."""
    return model(tokens, stop_at_layer=layer)


def run_from(
    model: HookedTransformer, residual: Float[Tensor, "n seq d_model"], layer: int, stop: int | None = None
) -> Tensor:
    """Run blocks `layer` .. `stop` - 1 from the residual stream entering block `layer`: the logits when `stop`
    is None, else the residual stream entering block `stop`."""
    return model(residual, start_at_layer=layer, stop_at_layer=stop)


def is_post_norm(cfg: HookedTransformerConfig) -> bool:
    """Whether the architecture normalizes after attention / MLP (so ln1's output is not attention's input)."""
    return cfg.original_architecture in POST_NORM_ARCHITECTURES


def is_block(module: nn.Module) -> bool:
    """Whether `module` is one transformer block (what cost accounting counts)."""
    return isinstance(module, TransformerBlock)


def block_config(block: TransformerBlock) -> HookedTransformerConfig:
    """The model config a transformer block was built with (its shapes, for cost accounting)."""
    return block.cfg


def is_unembed(module: nn.Module) -> bool:
    """Whether `module` is the unembedding."""
    return isinstance(module, Unembed)


def copy_model(model: HookedTransformer) -> HookedTransformer:
    """An independent copy (weights, hooks' modules, config) to edit without touching `model`."""
    return copy.deepcopy(model)


def named_weights(model: HookedTransformer) -> dict[str, NamedWeight]:
    """Every weight under its TransformerLens name; here each is the model's own parameter, in its layout."""
    return {name: NamedWeight(p) for name, p in model.named_parameters()}


def weight(model: HookedTransformer, layer: int, component: str) -> nn.Parameter:
    """A block's weight as the model's own parameter (edit it in place under torch.no_grad()); index it for a
    head (`weight(m, l, "W_Q")[head]`) or a neuron (`weight(m, l, "W_out")[neuron]`)."""
    return model.get_parameter(param_name(layer, component))


@torch.no_grad()
def greedy_decode(model: HookedTransformer, prefixes: Int[Tensor, "n prefix"], length: int) -> Int[Tensor, "n length"]:
    """`length` greedy tokens after each prefix, one KV-cached forward per new token; every token is attended
    to (an explicit all-ones attention mask, where `model.generate` would mask pad-id tokens)."""
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, prefixes.shape[0])
    step = model(prefixes, past_kv_cache=cache, attention_mask=torch.ones_like(prefixes))[:, -1].argmax(-1)
    new = [step]
    for _ in range(length - 1):
        step = model(step[:, None], past_kv_cache=cache, attention_mask=torch.ones_like(step[:, None]))[
            :, -1
        ].argmax(-1)
        new.append(step)
    return torch.stack(new, 1)
