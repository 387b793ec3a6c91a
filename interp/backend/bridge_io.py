"""Loading into a TransformerBridge and giving its weights back under Hugging Face names (TransformerLens >= 4).

The bridge keeps the Hugging Face modules, so the checkpoint's weights are the model's own parameters and
`hf_state` is the Hugging Face state dict. `enable_compatibility_mode(no_processing=True)` gives
HookedTransformer's hook names without folding or centering anything, as the HookedTransformer backend loads.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from transformer_lens import TransformerBridge

from interp.backend.bridge_weights import hf_parameters

TO_HF = ("GPTNeoForCausalLM", "GPT2LMHeadModel", "GPTNeoXForCausalLM")  # architectures whose weights are mapped


def _booted(name: str, **kwargs) -> TransformerBridge:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_transformers(name, **kwargs)
        model.enable_compatibility_mode(no_processing=True)
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
    if "/" not in name and not name.startswith("gpt2"):
        raise ValueError(name)
    return name


def from_official(official: str, device, dtype, n_devices: int) -> TransformerBridge:
    """A TransformerBridge of a hub model (downloaded, or from the local Hugging Face cache)."""
    return _booted(official, device=device, dtype=dtype, n_devices=n_devices if n_devices > 1 else None)


def architecture(model: TransformerBridge) -> str:
    """The Hugging Face architecture the model was loaded from (e.g. "GPTNeoForCausalLM")."""
    return model.cfg.architecture


def hf_state(model: TransformerBridge) -> dict[str, torch.Tensor]:
    """The model's current weights under its Hugging Face checkpoint's names."""
    return {name: p.detach() for name, p in hf_parameters(model.original_model).items()}
