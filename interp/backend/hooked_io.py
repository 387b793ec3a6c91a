"""Loading into a HookedTransformer and converting its weights back to Hugging Face names (TransformerLens 3.x).

Weights are loaded AS-IS: no LayerNorm folding, no centering, no value-bias folding, so every weight a
result names is the checkpoint's own weight, reshaped, and `hf_state` gives it back bit-for-bit.
"""

from __future__ import annotations

import contextlib
import io

import torch
from transformer_lens import HookedTransformer
from transformer_lens import loading_from_pretrained as tl_loading

from interp.backend.hf_layout import TO_HF

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


def architecture(model: HookedTransformer) -> str:
    """The Hugging Face architecture the model was loaded from (e.g. "GPTNeoForCausalLM")."""
    return model.cfg.original_architecture


def hf_state(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """The model's current weights under its Hugging Face checkpoint's names (architectures in TO_HF)."""
    return TO_HF[architecture(model)](model.state_dict(), model.cfg.n_layers)
