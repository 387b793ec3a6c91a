"""Loading into a TransformerBridge and giving its weights back under Hugging Face names (TransformerLens >= 4).

The bridge keeps the Hugging Face modules, so most of the checkpoint's weights are the model's own parameters;
`hf_state` writes them through the same per-architecture table as the hooked backend (interp.backend.hf_layout). `enable_compatibility_mode(no_processing=True)` gives
HookedTransformer's hook names without folding or centering anything, as the HookedTransformer backend loads.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from transformer_lens import TransformerBridge

from interp.backend.bridge import named_weights
from interp.backend.bridge_weights import ARCHITECTURES as LOCAL_ARCHITECTURES  # noqa: F401 (re-exported)
from interp.backend.hf_layout import TO_HF


def _booted(name: str, **kwargs) -> TransformerBridge:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_transformers(name, **kwargs)
        model.enable_compatibility_mode(no_processing=True)
    for block in model.blocks:  # the Llama family's blocks come without their config, which cost accounting reads
        if getattr(block, "config", None) is None:
            block.config = model.cfg
    return model


def from_hf(path: str, hf_model, hf_config, tokenizer, device, dtype, n_devices: int) -> TransformerBridge:
    """A TransformerBridge around `hf_model` (loaded from the local folder `path`) and `tokenizer`."""
    tokenizer.padding_side = "right"
    model = _booted(
        path,
        hf_model=hf_model.to(device=device, dtype=dtype),
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        n_devices=n_devices if n_devices > 1 else None,
    )
    return model


def official_name(name: str) -> str:
    """The Hugging Face id of `name` (the bridge boots any hub id; ValueError for one that cannot be an id)."""
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or ("/" not in name and not name.startswith("gpt2")):
        raise ValueError(name)  # a path (e.g. a folder that does not exist), not an id
    return name


def from_official(official: str, device, dtype, n_devices: int) -> TransformerBridge:
    """A TransformerBridge of a hub model (downloaded, or from the local Hugging Face cache)."""
    return _booted(official, device=device, dtype=dtype, n_devices=n_devices if n_devices > 1 else None)


def architecture(model: TransformerBridge) -> str:
    """The Hugging Face architecture the model was loaded from (e.g. "GPTNeoForCausalLM")."""
    return model.cfg.architecture


def hf_state(model: TransformerBridge) -> dict[str, torch.Tensor]:
    """The model's current weights under its Hugging Face checkpoint's names, written from the weights the bridge
    runs with (for GPT-2 and NeoX the fused query / key / value weight is rebuilt from the bridge's split
    copies: the checkpoint's own fused tensor is no longer read after boot)."""
    state = {name: w.tensor.detach() for name, w in named_weights(model).items()}
    return TO_HF[architecture(model)](state, model.cfg.n_layers)
