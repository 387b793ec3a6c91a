"""What both backends do the same way: the operations HookedTransformer and TransformerBridge (in compatibility
mode) share by name, hook names and layouts. Imports only what TransformerLens 3.x and 4.x both have."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.utilities import get_act_name
from transformer_lens.utilities.activation_functions import apply_softcap

Hook = tuple[str, Callable]  # (hook name, function(activation, hook) -> activation or None)


def act_name(kind: str, layer: int | None = None, sublayer: str | None = None) -> str:
    """The hook name of an activation: act_name("z", 3) -> "blocks.3.attn.hook_z"; ("normalized", 0, "ln1")
    -> "blocks.0.ln1.hook_normalized"; ("embed") -> "hook_embed"."""
    return get_act_name(kind, layer, sublayer)


class Activations(Mapping):
    """Captured activations by hook name, or by (kind, layer) as `act_name` spells it."""

    def __init__(self, tensors: dict[str, Tensor]):
        self._tensors = tensors

    def __getitem__(self, key: str | tuple) -> Tensor:
        return self._tensors[act_name(*key) if isinstance(key, tuple) else key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def capture(
    model, tokens: Int[Tensor, "n seq"], names: Iterable[str]
) -> tuple[Float[Tensor, "n seq vocab"], Activations]:
    """One forward: the logits and the activations at exactly the hooks `names` (detached); no hook stays on."""
    wanted = set(names)
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in wanted)
    return logits, Activations(cache.cache_dict)


@contextmanager
def hooks_on(model, fwd_hooks: Iterable[Hook] = ()) -> Iterator[None]:
    """Forward hooks on inside the block, removed on exit even when the body raises. `model` may also be any
    model with a `hooks(fwd_hooks=...)` context manager of its own (such as interp.unlearning.proxy.ProxyModel)."""
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        yield


def final_norm(model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
    """The final normalization (the identity for a model without one)."""
    return resid if model.cfg.normalization_type is None else model.ln_final(resid)


def unembed(model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... vocab"]:
    """The unembedding (hooks firing, no soft cap) of an already normalized residual stream."""
    return model.unembed(resid)


def unembed_parts(model) -> tuple[nn.Module, Tensor, Tensor]:
    """The unembedding module (its hook_in / hook_out fire on the logits path), W_U [d_model, vocab] and b_U."""
    return model.unembed, model.unembed.W_U, model.unembed.b_U


def softcap(logits: Tensor, cfg) -> Tensor:
    """The model's output-logit soft cap (cap * tanh(logits / cap)); unchanged when it has none."""
    return apply_softcap(logits, cfg.output_logits_soft_cap)


def param_name(layer: int, component: str) -> str:
    """The name of a block's weight: W_Q / W_K / W_V / W_O / b_Q ... in attention, W_in / W_out / b_in / b_out in the MLP."""
    module = "attn" if component[2:] in ("Q", "K", "V", "O") else "mlp"
    return f"blocks.{layer}.{module}.{component}"
