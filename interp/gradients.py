"""Where the gradient of a memorization objective lands: per weight, per component, per paragraph.

- `parameter_gradients`: raw gradients of NLL or the paper's contrastive objective (Eq. 3),
  keyed by TransformerLens parameter names; the input to `interp.masks.top_k_mask`.
- `gradient_map`: one score per (layer, component) and per (layer, head, Q/K/V/O) for MEM and
  NMEM paragraphs (paper section 5.1: max |grad|, embeddings / unembedding / biases excluded),
  compared at EQUAL set sizes: the max (or norm) of a batch-mean gradient shrinks as the batch
  grows, so each set is split into chunks of the same size, each chunk's map is computed, and the
  chunk maps are averaged.
- `per_paragraph_norms`: every paragraph's own gradient norm per (layer, component, head) from
  batched passes, without per-paragraph gradients: for a linear map with inputs A [T, d_in] and
  output-gradients G [T, d_out] of one paragraph, ||G^T A||_F^2 = <A A^T, G G^T>_F.
- `compare_norms`: MEM vs NMEM per layer with an effect size and a Mann-Whitney U test.

At the original weights the KL term of Eq. 3 has zero gradient (KL(p || p_theta) is minimal at
theta = original), so there the contrastive gradient is exactly -w times the NLL gradient of the
target; the KL term only matters once the weights move (during unlearning).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from scipy import stats
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES
from transformer_lens.utils import get_act_name

from interp.data import Paragraphs
from interp.errors import UserError
from interp.objectives import NLL_WEIGHT, continuation_nll, kl_to_reference, reference_log_probs, token_nll

COMPONENTS: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")
HEAD_COMPONENTS: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O")
OBJECTIVES = ("nll", "contrastive")
REDUCTIONS = ("max", "l2", "mean")
_LAYER_WEIGHT = re.compile(r"^blocks\.\d+\.(attn|mlp)\.W_\w+$")


def _param_name(layer: int, component: str) -> str:
    module = "attn" if component in HEAD_COMPONENTS else "mlp"
    return f"blocks.{layer}.{module}.{component}"


def _check_supported(model: HookedTransformer) -> None:
    cfg = model.cfg
    if cfg.attn_only or cfg.n_key_value_heads not in (None, cfg.n_heads) or cfg.gated_mlp:
        raise UserError(
            "gradient maps need standard multi-head attention and an ungated MLP in every block "
            "(GPT-Neo, GPT-2, NeoX-style models); this model is attention-only, grouped-query or gated"
        )


def _check_inputs(paragraphs: Paragraphs, what: str, batch_size: int) -> None:
    if len(paragraphs) == 0:
        raise UserError(f"no {what} paragraphs: the set is empty")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")


@contextlib.contextmanager
def _grad_only_for(params: dict[str, torch.nn.Parameter], model: HookedTransformer):
    """requires_grad on exactly `params` inside the block; every flag restored afterwards."""
    saved = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        for name, p in model.named_parameters():
            p.requires_grad_(name in params)
        with torch.enable_grad():
            yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(saved[name])


def selected_parameters(model: HookedTransformer, include_embeddings: bool = False) -> dict[str, torch.nn.Parameter]:
    """The attention and MLP weight matrices of every block; all parameters if include_embeddings."""
    return {
        name: p for name, p in model.named_parameters() if include_embeddings or _LAYER_WEIGHT.match(name)
    }


def parameter_gradients(
    model: HookedTransformer,
    target: Paragraphs,
    retain: Paragraphs | None = None,
    objective: str = "contrastive",
    include_embeddings: bool = False,
    batch_size: int = 16,
    nll_weight: float = NLL_WEIGHT,
) -> dict[str, Tensor]:
    """Gradient of the objective with respect to each selected weight, at the model's current weights.

    objective="nll": mean continuation NLL over `target`.
    objective="contrastive": Eq. 3, -nll_weight * mean NLL(target) + KL(original || current) over
    `retain`'s continuation positions, the original being the model as given (so the KL gradient
    vanishes here, see the module docstring); equal to the mean over target paragraphs of the
    one-target objective's gradient. Work is done in batches of `batch_size` paragraphs.
    The model's weights, gradients (.grad) and requires_grad flags are left as they were.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    _check_inputs(target, "target", batch_size)
    if objective == "contrastive":
        if retain is None or len(retain) == 0:
            raise UserError("the contrastive objective needs retain (NMEM) paragraphs for its KL term")
        if retain.prefix_len != target.prefix_len:
            raise UserError(f"target and retain prefixes differ in length ({target.prefix_len} vs {retain.prefix_len})")
    params = selected_parameters(model, include_embeddings)
    names, tensors = list(params), list(params.values())
    total = [torch.zeros_like(p, dtype=torch.float32) for p in tensors]
    device = model.cfg.device
    p_len = target.prefix_len
    sign = 1.0 if objective == "nll" else -nll_weight

    def accumulate(loss: Tensor) -> None:
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for acc, g in zip(total, grads):
            if g is not None:
                acc += g.float()

    with _grad_only_for(params, model):
        for start in range(0, len(target), batch_size):
            tokens = target.tokens[start : start + batch_size].to(device)
            accumulate(sign * continuation_nll(model, tokens, p_len, reduction="sum") / len(target))
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
class GradientMap:
    """Gradient scores of MEM and NMEM paragraphs per (layer, component) and per (layer, head).

    Each set's scores are the mean over chunks of `set_size` paragraphs of the chunk's reduced
    batch-mean gradient (`n_chunks_*` chunks per set; paragraphs beyond whole chunks are left out),
    so MEM and NMEM maps are comparable whatever the sets' sizes. `mem_layers` / `nmem_layers`
    reduce each layer's six weight matrices together. `mem_share` / `nmem_share` are each layer's
    share of the SQUARED gradient norm over all layer weights (a real share of the gradient for
    every `reduce`; a share of summed maxima would not be one). `mem_other` holds scores for the
    embeddings, biases and LayerNorms when they were included.
    """

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
    set_size: int  # paragraphs per chunk, the same for both sets
    mem_other: dict[str, float]
    nmem_other: dict[str, float]

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
        for key, heads in (("mem", self.mem_heads), ("nmem", self.nmem_heads), ("diff", self.diff_heads),
                           ("relative_diff", self.relative_diff_heads)):
            flat = int(heads.argmax())
            n_heads = heads.shape[1]
            layer, rest = divmod(flat, n_heads * 4)
            head, comp = divmod(rest, 4)
            out[key] = {"layer": layer, "head": head, "component": HEAD_COMPONENTS[comp], "value": float(heads.flatten()[flat])}
        return out

    def to_json(self) -> dict:
        n_layers, n_heads = self.mem_heads.shape[:2]
        cells = [
            {"layer": l, "component": c, "mem": float(self.mem[l, j]), "nmem": float(self.nmem[l, j]), "diff": float(self.diff[l, j])}
            for l in range(n_layers) for j, c in enumerate(self.components)
        ]
        heads = [
            {"layer": l, "head": h, "component": c, "mem": float(self.mem_heads[l, h, j]),
             "nmem": float(self.nmem_heads[l, h, j]), "diff": float(self.diff_heads[l, h, j])}
            for l in range(n_layers) for h in range(n_heads) for j, c in enumerate(HEAD_COMPONENTS)
        ]
        layers = [
            {"layer": l, "mem": float(self.mem_layers[l]), "nmem": float(self.nmem_layers[l]),
             "mem_share": float(self.mem_share[l]), "nmem_share": float(self.nmem_share[l]),
             "share_diff": float(self.mem_share[l] - self.nmem_share[l])}
            for l in range(n_layers)
        ]
        return {
            "objective": self.objective, "reduce": self.reduce, "n_mem": self.n_mem, "n_nmem": self.n_nmem,
            "set_size": self.set_size, "comparison": f"mean over chunks of {self.set_size} paragraphs per set",
            "share": "each layer's share of the squared gradient norm", "components": list(self.components),
            "cells": cells, "heads": heads, "layers": layers, "lower_half_share": self.lower_half_share(),
            "most_salient": self.most_salient(), "mem_other": self.mem_other, "nmem_other": self.nmem_other,
        }


def _score_tables(grads: dict[str, Tensor], n_layers: int, reduce: str) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, float]]:
    table = torch.stack([torch.stack([_reduce(grads[_param_name(l, c)], reduce) for c in COMPONENTS]) for l in range(n_layers)])
    heads = torch.stack([
        torch.stack([_reduce(grads[_param_name(l, c)], reduce, dims=(1, 2)) for c in HEAD_COMPONENTS], dim=-1)
        for l in range(n_layers)
    ])
    layer_grads = [torch.cat([grads[_param_name(l, c)].flatten() for c in COMPONENTS]) for l in range(n_layers)]
    layers = torch.stack([_reduce(g, reduce) for g in layer_grads])
    layer_sq = torch.stack([g.double().pow(2).sum() for g in layer_grads])
    in_table = {_param_name(l, c) for l in range(n_layers) for c in COMPONENTS}
    other = {name: float(_reduce(g, reduce)) for name, g in grads.items() if name not in in_table}
    return table.cpu(), heads.cpu(), layers.cpu(), layer_sq.float().cpu(), other


def _chunked_scores(
    model: HookedTransformer, targets: Paragraphs, others: Paragraphs, objective: str, include_embeddings: bool,
    batch_size: int, reduce: str, set_size: int, seed: int,
) -> tuple[list[Tensor], dict[str, float], int]:
    """Mean over chunks of `set_size` paragraphs (seeded order) of each chunk's score tables."""
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    n_chunks = len(targets) // set_size
    sums: list[Tensor] | None = None
    other: dict[str, float] = {}
    for c in range(n_chunks):
        chunk = targets.select(order[c * set_size : (c + 1) * set_size].sort().values)
        grads = parameter_gradients(model, chunk, others, objective=objective, include_embeddings=include_embeddings,
                                    batch_size=batch_size)
        *tables, chunk_other = _score_tables(grads, model.cfg.n_layers, reduce)
        del grads
        sums = tables if sums is None else [a + b for a, b in zip(sums, tables)]
        other = {k: other.get(k, 0.0) + v for k, v in chunk_other.items()}
    return [t / n_chunks for t in sums], {k: v / n_chunks for k, v in other.items()}, n_chunks * set_size


def gradient_map(
    model: HookedTransformer,
    mem: Paragraphs,
    nmem: Paragraphs,
    *,
    objective: str = "nll",
    reduce: str = "max",
    set_size: int | None = None,
    include_embeddings: bool = False,
    batch_size: int = 16,
    seed: int = 0,
) -> GradientMap:
    """Gradient scores per (layer, component) and per head, for MEM and for NMEM paragraphs, at equal set sizes.

    objective="nll": the gradient of each chunk's mean continuation NLL (paper section 5.1).
    objective="contrastive": MEM side = Eq. 3 with MEM targets and NMEM retain; NMEM side = Eq. 3
    with the roles swapped. reduce: "max" |grad| (the paper's), "l2" norm, or "mean" |grad|.
    set_size (default: the smaller set's size): both sets are cut into chunks of this many
    paragraphs (seeded), each chunk's map is computed, and the maps are averaged per set.
    """
    if reduce not in REDUCTIONS:
        raise UserError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    _check_supported(model)
    _check_inputs(mem, "MEM", batch_size)
    _check_inputs(nmem, "NMEM", batch_size)
    set_size = min(len(mem), len(nmem)) if set_size is None else set_size
    if not 1 <= set_size <= min(len(mem), len(nmem)):
        raise UserError(f"set_size must be between 1 and the smaller set's size ({min(len(mem), len(nmem))}), got {set_size}")
    args = dict(objective=objective, include_embeddings=include_embeddings, batch_size=batch_size, reduce=reduce,
                set_size=set_size, seed=seed)
    (m_table, m_heads, m_layers, m_sq), m_other, n_mem = _chunked_scores(model, mem, nmem, **args)
    (n_table, n_heads, n_layers_t, n_sq), n_other, n_nmem = _chunked_scores(model, nmem, mem, **args)
    return GradientMap(
        components=COMPONENTS, mem=m_table, nmem=n_table, mem_heads=m_heads, nmem_heads=n_heads,
        mem_layers=m_layers, nmem_layers=n_layers_t, mem_layer_sq=m_sq, nmem_layer_sq=n_sq, objective=objective,
        reduce=reduce, n_mem=n_mem, n_nmem=n_nmem, set_size=set_size, mem_other=m_other, nmem_other=n_other,
    )


@dataclass(frozen=True)
class PerParagraphNorms:
    """Each paragraph's own L2 gradient norm of its mean continuation NLL, per weight matrix.

    `norms[i, l, c]` is ||d loss_i / d W_c of layer l||_F; `head_norms[i, l, h, :]` the same for
    head h's slice of W_Q, W_K, W_V, W_O (so the squares of the head norms sum to `norms`).
    """

    ids: tuple[str, ...]
    components: tuple[str, ...]
    norms: Float[Tensor, "n layer component"]
    head_norms: Float[Tensor, "n layer head 4"]
    loss: Float[Tensor, "n"]

    @property
    def layer_norms(self) -> Float[Tensor, "n layer"]:
        """Norm of each layer's six weight matrices together."""
        return self.norms.pow(2).sum(-1).sqrt()

    @property
    def layer_share(self) -> Float[Tensor, "n layer"]:
        """Part of each paragraph's squared gradient norm (over all layer weights) in each layer."""
        sq = self.norms.pow(2).sum(-1)
        return sq / sq.sum(-1, keepdim=True)

    def to_json(self) -> dict:
        return {
            "components": list(self.components), "head_components": list(HEAD_COMPONENTS),
            "paragraphs": [
                {"id": pid, "loss": float(self.loss[i]), "norms": self.norms[i].tolist(), "head_norms": self.head_norms[i].tolist()}
                for i, pid in enumerate(self.ids)
            ],
        }


def _ln_output(ln: torch.nn.Module, normalized: Tensor) -> Tensor:
    """A LayerNorm's output from its hook_normalized value (weights are not folded in this toolkit)."""
    out = normalized
    if hasattr(ln, "w"):
        out = out * ln.w
    if hasattr(ln, "b"):
        out = out + ln.b
    return out


def _gram(x: Tensor) -> Tensor:
    """x [b, T, d] -> [b, T, T]; x [b, T, h, d] -> [b, h, T, T]; float64 so the inner products stay exact."""
    x = x.double()
    if x.ndim == 3:
        return torch.einsum("btd,bsd->bts", x, x)
    return torch.einsum("bthd,bshd->bhts", x, x)


def per_paragraph_norms(
    model: HookedTransformer, paragraphs: Paragraphs, objective: str = "nll", batch_size: int = 16
) -> PerParagraphNorms:
    """Each paragraph's gradient norm per (layer, component, head), from batched passes.

    The loss is the SUM over the batch of per-paragraph mean continuation NLLs, so the
    output-gradient G captured at a hook for paragraph i is that of loss_i alone; with the input
    A of the same linear map, the paragraph's weight gradient is G_i^T A_i and its squared norm
    is <A_i A_i^T, G_i G_i^T>_F (a T x T product, never a d_in x d_out gradient). Only "nll":
    the contrastive objective's per-paragraph gradient at the original weights is w times it.
    """
    if objective != "nll":
        raise UserError(f"per-paragraph norms support objective 'nll' only, not {objective!r}")
    _check_supported(model)
    _check_inputs(paragraphs, "input", batch_size)
    cfg = model.cfg
    if cfg.use_split_qkv_input or cfg.use_attn_in or cfg.positional_embedding_type == "shortformer" \
            or cfg.use_normalization_before_and_after or cfg.original_architecture in POST_NORM_ARCHITECTURES:
        raise UserError("per-paragraph norms need a pre-LayerNorm model whose attention reads ln1's output directly")
    input_hooks = {}
    for layer in range(cfg.n_layers):
        input_hooks[("ln1", layer)] = f"blocks.{layer}.ln1.hook_normalized"
        input_hooks[("ln2", layer)] = f"blocks.{layer}.ln2.hook_normalized"
        input_hooks[("z", layer)] = get_act_name("z", layer)
        input_hooks[("post", layer)] = get_act_name("post", layer)
    store: dict[str, Tensor] = {}

    def save(act: Tensor, hook) -> Tensor:
        store[hook.name] = act
        return act

    def into_graph(act: Tensor, hook) -> Tensor:
        return act if act.requires_grad else act.detach().requires_grad_(True)

    g_names = [get_act_name(n, layer) for layer in range(cfg.n_layers) for n in ("q", "k", "v", "attn_out", "pre", "mlp_out")]
    fwd_hooks = [("hook_embed", into_graph)] + [(n, save) for n in g_names + list(input_hooks.values())]
    all_norms, all_heads, all_loss = [], [], []
    for start in range(0, len(paragraphs), batch_size):
        tokens = paragraphs.tokens[start : start + batch_size].to(cfg.device)
        store.clear()
        with torch.enable_grad(), model.hooks(fwd_hooks=fwd_hooks):
            per_paragraph = token_nll(model, tokens, paragraphs.prefix_len).mean(dim=1)
            grads = dict(zip(g_names, torch.autograd.grad(per_paragraph.sum(), [store[n] for n in g_names])))
        with torch.no_grad():
            layer_rows, head_rows = [], []
            for layer in range(cfg.n_layers):
                block = model.blocks[layer]
                attn_in = _gram(_ln_output(block.ln1, store[input_hooks[("ln1", layer)]]))
                qkv = [(attn_in[:, None] * _gram(grads[get_act_name(n, layer)])).sum((-1, -2)) for n in ("q", "k", "v")]
                out = (_gram(store[input_hooks[("z", layer)]]) * _gram(grads[get_act_name("attn_out", layer)])[:, None]).sum((-1, -2))
                heads_sq = torch.stack(qkv + [out], dim=-1)  # [b, head, 4]
                w_in = (_gram(_ln_output(block.ln2, store[input_hooks[("ln2", layer)]])) * _gram(grads[get_act_name("pre", layer)])).sum((-1, -2))
                w_out = (_gram(store[input_hooks[("post", layer)]]) * _gram(grads[get_act_name("mlp_out", layer)])).sum((-1, -2))
                layer_rows.append(torch.cat([heads_sq.sum(1), w_in[:, None], w_out[:, None]], dim=-1))
                head_rows.append(heads_sq)
            all_norms.append(torch.stack(layer_rows, dim=1).clamp_min(0).sqrt().float().cpu())
            all_heads.append(torch.stack(head_rows, dim=1).clamp_min(0).sqrt().float().cpu())
            all_loss.append(per_paragraph.detach().float().cpu())
        store.clear()
    return PerParagraphNorms(
        ids=paragraphs.ids, components=COMPONENTS, norms=torch.cat(all_norms),
        head_norms=torch.cat(all_heads), loss=torch.cat(all_loss),
    )


@dataclass(frozen=True)
class NormComparison:
    """MEM vs NMEM per-paragraph gradient norms, per layer: medians, effect sizes, rank tests.

    For each layer two quantities are compared: `norm` (the layer's gradient norm) and `share`
    (the part of the paragraph's squared gradient norm in that layer). Effect sizes are signed so
    that positive = larger for MEM: rank-biserial r = 2 U_mem / (n_mem n_nmem) - 1 and Cohen's d
    with the pooled standard deviation. p-values are two-sided Mann-Whitney U; `*_p_bonferroni`
    multiplies by the number of layers. `component_*` repeat the norm test per (layer, component).
    """

    n_mem: int
    n_nmem: int
    components: tuple[str, ...]
    norm_mem_median: Float[Tensor, "layer"]
    norm_nmem_median: Float[Tensor, "layer"]
    norm_rank_biserial: Float[Tensor, "layer"]
    norm_cohen_d: Float[Tensor, "layer"]
    norm_p: Float[Tensor, "layer"]
    share_mem_median: Float[Tensor, "layer"]
    share_nmem_median: Float[Tensor, "layer"]
    share_rank_biserial: Float[Tensor, "layer"]
    share_cohen_d: Float[Tensor, "layer"]
    share_p: Float[Tensor, "layer"]
    component_rank_biserial: Float[Tensor, "layer component"]
    component_p: Float[Tensor, "layer component"]

    def to_json(self) -> dict:
        n_layers = self.norm_p.shape[0]
        layers = []
        for l in range(n_layers):
            row = {"layer": l}
            for q in ("norm", "share"):
                p = float(getattr(self, f"{q}_p")[l])
                row[q] = {
                    "mem_median": float(getattr(self, f"{q}_mem_median")[l]),
                    "nmem_median": float(getattr(self, f"{q}_nmem_median")[l]),
                    "rank_biserial": float(getattr(self, f"{q}_rank_biserial")[l]),
                    "cohen_d": float(getattr(self, f"{q}_cohen_d")[l]),
                    "p": p, "p_bonferroni": min(1.0, p * n_layers),
                }
            row["components"] = {
                c: {"rank_biserial": float(self.component_rank_biserial[l, j]), "p": float(self.component_p[l, j])}
                for j, c in enumerate(self.components)
            }
            layers.append(row)
        return {"n_mem": self.n_mem, "n_nmem": self.n_nmem, "test": "Mann-Whitney U, two-sided", "layers": layers}


def _effects(x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """Rank-biserial r, Cohen's d and the Mann-Whitney p along axis 0 (x = MEM, y = NMEM)."""
    u, p = stats.mannwhitneyu(x, y, alternative="two-sided", axis=0)
    r = 2.0 * u / (x.shape[0] * y.shape[0]) - 1.0
    pooled = np.sqrt(((x.shape[0] - 1) * x.var(0, ddof=1) + (y.shape[0] - 1) * y.var(0, ddof=1)) / (x.shape[0] + y.shape[0] - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (x.mean(0) - y.mean(0)) / pooled
    return torch.as_tensor(r, dtype=torch.float32), torch.as_tensor(d, dtype=torch.float32), torch.as_tensor(p, dtype=torch.float32)


def compare_norms(mem: PerParagraphNorms, nmem: PerParagraphNorms) -> NormComparison:
    """Do MEM and NMEM paragraphs differ in per-layer gradient norm and in its share per layer?"""
    if len(mem.ids) < 2 or len(nmem.ids) < 2:
        raise UserError(f"need at least 2 MEM and 2 NMEM paragraphs to compare, got {len(mem.ids)} and {len(nmem.ids)}")
    if mem.norms.shape[1:] != nmem.norms.shape[1:]:
        raise UserError("MEM and NMEM norms come from different models (layer / component shapes differ)")
    fields = {}
    for q, xm, xn in (("norm", mem.layer_norms, nmem.layer_norms), ("share", mem.layer_share, nmem.layer_share)):
        r, d, p = _effects(xm.double().numpy(), xn.double().numpy())
        fields |= {f"{q}_mem_median": xm.median(0).values, f"{q}_nmem_median": xn.median(0).values,
                   f"{q}_rank_biserial": r, f"{q}_cohen_d": d, f"{q}_p": p}
    r, _, p = _effects(mem.norms.double().numpy(), nmem.norms.double().numpy())
    return NormComparison(n_mem=len(mem.ids), n_nmem=len(nmem.ids), components=mem.components,
                          component_rank_biserial=r, component_p=p, **fields)
