"""Where the gradient of a memorization objective lands: per weight, per component, per head.

- `parameter_gradients`: raw gradients of NLL or the paper's contrastive objective (Eq. 3),
  keyed by TransformerLens parameter names; the input to `interp.masks.top_k_mask`.
- `gradient_map`: one score per (layer, component) and per (layer, head, Q/K/V/O) for MEM and
  NMEM paragraphs (paper section 5.1: max |grad|, embeddings / unembedding / biases excluded),
  compared at EQUAL set sizes: the max (or norm) of a batch-mean gradient shrinks as the batch
  grows, so each set is split into chunks of the same size, each chunk's map is computed, and the
  chunk maps are averaged.

Each paragraph's own gradient norm and the MEM / NMEM tests on it are `interp.gradient_norms`.

At the original weights the KL term of Eq. 3 has zero gradient (KL(p || p_theta) is minimal at
theta = original), so there the contrastive gradient is exactly -w times the NLL gradient of the
target; the KL term only matters once the weights move (during unlearning).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.backend import Model, NamedWeight, named_weights, param_name
from interp.constants import GRAD_BATCH_SIZE
from interp.data import Paragraphs
from interp.display import Displayed
from interp.errors import UserError
from interp.metrics import NMEM_MAX_EM  # noqa: F401 (a public name here before GradMapOptions moved)
from interp.objectives import NLL_WEIGHT, continuation_nll, kl_to_reference, reference_log_probs
from interp.options import GRAD_MAP, OBJECTIVES, REDUCTIONS, GradMapOptions  # noqa: F401 (public names kept here)

COMPONENTS: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")
GATED_COMPONENTS: tuple[str, ...] = (*COMPONENTS, "W_gate")
HEAD_COMPONENTS: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O")
_LAYER_WEIGHT = re.compile(r"^blocks\.\d+\.(attn|mlp)\._?W_\w+$")  # _W_K / _W_V: grouped-query attention


def check_supported_model(model: Model) -> None:
    """UserError unless every block has attention and an MLP (gated MLPs and grouped-query attention are fine)."""
    if model.cfg.attn_only:
        raise UserError("gradient maps need an MLP in every block: this model is attention-only")


def model_components(model: Model) -> tuple[str, ...]:
    """The weight matrices of a block the maps report: the paper's six, and W_gate for a gated MLP."""
    return GATED_COMPONENTS if model.cfg.gated_mlp else COMPONENTS


def component_gradient(
    grads: dict[str, Tensor], model: Model, layer: int, component: str, *, per_query_head: bool = False
) -> Tensor:
    """`grads`' tensor for one block weight. Under grouped-query attention W_K / W_V are stored per key/value
    head (`_W_K`, `_W_V`); with `per_query_head` each query head gets the slice of the key/value head it reads
    (TransformerLens's `repeat_interleave`), so a key/value head's gradient counts toward every head of its group."""
    name = param_name(layer, component)
    if name in grads:
        return grads[name]
    grad = grads[f"blocks.{layer}.attn._{component}"]
    return grad.repeat_interleave(model.cfg.n_heads // grad.shape[0], dim=0) if per_query_head else grad


def check_inputs(paragraphs: Paragraphs, what: str, batch_size: int) -> None:
    """UserError for an empty paragraph set or a batch size below 1."""
    if len(paragraphs) == 0:
        raise UserError(f"no {what} paragraphs: the set is empty")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")


@contextlib.contextmanager
def _grad_only_for(params: dict[str, NamedWeight], model: Model):
    """requires_grad on exactly the leaves holding `params` inside the block; every flag restored afterwards."""
    wanted = {id(w.leaf) for w in params.values()}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in wanted)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def selected_weights(model: Model, *, include_embeddings: bool = False) -> dict[str, NamedWeight]:
    """The attention and MLP weight matrices of every block (TransformerLens names and layouts, whatever
    module holds them: interp.backend.named_weights); every weight if include_embeddings."""
    return {
        name: w for name, w in named_weights(model).items() if include_embeddings or _LAYER_WEIGHT.match(name)
    }


def selected_parameters(model: Model, *, include_embeddings: bool = False) -> dict[str, Tensor]:
    """`selected_weights` as tensors in TransformerLens's layout (the parameters themselves under
    HookedTransformer; storage-sharing views of the Hugging Face parameters under the bridge)."""
    return {name: w.tensor for name, w in selected_weights(model, include_embeddings=include_embeddings).items()}


def parameter_gradients(
    model: Model,
    targets: Paragraphs,
    retain: Paragraphs | None = None,
    *,
    objective: str = "contrastive",
    include_embeddings: bool = False,
    batch_size: int = GRAD_BATCH_SIZE,
    nll_weight: float = NLL_WEIGHT,
) -> dict[str, Tensor]:
    """Gradient of the objective with respect to each selected weight, at the model's current weights.

    objective="nll": mean continuation NLL over `targets`.
    objective="contrastive": Eq. 3, -nll_weight * mean NLL(targets) + KL(original || current) over
    `retain`'s continuation positions, the original being the model as given (so the KL gradient
    vanishes here, see the module docstring); equal to the mean over target paragraphs of the
    one-target objective's gradient. Work is done in batches of `batch_size` paragraphs.
    The model's weights, gradients (.grad) and requires_grad flags are left as they were.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    check_inputs(targets, "target", batch_size)
    if objective == "contrastive":
        if retain is None or len(retain) == 0:
            raise UserError("the contrastive objective needs retain (NMEM) paragraphs for its KL term")
        if retain.prefix_len != targets.prefix_len:
            raise UserError(
                f"target and retain prefixes differ in length ({targets.prefix_len} vs {retain.prefix_len})"
            )
    params = selected_weights(model, include_embeddings=include_embeddings)
    names, weights = list(params), list(params.values())
    leaves = [w.leaf for w in weights]
    total = [torch.zeros_like(w.tensor, dtype=torch.float32) for w in weights]
    device = model.cfg.device
    p_len = targets.prefix_len
    sign = 1.0 if objective == "nll" else -nll_weight

    def accumulate(loss: Tensor) -> None:
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        for acc, g, w in zip(total, grads, weights):
            if g is not None:
                acc += w.to_tl(g).float()

    with _grad_only_for(params, model):
        for start in range(0, len(targets), batch_size):
            tokens = targets.tokens[start : start + batch_size].to(device)
            accumulate(sign * continuation_nll(model, tokens, p_len, reduction="sum") / len(targets))
        if objective == "contrastive":
            for start in range(0, len(retain), batch_size):
                tokens = retain.tokens[start : start + batch_size].to(device)
                reference = reference_log_probs(model, tokens, p_len)
                accumulate(kl_to_reference(model, tokens, p_len, reference) * (tokens.shape[0] / len(retain)))
    return dict(zip(names, total))


def _reduce(g: Tensor, how: str, dims: tuple[int, ...] | None = None) -> Tensor:
    a = g.abs()
    dims = dims if dims is not None else tuple(range(g.ndim))
    if how == "max":
        return a.amax(dim=dims)
    if how == "mean":
        return a.mean(dim=dims)
    return g.pow(2).sum(dim=dims).sqrt()


@dataclass(frozen=True)
class GradientMap(Displayed):
    """Gradient scores of MEM and NMEM paragraphs per (layer, component) and per (layer, head).

    Each set's scores are the mean over chunks of `chunk_size` paragraphs of the chunk's reduced
    batch-mean gradient (`n_chunks_*` chunks per set; paragraphs beyond whole chunks are left out),
    so MEM and NMEM maps are comparable whatever the sets' sizes. `mem_layers` / `nmem_layers`
    reduce each layer's weight matrices (`components`: the paper's six, and W_gate for a gated MLP) together.
    Under grouped-query attention a head's W_K / W_V cells are those of the key/value head it reads. `mem_share` / `nmem_share` are each layer's
    share of the SQUARED gradient norm over all layer weights (a real share of the gradient for
    every `reduce`; a share of summed maxima would not be one). `mem_other` holds scores for the
    embeddings, biases and LayerNorms when they were included.
    """

    _view = "interp.views.gradients:figure_component_map"

    components: tuple[str, ...]
    mem: Float[Tensor, "layer component"]
    nmem: Float[Tensor, "layer component"]
    mem_heads: Float[Tensor, "layer head 4"]
    nmem_heads: Float[Tensor, "layer head 4"]
    mem_layers: Float[Tensor, "layer"]
    nmem_layers: Float[Tensor, "layer"]
    mem_layer_sq: Float[Tensor, "layer"]  # squared gradient norm per layer (mean over chunks)
    nmem_layer_sq: Float[Tensor, "layer"]
    objective: str
    reduce: str
    n_mem: int  # paragraphs used (whole chunks)
    n_nmem: int
    chunk_size: int  # paragraphs per chunk, the same for both sets
    mem_other: dict[str, float]
    nmem_other: dict[str, float]

    @property
    def set_size(self) -> int:
        """Deprecated name of `chunk_size` (a chunk, not a set: `--set-size` caps a whole set elsewhere)."""
        warnings.warn("GradientMap.set_size is now chunk_size", DeprecationWarning, stacklevel=2)
        return self.chunk_size

    @property
    def diff(self) -> Float[Tensor, "layer component"]:
        return self.mem - self.nmem

    @property
    def diff_heads(self) -> Float[Tensor, "layer head 4"]:
        return self.mem_heads - self.nmem_heads

    @property
    def mem_share(self) -> Float[Tensor, "layer"]:
        return self.mem_layer_sq / self.mem_layer_sq.sum()

    @property
    def nmem_share(self) -> Float[Tensor, "layer"]:
        return self.nmem_layer_sq / self.nmem_layer_sq.sum()

    @property
    def relative_diff_heads(self) -> Float[Tensor, "layer head 4"]:
        """MEM minus NMEM after scaling each map to sum 1: where MEM is relatively stronger."""
        return self.mem_heads / self.mem_heads.sum() - self.nmem_heads / self.nmem_heads.sum()

    def lower_half_share(self) -> dict[str, float]:
        """Share of the squared gradient norm in the lower half of the layers (a middle layer of an odd count split evenly)."""
        n = self.mem_layers.shape[0]
        weights = torch.tensor([1.0 if i < n // 2 else (0.5 if 2 * i + 1 == n else 0.0) for i in range(n)])
        return {"mem": float(self.mem_share @ weights), "nmem": float(self.nmem_share @ weights)}

    def most_salient(self) -> dict[str, dict]:
        """The largest (layer, head, Q/K/V/O) cell of the MEM, NMEM, difference and relative-difference maps."""
        out = {}
        for key, heads in (
            ("mem", self.mem_heads),
            ("nmem", self.nmem_heads),
            ("diff", self.diff_heads),
            ("relative_diff", self.relative_diff_heads),
        ):
            flat = int(heads.argmax())
            n_heads = heads.shape[1]
            layer, rest = divmod(flat, n_heads * 4)
            head, comp = divmod(rest, 4)
            out[key] = {
                "layer": layer,
                "head": head,
                "component": HEAD_COMPONENTS[comp],
                "value": float(heads.flatten()[flat]),
            }
        return out

    def to_json(self) -> dict:
        n_layers, n_heads = self.mem_heads.shape[:2]
        cells = [
            {
                "layer": l,
                "component": c,
                "mem": float(self.mem[l, j]),
                "nmem": float(self.nmem[l, j]),
                "diff": float(self.diff[l, j]),
            }
            for l in range(n_layers)
            for j, c in enumerate(self.components)
        ]
        heads = [
            {
                "layer": l,
                "head": h,
                "component": c,
                "mem": float(self.mem_heads[l, h, j]),
                "nmem": float(self.nmem_heads[l, h, j]),
                "diff": float(self.diff_heads[l, h, j]),
            }
            for l in range(n_layers)
            for h in range(n_heads)
            for j, c in enumerate(HEAD_COMPONENTS)
        ]
        layers = [
            {
                "layer": l,
                "mem": float(self.mem_layers[l]),
                "nmem": float(self.nmem_layers[l]),
                "mem_share": float(self.mem_share[l]),
                "nmem_share": float(self.nmem_share[l]),
                "share_diff": float(self.mem_share[l] - self.nmem_share[l]),
            }
            for l in range(n_layers)
        ]
        return {
            "objective": self.objective,
            "reduce": self.reduce,
            "n_mem": self.n_mem,
            "n_nmem": self.n_nmem,
            "chunk_size": self.chunk_size,
            "comparison": f"mean over chunks of {self.chunk_size} paragraphs per set",
            "share": "each layer's share of the squared gradient norm",
            "components": list(self.components),
            "cells": cells,
            "heads": heads,
            "layers": layers,
            "lower_half_share": self.lower_half_share(),
            "most_salient": self.most_salient(),
            "mem_other": self.mem_other,
            "nmem_other": self.nmem_other,
        }


def _score_tables(
    grads: dict[str, Tensor], model: Model, reduce: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, float]]:
    n_layers, components = model.cfg.n_layers, model_components(model)

    def grad(l: int, c: str, per_query_head: bool = False) -> Tensor:
        return component_gradient(grads, model, l, c, per_query_head=per_query_head)

    table = torch.stack([torch.stack([_reduce(grad(l, c), reduce) for c in components]) for l in range(n_layers)])
    heads = torch.stack(
        [
            torch.stack([_reduce(grad(l, c, True), reduce, dims=(1, 2)) for c in HEAD_COMPONENTS], dim=-1)
            for l in range(n_layers)
        ]
    )
    layer_grads = [torch.cat([grad(l, c).flatten() for c in components]) for l in range(n_layers)]
    layers = torch.stack([_reduce(g, reduce) for g in layer_grads])
    layer_sq = torch.stack([g.double().pow(2).sum() for g in layer_grads])
    in_table = {param_name(l, c) for l in range(n_layers) for c in components}
    in_table |= {f"blocks.{l}.attn._{c}" for l in range(n_layers) for c in ("W_K", "W_V")}
    other = {name: float(_reduce(g, reduce)) for name, g in grads.items() if name not in in_table}
    return table.cpu(), heads.cpu(), layers.cpu(), layer_sq.float().cpu(), other


def _chunked_scores(
    model: Model,
    targets: Paragraphs,
    others: Paragraphs,
    objective: str,
    include_embeddings: bool,
    batch_size: int,
    reduce: str,
    chunk_size: int,
    seed: int,
) -> tuple[list[Tensor], dict[str, float], int]:
    """Mean over chunks of `chunk_size` paragraphs (seeded order) of each chunk's score tables."""
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    n_chunks = len(targets) // chunk_size
    sums: list[Tensor] | None = None
    other: dict[str, float] = {}
    for c in range(n_chunks):
        chunk = targets.select(order[c * chunk_size : (c + 1) * chunk_size].sort().values)
        grads = parameter_gradients(
            model, chunk, others, objective=objective, include_embeddings=include_embeddings, batch_size=batch_size
        )
        *tables, chunk_other = _score_tables(grads, model, reduce)
        del grads
        sums = tables if sums is None else [a + b for a, b in zip(sums, tables)]
        other = {k: other.get(k, 0.0) + v for k, v in chunk_other.items()}
    return [t / n_chunks for t in sums], {k: v / n_chunks for k, v in other.items()}, n_chunks * chunk_size


def gradient_map(
    model: Model,
    mem: Paragraphs,
    nmem: Paragraphs,
    *,
    objective: str = GRAD_MAP.objective,
    reduce: str = GRAD_MAP.reduce,
    chunk_size: int | None = None,
    include_embeddings: bool = GRAD_MAP.include_embeddings,
    batch_size: int = GRAD_MAP.grad_batch_size,
    seed: int = GRAD_MAP.seed,
    set_size: int | None = None,
) -> GradientMap:
    """Gradient scores per (layer, component) and per head, for MEM and for NMEM paragraphs, at equal set sizes.

    objective="nll": the gradient of each chunk's mean continuation NLL (paper section 5.1).
    objective="contrastive": MEM side = Eq. 3 with MEM targets and NMEM retain; NMEM side = Eq. 3
    with the roles swapped. reduce: "max" |grad| (the paper's), "l2" norm, or "mean" |grad|.
    chunk_size (default: the smaller set's size): both sets are cut into chunks of this many
    paragraphs (seeded), each chunk's map is computed, and the maps are averaged per set. (`set_size` is
    its deprecated name.)
    """
    if set_size is not None:
        warnings.warn("gradient_map(set_size=) is now chunk_size=", DeprecationWarning, stacklevel=2)
        chunk_size = set_size if chunk_size is None else chunk_size
    if reduce not in REDUCTIONS:
        raise UserError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    check_supported_model(model)
    check_inputs(mem, "MEM", batch_size)
    check_inputs(nmem, "NMEM", batch_size)
    chunk_size = min(len(mem), len(nmem)) if chunk_size is None else chunk_size
    if not 1 <= chunk_size <= min(len(mem), len(nmem)):
        raise UserError(
            f"chunk_size must be between 1 and the smaller set's size ({min(len(mem), len(nmem))}), got {chunk_size}"
        )
    args = dict(
        objective=objective,
        include_embeddings=include_embeddings,
        batch_size=batch_size,
        reduce=reduce,
        chunk_size=chunk_size,
        seed=seed,
    )
    (m_table, m_heads, m_layers, m_sq), m_other, n_mem = _chunked_scores(model, mem, nmem, **args)
    (n_table, n_heads, n_layers_t, n_sq), n_other, n_nmem = _chunked_scores(model, nmem, mem, **args)
    return GradientMap(
        components=model_components(model),
        mem=m_table,
        nmem=n_table,
        mem_heads=m_heads,
        nmem_heads=n_heads,
        mem_layers=m_layers,
        nmem_layers=n_layers_t,
        mem_layer_sq=m_sq,
        nmem_layer_sq=n_sq,
        objective=objective,
        reduce=reduce,
        n_mem=n_mem,
        n_nmem=n_nmem,
        chunk_size=chunk_size,
        mem_other=m_other,
        nmem_other=n_other,
    )
