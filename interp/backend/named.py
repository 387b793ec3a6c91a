"""A weight under its TransformerLens name, whatever module holds it (shared by both backends)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def same(t: Tensor) -> Tensor:
    """The identity layout (the leaf is already in TransformerLens's layout)."""
    return t


@dataclass(frozen=True)
class NamedWeight:
    """A TransformerLens-named weight: the leaf parameter that holds it and `to_tl`, a view giving the
    TransformerLens layout of any tensor shaped like the leaf (the parameter, its gradient, a mask)."""

    leaf: nn.Parameter
    to_tl: Callable[[Tensor], Tensor] = same

    @property
    def tensor(self) -> Tensor:
        """The weight in TransformerLens's layout, sharing the leaf's storage."""
        return self.to_tl(self.leaf)


def leaf_masks(weights: dict[str, NamedWeight], masks: dict[str, Tensor]) -> tuple[list[nn.Parameter], list[Tensor]]:
    """The leaves holding the masked weights (in the masks' order, each once) and each leaf's mask in its own
    layout: the masks of all its named weights written through `to_tl` (one leaf may hold W_Q, W_K and W_V)."""
    leaves: dict[int, nn.Parameter] = {}
    out: dict[int, Tensor] = {}
    for name, mask in masks.items():
        w = weights[name]
        if id(w.leaf) not in leaves:
            leaves[id(w.leaf)] = w.leaf
            out[id(w.leaf)] = torch.zeros_like(w.leaf, dtype=mask.dtype)
        w.to_tl(out[id(w.leaf)]).copy_(mask)
    return list(leaves.values()), list(out.values())
