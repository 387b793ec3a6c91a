"""The TransformerBridge backend (TransformerLens >= 4): the operations of `interp.backend.hooked`, on a bridge.

The model is a `TransformerBridge` booted from a Hugging Face checkpoint with
`enable_compatibility_mode(no_processing=True)`: HookedTransformer's hook names and numerics, with the
checkpoint's weights as they are (no folding, no centering), so logits equal the HookedTransformer backend's.
Its parameters are the Hugging Face modules' own; `named_weights` gives them under TransformerLens names and
layouts as storage-sharing views (interp.backend.bridge_weights), so masks, gradient maps and edits keyed by
`blocks.1.mlp.W_out` work unchanged.

Known differences from the HookedTransformer backend (docs/backend_tl4.md has the measured table):
- a checkpoint with tied embeddings (GPT-Neo, GPT-2) has one tensor for W_E and W_U here, two copies under
  HookedTransformer, so training the embeddings moves both at once here;
- `run_to(model, tokens, n_layers)` and `run_from(..., stop=n_layers)` read the last block's output through a
  hook (the bridge's `stop_at_layer=n_layers` returns logits), so they also pay for the unembedding.
"""

from __future__ import annotations

import copy

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import TransformerBridge, TransformerBridgeConfig
from transformer_lens.model_bridge.generalized_components.block import BlockBridge
from transformer_lens.model_bridge.generalized_components.unembedding import UnembeddingBridge
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from interp.backend import bridge_weights
from interp.backend.common import act_name, param_name
from interp.backend.named import NamedWeight

NAME = "bridge"
Model = TransformerBridge
ModelConfig = TransformerBridgeConfig
# The ghost-norm pass (interp.gradient_norms) reads HookedTransformer's LayerNorm and MLP internals (ln1 / ln2
# modules, mlp.act_fn), which the bridge's wrapped Hugging Face modules do not expose the same way: per-paragraph
# norms take one backward per paragraph here instead (the same numbers, slower).
HAS_GHOST_PASS = False


def run_to(model: TransformerBridge, tokens: Int[Tensor, "n seq"], layer: int) -> Float[Tensor, "n seq d_model"]:
    """The residual stream entering block `layer` (after the last block when layer == n_layers), hooks firing."""
    if layer < model.cfg.n_layers:
        return model(tokens, stop_at_layer=layer)
    kept: list[Tensor] = []
    last = act_name("resid_post", model.cfg.n_layers - 1)
    with model.hooks(fwd_hooks=[(last, lambda x, hook: kept.append(x))]):
        model(tokens)
    return kept[0]


def run_from(
    model: TransformerBridge, residual: Float[Tensor, "n seq d_model"], layer: int, stop: int | None = None
) -> Tensor:
    """Run blocks `layer` .. `stop` - 1 from the residual stream entering block `layer`: the logits when `stop`
    is None, else the residual stream entering block `stop`."""
    if stop is None or stop < model.cfg.n_layers:
        return model(residual, start_at_layer=layer, stop_at_layer=stop)
    kept: list[Tensor] = []
    last = act_name("resid_post", model.cfg.n_layers - 1)
    with model.hooks(fwd_hooks=[(last, lambda x, hook: kept.append(x))]):
        model(residual, start_at_layer=layer)
    return kept[0]


def is_post_norm(cfg: TransformerBridgeConfig) -> bool:
    """Whether the architecture normalizes after attention / MLP (so ln1's output is not attention's input)."""
    return cfg.architecture in POST_NORM_ARCHITECTURES


def is_block(module: nn.Module) -> bool:
    """Whether `module` is one transformer block (what cost accounting counts)."""
    return isinstance(module, BlockBridge)


def block_config(block: BlockBridge) -> TransformerBridgeConfig:
    """The model config a transformer block was built with (its shapes, for cost accounting): the bridge's
    components keep it as `config`, not `cfg`."""
    return block.config


def is_unembed(module: nn.Module) -> bool:
    """Whether `module` is the unembedding."""
    return isinstance(module, UnembeddingBridge)


def copy_model(model: TransformerBridge) -> TransformerBridge:
    """An independent copy to edit without touching `model`. The bridge's attention modules keep the last
    forward's pre-LayerNorm residual (`_captured_pre_ln_residual`), a non-leaf tensor after a forward with
    gradients, which `copy.deepcopy` refuses: such caches are detached first (their values unchanged).

    A block wires its capture hooks at its first forward: closures over weak proxies of its own modules, which
    `deepcopy` copies as they are, so the copy's forward would write into `model`'s attention (and fail once
    `model` is freed). The copy's blocks drop them and wire their own at their next forward."""
    for module in model.modules():
        for key, value in list(vars(module).items()):
            if isinstance(value, Tensor) and not isinstance(value, nn.Parameter) and not value.is_leaf:
                setattr(module, key, value.detach())
    copied = copy.deepcopy(model)
    for block in copied.modules():
        if isinstance(block, BlockBridge):
            _unwire_capture_hooks(block)
    return copied


def _unwire_capture_hooks(block: BlockBridge) -> None:
    """Remove a copied block's capture hooks from its own modules (by hook id: the copied hook tables keep the
    source's ids; the copied handles would remove them from the source's tables) and let it wire anew."""
    ids = {handle.id for handle in getattr(block, "_capture_hook_handles", ())}
    if not ids:
        return
    for module in block.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for i in ids & set(hooks):
                del hooks[i]
    block._capture_hook_handles = []
    block._capture_hooks_wired = False


def named_weights(model: TransformerBridge) -> dict[str, NamedWeight]:
    """Every weight under its TransformerLens name: the Hugging Face leaf and its layout map (bridge_weights)."""
    cfg = model.cfg
    kv = cfg.n_key_value_heads
    weights = bridge_weights.named_weights(model.original_model, cfg.architecture, cfg.n_layers, cfg.n_heads, kv)
    for layer in range(cfg.n_layers):
        weights.update(bridge_weights.split_qkv(model.blocks[layer].attn, layer, cfg.n_heads, kv))
    return weights


def weight(model: TransformerBridge, layer: int, component: str) -> Tensor:
    """A block's weight in TransformerLens's layout, sharing the model's storage (edit it in place under
    torch.no_grad()); index it for a head (`weight(m, l, "W_Q")[head]`) or a neuron (`weight(m, l, "W_out")[n]`)."""
    name = param_name(layer, component)
    found = named_weights(model).get(name)
    if found is None:
        raise KeyError(f"{name}: this {model.cfg.architecture} checkpoint has no such weight")
    return found.tensor


@torch.no_grad()
def greedy_decode(model: TransformerBridge, prefixes: Int[Tensor, "n prefix"], length: int) -> Int[Tensor, "n length"]:
    """`length` greedy tokens after each prefix, one KV-cached forward per new token; every token is attended to.

    Decodes with the Hugging Face model's own cache (its modules are the bridge's, so hooks fire): the bridge's
    forward with a TransformerLensKeyValueCache gives wrong tokens from the second on (measured under
    TransformerLens 4.3.0: 18 of the first 19 later positions differed from the uncached argmax in 1 to 4 of 4
    paragraphs). Where the bridge's attention leaves that cache empty (the Llama family under TransformerLens
    4.3.0), each token is decoded by a full forward over the sequence so far instead."""
    mask = torch.ones_like(prefixes)
    out = model.original_model(input_ids=prefixes, attention_mask=mask, use_cache=True)
    step = out.logits[:, -1].argmax(-1)
    new = [step]
    cached = out.past_key_values is not None and out.past_key_values.get_seq_length() == prefixes.shape[1]
    for _ in range(length - 1):
        if not cached:
            sequence = torch.cat([prefixes, torch.stack(new, 1)], 1)
            step = model.original_model(input_ids=sequence, attention_mask=torch.ones_like(sequence)).logits[:, -1]
            new.append(step.argmax(-1))
            continue
        mask = torch.cat([mask, torch.ones_like(step[:, None])], 1)
        out = model.original_model(
            input_ids=step[:, None], past_key_values=out.past_key_values, attention_mask=mask, use_cache=True
        )
        step = out.logits[:, -1].argmax(-1)
        new.append(step)
    return torch.stack(new, 1)
