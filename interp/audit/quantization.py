"""The quantization attack: round-to-nearest weights, dequantized back to float (Zhang et al., ICLR 2025:
4-bit quantization of unlearned models brought forgotten knowledge from 21% back to 83%).

An unlearning step small against the quantization step is rounded away. Quantized: the 2-D weight
matrices of the attention and MLP linear layers (W_Q, W_K, W_V, W_O, W_in, W_gate, W_out; TransformerLens
keeps the attention ones as 3-D per-head tensors, viewed here as the [out, in] matrices of the Hugging
Face layers); embeddings, the unembedding, biases and LayerNorms stay in float, as in the usual int8 /
int4 schemes, which leave the embeddings and the LM head unquantized. Symmetric round-to-nearest:
scale = max |w| / (2^(bits-1) - 1) per output channel (int8) or per group of `group_size` input
channels within an output channel (int4), q = round(w / scale), w' = q * scale.
"""

from __future__ import annotations

import re

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from interp.backend import Model, copy_model, named_weights
from interp.errors import UserError

QUANTIZED = re.compile(r"blocks\.\d+\.(attn\.(W_Q|W_K|W_V|W_O|_W_K|_W_V)|mlp\.(W_in|W_gate|W_out))$")
# TransformerLens layout -> [out, in] matrix of the linear layer
_TO_MATRIX = {"W_O": "h i o -> o (h i)", "W_in": "i o -> o i", "W_gate": "i o -> o i", "W_out": "i o -> o i"}
_QKV = "h i o -> (h o) i"


def quantize_matrix(w: Float[Tensor, "out inp"], bits: int, group_size: int | None = None) -> Float[Tensor, "out inp"]:
    """Symmetric round-to-nearest at `bits` bits, one scale per output row (group_size None) or per
    `group_size` consecutive input columns of a row; dequantized back to w's dtype."""
    out, inp = w.shape
    size = inp if group_size is None else group_size
    if inp % size:
        raise UserError(
            f"a weight matrix has {inp} input channels, not a multiple of the quantization group size {size}: "
            "change --group-size"
        )
    qmax = 2 ** (bits - 1) - 1
    groups = w.float().reshape(out, inp // size, size)
    scale = groups.abs().amax(-1, keepdim=True) / qmax
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (groups / safe).round().clamp(-qmax, qmax)
    return (q * scale).reshape(out, inp).to(w.dtype)


def _pattern(name: str) -> str:
    short = name.rsplit(".", 1)[-1].lstrip("_")
    return _TO_MATRIX.get(short, _QKV)


def quantized(
    model: Model, bits: int, group_size: int | None = None
) -> tuple[Model, dict[str, float]]:
    """A copy of `model` with every quantized matrix (see the module docstring) rounded and dequantized,
    and each one's relative error ||w' - w||_F / ||w||_F, by TransformerLens name. `model` is unchanged."""
    if bits not in (4, 8):
        raise UserError(f"quantization to {bits} bits is not supported: use 8 (per channel) or 4 (group-wise)")
    if group_size is not None and group_size < 1:
        raise UserError(f"the quantization group size must be at least 1, got {group_size}: change --group-size")
    copy_ = copy_model(model)
    errors = {}
    with torch.no_grad():
        for name, w in named_weights(copy_).items():
            if not QUANTIZED.search(name):
                continue
            p = w.tensor  # TransformerLens's layout, sharing the model's storage
            pattern = _pattern(name)
            sizes = dict(zip(("h", "i"), p.shape)) if p.ndim == 3 else {}
            matrix = rearrange(p, pattern)
            back = rearrange(
                quantize_matrix(matrix, bits, group_size), " -> ".join(pattern.split(" -> ")[::-1]), **sizes
            )
            errors[name] = float((back.float() - p.float()).norm() / p.float().norm().clamp_min(1e-30))
            p.copy_(back)
    if not errors:
        raise UserError("the model has no attention or MLP weight matrices to quantize")
    return copy_, errors
