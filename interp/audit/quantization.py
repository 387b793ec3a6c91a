"""The quantization attack: round-to-nearest weights, dequantized back to float (Zhang et al., ICLR 2025:
4-bit quantization of unlearned models brought forgotten knowledge from 21% back to 83%).

An unlearning step small against the quantization step is rounded away. Quantized: the 2-D weight
matrices of the attention and MLP linear layers (W_Q, W_K, W_V, W_O, W_in, W_gate, W_out; TransformerLens
keeps the attention ones as 3-D per-head tensors, viewed here as the [out, in] matrices of the Hugging
Face layers); embeddings, the unembedding, biases and LayerNorms stay in float, as in the usual int8 /
int4 schemes, which leave the embeddings and the LM head unquantized. Three schemes, each per output
channel (group_size None) or per group of `group_size` consecutive input channels of an output channel:

- "symmetric" round-to-nearest: scale = max |w| / (2^(bits-1) - 1), q = round(w / scale), w' = q * scale;
- "asymmetric" (zero point): scale = (max w - min w) / (2^bits - 1), z = round(-min w / scale),
  q = clamp(round(w / scale) + z, 0, 2^bits - 1), w' = (q - z) * scale;
- "nf4" (Dettmers et al. 2023, QLoRA's 4-bit NormalFloat, bitsandbytes' default 4-bit type): each weight
  becomes the nearest of NF4's 16 levels times its block's absmax (block 64 in bitsandbytes). The codebook
  is reimplemented here (`NF4`, bitsandbytes' table) so that no GPU library is needed.
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
SCHEMES = ("symmetric", "asymmetric", "nf4")
NF4 = torch.tensor(  # bitsandbytes' NF4 codebook: quantiles of N(0, 1) scaled to [-1, 1], with an exact 0
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]
)


def quantize_matrix(
    w: Float[Tensor, "out inp"], bits: int, group_size: int | None = None, scheme: str = "symmetric"
) -> Float[Tensor, "out inp"]:
    """`scheme` (see the module docstring) at `bits` bits, one scale per output row (group_size None) or per
    `group_size` consecutive input columns of a row; dequantized back to w's dtype."""
    if scheme not in SCHEMES:
        raise UserError(f"unknown quantization scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if scheme == "nf4" and bits != 4:
        raise UserError("NF4 is a 4-bit codebook: use bits=4")
    out, inp = w.shape
    size = inp if group_size is None else group_size
    if inp % size:
        raise UserError(
            f"a weight matrix has {inp} input channels, not a multiple of the quantization group size {size}: "
            "change --group-size"
        )
    groups = w.float().reshape(out, inp // size, size)
    if scheme == "nf4":
        absmax = groups.abs().amax(-1, keepdim=True)
        normed = groups / torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        levels = NF4.to(groups.device)
        nearest = (normed[..., None] - levels).abs().argmin(-1)
        return (levels[nearest] * absmax).reshape(out, inp).to(w.dtype)
    if scheme == "asymmetric":
        top = 2**bits - 1
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = (high - low) / top
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = (-low / safe).round()
        q = ((groups / safe).round() + zero).clamp(0, top)
        return torch.where(scale > 0, (q - zero) * scale, groups).reshape(out, inp).to(w.dtype)
    qmax = 2 ** (bits - 1) - 1
    scale = groups.abs().amax(-1, keepdim=True) / qmax
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (groups / safe).round().clamp(-qmax, qmax)
    return (q * scale).reshape(out, inp).to(w.dtype)


def _pattern(name: str) -> str:
    short = name.rsplit(".", 1)[-1].lstrip("_")
    return _TO_MATRIX.get(short, _QKV)


def quantized(
    model: Model, bits: int, group_size: int | None = None, scheme: str = "symmetric"
) -> tuple[Model, dict[str, float]]:
    """A copy of `model` with every quantized matrix (see the module docstring) rounded and dequantized
    with `scheme`, and each one's relative error ||w' - w||_F / ||w||_F, by TransformerLens name. `model`
    is unchanged."""
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
                quantize_matrix(matrix, bits, group_size, scheme), " -> ".join(pattern.split(" -> ")[::-1]), **sizes
            )
            errors[name] = float((back.float() - p.float()).norm() / p.float().norm().clamp_min(1e-30))
            p.copy_(back)
    if not errors:
        raise UserError("the model has no attention or MLP weight matrices to quantize")
    return copy_, errors


def indivisible_width(model: Model, group_size: int | None) -> int | None:
    """The input width of a quantized matrix of `model` that `group_size` does not divide (None: every one
    divides, or one scale per output channel): such a model cannot be quantized in those groups."""
    if group_size is None:
        return None
    for name, w in named_weights(model).items():
        if QUANTIZED.search(name):
            width = rearrange(w.tensor, _pattern(name)).shape[1]
            if width % group_size:
                return width
    return None
