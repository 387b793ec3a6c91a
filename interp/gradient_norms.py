"""Each paragraph's own gradient norm, and whether MEM and NMEM paragraphs differ in it.

- `per_paragraph_norms`: every paragraph's own gradient norm per (layer, component, head) from
  batched passes, without per-paragraph gradients: for a linear map with inputs A [T, d_in] and
  output-gradients G [T, d_out] of one paragraph, ||G^T A||_F^2 = <A A^T, G G^T>_F ("ghost" norms).
- `compare_norms`: MEM vs NMEM per layer with an effect size and a Mann-Whitney U test.

The batch gradient maps these complement are `interp.gradients.gradient_map`.
"""

from __future__ import annotations

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
from interp.gradients import COMPONENTS, HEAD_COMPONENTS, check_inputs, check_supported_model
from interp.objectives import token_nll


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
    model: HookedTransformer, paragraphs: Paragraphs, *, objective: str = "nll", batch_size: int = 16
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
    check_supported_model(model)
    check_inputs(paragraphs, "input", batch_size)
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
