"""Each paragraph's own gradient norm, and whether MEM and NMEM paragraphs differ in it.

- `per_paragraph_norms`: every paragraph's own gradient norm per (layer, component, head) from
  batched passes, without per-paragraph gradients: for a linear map with inputs A [T, d_in] and
  output-gradients G [T, d_out] of one paragraph, ||G^T A||_F^2 = <A A^T, G G^T>_F ("ghost" norms).
  The Grams are float32 (float64 for a float64 model); each layer's input Grams are taken in the
  forward and combined with its output-gradients inside the backward, as autograd produces them,
  so a layer's saved inputs are released as soon as its norms are known. A pass holds only as many
  paragraphs as keep its saved activations within the gradient bytes one backward per paragraph
  needs, so its peak stays under that loop's.
- `compare_norms`: MEM vs NMEM per layer with an effect size and a Mann-Whitney U test.

The batch gradient maps these complement are `interp.gradients.gradient_map`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from operator import attrgetter

import numpy as np
import torch
from jaxtyping import Float, Int
from scipy import stats
from torch import Tensor

from interp.backend import (
    HAS_GHOST_PASS,
    Model,
    act_name,
    final_norm,
    hooks_on,
    is_post_norm,
    run_to,
    softcap,
    unembed_parts,
)
from interp.constants import GRAD_BATCH_SIZE
from interp.data import Paragraphs
from interp.errors import UserError
from interp.gradients import (
    COMPONENTS,
    HEAD_COMPONENTS,
    _grad_only_for,
    check_inputs,
    check_supported_model,
    component_gradient,
    model_components,
    parameter_gradients,
    selected_weights,
)
from interp.io import float_from_json, tensor_from_json
from interp.objectives import continuation_nll


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
        """Norm of each layer's weight matrices (`components`) together."""
        return self.norms.pow(2).sum(-1).sqrt()

    @property
    def layer_share(self) -> Float[Tensor, "n layer"]:
        """Part of each paragraph's squared gradient norm (over all layer weights) in each layer."""
        sq = self.norms.pow(2).sum(-1)
        return sq / sq.sum(-1, keepdim=True)

    def to_json(self) -> dict:
        return {
            "components": list(self.components),
            "head_components": list(HEAD_COMPONENTS),
            "paragraphs": [
                {
                    "id": pid,
                    "loss": float(self.loss[i]),
                    "norms": self.norms[i].tolist(),
                    "head_norms": self.head_norms[i].tolist(),
                }
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


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float32 / half models, float64 for float64 ones."""
    return torch.promote_types(dtype, torch.float32)


def _gram(x: Tensor) -> Tensor:
    """x [b, T, d] -> x x^T [b, T, T] in the accumulation dtype (float32, or float64 for float64 models)."""
    x = x.to(_acc_dtype(x.dtype))
    return torch.bmm(x, x.transpose(1, 2))


def _ghost(gram: Tensor, x: Tensor, groups: int) -> Tensor:
    """sum_{t,s} gram[t,s] <x_t, x_s> within each of `groups` equal slices of x's last dims: [b, groups].

    With gram = A A^T and x = G (or gram = G G^T and x = A) of one paragraph this is ||G^T A||_F^2
    for each slice, computed as sum((gram @ x) * x) so no per-slice T x T matrix is built.
    """
    x = x.reshape(x.shape[0], x.shape[1], -1).to(gram.dtype)
    return (torch.bmm(gram, x) * x).reshape(x.shape[0], x.shape[1], groups, -1).sum((1, 3))


CE_CHUNK_BYTES = 16 * 2**20  # per vocab-sized float32 temporary of the chunked unembedding + cross-entropy
MIN_CHUNK_ROWS = 32  # below ~16 rows the CPU matmul takes other kernels, whose rounding differs from the unchunked one


def _chunk_rows(d_vocab: int, chunk_bytes: int = CE_CHUNK_BYTES) -> int:
    """Rows per chunk of `_ChunkedTokenNLL` so that one float32 [rows, d_vocab] temporary fits in chunk_bytes.

    A byte bound rather than a row count: the temporaries stay the same size whatever the vocabulary
    (83 rows of GPT-2's 50257, 1024 of a 4096 vocabulary), and a chunk of tens of rows or more keeps
    the matmul efficient. At least MIN_CHUNK_ROWS rows, so each row's logits round as in one unchunked
    matmul (NLLs near 0, as memorised paragraphs have, amplify a logit's last-bit difference ~1e4 times).
    """
    return max(MIN_CHUNK_ROWS, chunk_bytes // (4 * d_vocab))


def _rows_token_nll(
    resid: Float[Tensor, "rows d_model"],
    w_u: Float[Tensor, "d_model vocab"],
    b_u: Float[Tensor, "vocab"],
    targets: Int[Tensor, "rows"],
    cfg,
) -> Float[Tensor, "rows"]:
    """-log p(target) of some rows, by the same operations as `interp.objectives.token_nll` (soft cap,
    float32 log-softmax), so that rounding, which matters where p(target) is close to 1, is the same."""
    logp = softcap(torch.matmul(resid, w_u) + b_u, cfg).float().log_softmax(-1)
    return -logp.gather(-1, targets[:, None]).squeeze(-1)


class _ChunkedTokenNLL(torch.autograd.Function):
    """`_rows_token_nll` of all rows, `rows` at a time, keeping only the residual for the backward.

    Autograd would keep the float32 logits and log-softmax of every row ([rows, d_vocab] each) until
    the backward; here the forward keeps none, and the backward recomputes each chunk's logits and
    differentiates that chunk under autograd (the soft cap's derivative included), so the
    vocabulary-sized temporaries are bounded by one chunk. W_U and b_U get no gradient (no
    parameter requires one during the ghost pass).
    """

    @staticmethod
    def forward(ctx, resid: Tensor, w_u: Tensor, b_u: Tensor, targets: Tensor, cfg, rows: int) -> Tensor:
        ctx.save_for_backward(resid, w_u, b_u, targets)
        ctx.cfg, ctx.rows = cfg, rows
        return torch.cat(
            [
                _rows_token_nll(resid[s : s + rows], w_u, b_u, targets[s : s + rows], cfg)
                for s in range(0, resid.shape[0], rows)
            ]
        )

    @staticmethod
    def backward(ctx, grad: Tensor):
        resid, w_u, b_u, targets = ctx.saved_tensors
        grad_resid = torch.empty_like(resid)
        for s in range(0, resid.shape[0], ctx.rows):
            with torch.enable_grad():
                x = resid[s : s + ctx.rows].detach().requires_grad_(True)
                nll = _rows_token_nll(x, w_u, b_u, targets[s : s + ctx.rows], ctx.cfg)
                (grad_resid[s : s + ctx.rows],) = torch.autograd.grad(nll, x, grad[s : s + ctx.rows])
        return grad_resid, None, None, None, None, None


def _continuation_token_nll(
    model: Model, tokens: Int[Tensor, "batch seq"], prefix_len: int
) -> Float[Tensor, "batch cont"]:
    """`interp.objectives.token_nll`, unembedding only the continuation positions, `_chunk_rows` at a
    time (`_ChunkedTokenNLL`), and reading W_U in place (TransformerLens's Unembed copies W_U^T on every
    forward and keeps it for the backward); the same values up to float rounding.

    The unembedding's hook_in / hook_out do not fire: the ghost pass hooks neither, and chunked
    logits could not be handed to a hook as one tensor.
    """
    cfg = model.cfg
    resid = final_norm(model, run_to(model, tokens, cfg.n_layers)[:, prefix_len - 1 : -1])
    _, w_u, b_u = unembed_parts(model)
    targets = tokens[:, prefix_len:].to(resid.device).reshape(-1)
    nll = _ChunkedTokenNLL.apply(resid.reshape(-1, resid.shape[-1]), w_u, b_u, targets, cfg, _chunk_rows(w_u.shape[-1]))
    return nll.reshape(resid.shape[:-1])


def _gelu_new_backward(x: Tensor, grad: Tensor) -> Tensor:
    """grad * d/dx of TransformerLens's gelu_new, 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2 / pi)."""
    c, k = math.sqrt(2.0 / math.pi), 0.044715
    x2 = x * x
    t = torch.tanh(x * (c + (c * k) * x2))
    out = (1.0 - t * t).mul_(x).mul_(0.5 * c + (1.5 * c * k) * x2)
    return out.add_(t.add_(1.0).mul_(0.5)).mul_(grad)


class _RecomputedActivation(torch.autograd.Function):
    """The MLP activation's output, keeping only its input `pre` for the backward.

    Autograd would keep the activation function's intermediates (four [T, d_mlp] tensors for
    gelu_new) for the whole backward; this keeps `pre` and computes the input-gradient from it:
    gelu_new's derivative in closed form, any other function by recomputing it under autograd.
    """

    @staticmethod
    def forward(ctx, pre: Tensor, post: Tensor, act_fn, act_name: str | None) -> Tensor:
        ctx.save_for_backward(pre)
        ctx.act_fn, ctx.act_name = act_fn, act_name
        return post

    @staticmethod
    def backward(ctx, grad: Tensor):
        (pre,) = ctx.saved_tensors
        if ctx.act_name == "gelu_new":
            return _gelu_new_backward(pre, grad), None, None, None
        with torch.enable_grad():
            x = pre.detach().requires_grad_(True)
            (grad_pre,) = torch.autograd.grad(ctx.act_fn(x), x, grad)
        return grad_pre, None, None, None


class _GhostPass:
    """The hooks of one batch: input Grams saved in the forward, combined with each output-gradient
    in the backward as soon as autograd produces it, then released.

    Forward (input side, per layer): ln1's output Gram (read by W_Q, W_K, W_V), ln2's output Gram
    (W_in), hook_post's Gram (W_out) and z itself (W_O: per head, so z is kept and the Gram taken on
    the gradient side). Backward (tensor hooks on hook_q/k/v, hook_attn_out, hook_pre, hook_mlp_out):
    each squared norm goes into `norms_sq` / `heads_sq` and the saved input is dropped when its last
    reader has used it, so a layer's activations live only until its gradients are known.
    """

    QKV = ("q", "k", "v")

    def __init__(self, model: Model, batch: int):
        cfg = model.cfg
        self.model = model
        self.dtype = _acc_dtype(cfg.dtype)
        self.saved: dict[tuple[str, int], Tensor] = {}
        self.readers: dict[tuple[str, int], int] = {}
        self.norms_sq = torch.zeros(batch, cfg.n_layers, len(COMPONENTS), dtype=self.dtype, device=cfg.device)
        self.heads_sq = torch.zeros(
            batch, cfg.n_layers, cfg.n_heads, len(HEAD_COMPONENTS), dtype=self.dtype, device=cfg.device
        )
        self.done = 0
        self.embed: Tensor | None = None
        self.pre: dict[int, Tensor] = {}  # hook_pre's output until hook_post's forward
        self.ln1_out: dict[int, Tensor] = {}  # ln1's first normalized output until hook_z's forward

    def _save(self, key: tuple[str, int], value: Tensor, readers: int) -> None:
        self.saved[key], self.readers[key] = value, readers

    def _take(self, key: tuple[str, int]) -> Tensor:
        value = self.saved[key]
        self.readers[key] -= 1
        if self.readers[key] == 0:
            del self.saved[key], self.readers[key]
        return value

    def fwd_hooks(self) -> list:
        hooks = [(act_name("embed"), self._into_graph)]
        for layer in range(self.model.cfg.n_layers):
            block = self.model.blocks[layer]
            hooks += [
                (act_name("normalized", layer, "ln1"), self._ln1(layer, block.ln1)),
                (act_name("normalized", layer, "ln2"), self._input_gram(("ln2", layer), 1, block.ln2)),
                (act_name("post", layer), self._post(layer)),
                (act_name("z", layer), self._keep_z(layer)),
            ]
            hooks += [(act_name(n, layer), self._on_grad(self._qkv(layer, j))) for j, n in enumerate(self.QKV)]
            hooks += [
                (act_name("attn_out", layer), self._on_grad(self._attn_out(layer))),
                (act_name("pre", layer), self._pre(layer)),
                (act_name("mlp_out", layer), self._on_grad(self._mlp(layer, "post", 5))),
            ]
        return hooks

    def _into_graph(self, act: Tensor, hook) -> Tensor:
        self.embed = act if act.requires_grad else act.detach().requires_grad_(True)
        return self.embed

    def _input_gram(self, key: tuple[str, int], readers: int, ln: torch.nn.Module | None):
        def hook(act: Tensor, hook) -> None:
            with torch.no_grad():
                self._save(key, _gram(act if ln is None else _ln_output(ln, act)), readers)

        return hook

    def _ln1(self, layer: int, ln: torch.nn.Module):
        save_gram = self._input_gram(("ln1", layer), 3, ln)

        def hook(act: Tensor, hook) -> Tensor | None:
            # TransformerLens applies ln1 once each for the query, key and value inputs: the Gram is
            # taken once, and the later calls reuse the first output (the same values), so their
            # LayerNorm intermediates are not kept for the backward
            if layer in self.ln1_out:
                return self.ln1_out[layer]
            save_gram(act, hook)
            self.ln1_out[layer] = act
            return None

        return hook

    def _pre(self, layer: int):
        on_grad = self._mlp(layer, "ln2", 4)

        def hook(act: Tensor, hook) -> None:
            act.register_hook(on_grad)
            self.pre[layer] = act

        return hook

    def _post(self, layer: int):
        save_gram = self._input_gram(("post", layer), 1, None)
        act_fn = self.model.blocks[layer].mlp.act_fn
        plain = not (self.model.cfg.act_fn or "").endswith("_ln")  # SoLU-LN: hook_post follows a LayerNorm, not act_fn

        def hook(act: Tensor, hook) -> Tensor:
            save_gram(act, hook)
            pre = self.pre.pop(layer)
            return _RecomputedActivation.apply(pre, act.detach(), act_fn, self.model.cfg.act_fn) if plain else act

        return hook

    def _keep_z(self, layer: int):
        def hook(act: Tensor, hook) -> None:
            self._save(("z", layer), act.detach(), 1)
            self.ln1_out.pop(layer, None)

        return hook

    @staticmethod
    def _on_grad(fn):
        def hook(act: Tensor, hook) -> None:
            act.register_hook(fn)  # a tensor hook: it lives on this pass's graph, never on the model

        return hook

    def _qkv(self, layer: int, j: int):
        def on_grad(grad: Tensor) -> None:
            with torch.no_grad():
                heads = _ghost(self._take(("ln1", layer)), grad, self.model.cfg.n_heads)
                self.heads_sq[:, layer, :, j] = heads
                self.norms_sq[:, layer, j] = heads.sum(-1)
                self.done += 1

        return on_grad

    def _attn_out(self, layer: int):
        def on_grad(grad: Tensor) -> None:
            with torch.no_grad():
                heads = _ghost(_gram(grad), self._take(("z", layer)), self.model.cfg.n_heads)
                self.heads_sq[:, layer, :, 3] = heads
                self.norms_sq[:, layer, 3] = heads.sum(-1)
                self.done += 1

        return on_grad

    def _mlp(self, layer: int, source: str, j: int):
        def on_grad(grad: Tensor) -> None:
            with torch.no_grad():
                self.norms_sq[:, layer, j] = _ghost(self._take((source, layer)), grad, 1)[:, 0]
                self.done += 1

        return on_grad


def _ghost_bytes_per_paragraph(cfg, seq_len: int) -> int:
    """Bytes the ghost pass needs per paragraph at its peak, the start of the backward. Kept per layer
    and position: ln1's and ln2's centred inputs, q, k, v and z (d_model each), the MLP activation's
    input (d_mlp), the attention pattern twice (softmax output and its NaN-masked copy, n_heads x
    seq_len each) and the three input Grams (seq_len each). Plus one layer's backward gradients per
    position: pattern and scores (n_heads x seq_len each), MLP pre and post (d_mlp each), 5 x d_model."""
    saved = cfg.n_layers * (6 * cfg.d_model + cfg.d_mlp + (2 * cfg.n_heads + 3) * seq_len)
    backward = 2 * cfg.n_heads * seq_len + 2 * cfg.d_mlp + 5 * cfg.d_model
    return seq_len * (saved + backward) * cfg.dtype.itemsize


def _ghost_batch(model: Model, seq_len: int, batch_size: int) -> int:
    """Paragraphs per ghost pass: at most batch_size, and at most as many as fit their bytes
    (`_ghost_bytes_per_paragraph`) in those of the layer weights' gradients that one backward per
    paragraph holds at once (its float32 accumulators and the gradients autograd returns; its peak
    adds its activations), so the ghost pass's peak stays under that loop's whatever the model's
    shapes (at least 1 paragraph). A paragraph's norms do not depend on which share its pass (up to rounding)."""
    weights = [w.tensor for w in selected_weights(model).values()]
    budget = sum(w.numel() * (4 + w.element_size()) for w in weights)
    return max(1, min(batch_size, budget // _ghost_bytes_per_paragraph(model.cfg, seq_len)))


def per_paragraph_norms(
    model: Model, paragraphs: Paragraphs, *, objective: str = "nll", batch_size: int = GRAD_BATCH_SIZE
) -> PerParagraphNorms:
    """Each paragraph's gradient norm per (layer, component, head), from batched passes of at most
    batch_size paragraphs (fewer where `_ghost_batch` says so, for memory).

    The loss is the SUM over the batch of per-paragraph mean continuation NLLs, so the
    output-gradient G captured at a hook for paragraph i is that of loss_i alone; with the input
    A of the same linear map, the paragraph's weight gradient is G_i^T A_i and its squared norm
    is <A_i A_i^T, G_i G_i^T>_F (a T x T product, never a d_in x d_out gradient). Only "nll":
    the contrastive objective's per-paragraph gradient at the original weights is w times it.

    Memory: no parameter requires grad during the pass (flags restored afterwards), the input
    Grams are kept instead of the inputs, each output-gradient is consumed by a tensor hook as
    soon as autograd computes it (nothing is returned for all layers at once), the MLP activation
    keeps only its input for the backward, only the continuation positions are unembedded (a chunk
    of rows at a time, `_ChunkedTokenNLL`), and a pass holds no more paragraphs than keep its saved
    activations within the layer-weight gradients that one backward per paragraph holds (`_ghost_batch`).
    Forward hooks are removed and flags restored even when the pass raises; the tensor hooks live
    on the pass's autograd graph, never on the model.
    """
    if objective != "nll":
        raise UserError(f"per-paragraph norms support objective 'nll' only, not {objective!r}")
    check_supported_model(model)
    check_inputs(paragraphs, "input", batch_size)
    cfg = model.cfg
    if not HAS_GHOST_PASS or cfg.gated_mlp or cfg.n_key_value_heads not in (None, cfg.n_heads):
        return _norms_one_by_one(model, paragraphs)  # the ghost pass reads an ungated MLP and one K/V per head
    if (
        cfg.use_split_qkv_input
        or cfg.use_attn_in
        or cfg.positional_embedding_type == "shortformer"
        or cfg.use_normalization_before_and_after
        or is_post_norm(cfg)
    ):
        raise UserError("per-paragraph norms need a pre-LayerNorm model whose attention reads ln1's output directly")
    all_norms, all_heads, all_loss = [], [], []
    batch = _ghost_batch(model, paragraphs.tokens.shape[1], batch_size)
    with _grad_only_for({}, model):  # no parameter needs a gradient: the forward saves less
        for start in range(0, len(paragraphs), batch):
            tokens = paragraphs.tokens[start : start + batch].to(cfg.device)
            ghost = _GhostPass(model, tokens.shape[0])
            with hooks_on(model, ghost.fwd_hooks()):
                per_paragraph = _continuation_token_nll(model, tokens, paragraphs.prefix_len).mean(dim=1)
            torch.autograd.grad(per_paragraph.sum(), [ghost.embed])  # the tensor hooks fill ghost.*_sq
            if ghost.done != len(COMPONENTS) * cfg.n_layers or ghost.saved:
                raise RuntimeError(
                    f"ghost norms: {ghost.done} of {len(COMPONENTS) * cfg.n_layers} gradients seen, "
                    f"{sorted(ghost.saved)} never read"
                )
            all_norms.append(ghost.norms_sq.clamp_min(0).sqrt().float().cpu())
            all_heads.append(ghost.heads_sq.clamp_min(0).sqrt().float().cpu())
            all_loss.append(per_paragraph.detach().float().cpu())
            del ghost, per_paragraph
    return PerParagraphNorms(
        ids=paragraphs.ids,
        components=COMPONENTS,
        norms=torch.cat(all_norms),
        head_norms=torch.cat(all_heads),
        loss=torch.cat(all_loss),
    )


def _norms_one_by_one(model: Model, paragraphs: Paragraphs) -> PerParagraphNorms:
    """The same norms from one backward per paragraph (exact, slower): for a backend without the ghost pass, a
    gated MLP (W_gate is a seventh component) or grouped-query attention (a head's W_K / W_V norms are those of
    the key/value head it reads, so there the squares of the head norms no longer sum to the layer's)."""
    n_layers, device = model.cfg.n_layers, model.cfg.device
    components = model_components(model)
    norms, heads, losses = [], [], []
    for i in range(len(paragraphs)):
        one = paragraphs.select([i])
        grads = parameter_gradients(model, one, objective="nll", batch_size=1)
        with torch.no_grad():
            losses.append(continuation_nll(model, one.tokens.to(device), one.prefix_len).float().cpu())
        norms.append(
            torch.tensor(
                [[float(component_gradient(grads, model, l, c).norm()) for c in components] for l in range(n_layers)]
            )
        )
        heads.append(
            torch.stack(
                [
                    torch.stack(
                        [
                            component_gradient(grads, model, l, c, per_query_head=True).flatten(1).norm(dim=1).cpu()
                            for c in HEAD_COMPONENTS
                        ],
                        -1,
                    )
                    for l in range(n_layers)
                ]
            )
        )
    return PerParagraphNorms(
        ids=paragraphs.ids,
        components=components,
        norms=torch.stack(norms),
        head_norms=torch.stack(heads),
        loss=torch.stack(losses).reshape(-1),
    )


@dataclass(frozen=True)
class TwoSampleTest:
    """MEM vs NMEM on one quantity: the two medians, the signed effect sizes (positive = larger for MEM:
    rank-biserial r and Cohen's d) and the two-sided Mann-Whitney p; per layer (tensors) or, for one number per
    paragraph, plain floats."""

    mem_median: Float[Tensor, "*layer"] | float
    nmem_median: Float[Tensor, "*layer"] | float
    rank_biserial: Float[Tensor, "*layer"] | float
    cohen_d: Float[Tensor, "*layer"] | float
    p: Float[Tensor, "*layer"] | float

    @classmethod
    def of(cls, mem: Float[Tensor, "n_mem *layer"], nmem: Float[Tensor, "n_nmem *layer"]) -> TwoSampleTest:
        """The test along the paragraphs (dim 0) of `mem` and `nmem`."""
        r, d, p = _effects(mem.double().numpy(), nmem.double().numpy())
        return cls(mem.median(0).values, nmem.median(0).values, r, d, p)

    def as_floats(self) -> TwoSampleTest:
        """The test of a single number per paragraph, held as floats."""
        return TwoSampleTest(*(float(getattr(self, f.name)) for f in fields(self)))

    def to_json(self, layer: int | None = None) -> dict:
        """The five numbers (at `layer` of a per-layer test)."""
        numbers = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: float(v if layer is None else v[layer]) for name, v in numbers.items()}

    @classmethod
    def from_json(cls, data: dict | list[dict]) -> TwoSampleTest:
        """The test `to_json` wrote: one dict (floats), or a list of one per layer (float32 tensors); nulls as NaN."""
        if isinstance(data, dict):
            return cls(*(float_from_json(data[f.name]) for f in fields(cls)))
        return cls(*(tensor_from_json([row[f.name] for row in data], torch.float32) for f in fields(cls)))


_TESTED = ("norm", "share", "lower_half")
"""The quantities `NormComparison` tests, each a `TwoSampleTest` field."""


def _flat_names(cls: type) -> type:
    """Give `cls` the former flat read-only names of its tests' numbers (`norm_p`, `lower_half_mem_median`, ...)."""
    for quantity in _TESTED:
        for f in fields(TwoSampleTest):
            setattr(
                cls, f"{quantity}_{f.name}", property(attrgetter(f"{quantity}.{f.name}"), doc=f"`{quantity}.{f.name}`")
            )
    return cls


@_flat_names
@dataclass(frozen=True)
class NormComparison:
    """MEM vs NMEM per-paragraph gradient norms, per layer: medians, effect sizes, rank tests.

    For each layer two quantities are compared: `norm` (the layer's gradient norm) and `share`
    (the part of the paragraph's squared gradient norm in that layer). Effect sizes are signed so
    that positive = larger for MEM: rank-biserial r = 2 U_mem / (n_mem n_nmem) - 1 and Cohen's d
    with the pooled standard deviation. p-values are two-sided Mann-Whitney U; the JSON's `p_bonferroni`
    multiplies by the number of layers. `component_*` repeat the norm test per (layer, component).

    `lower_half`: each paragraph's share of its squared gradient norm in the lower half of the layers
    (a middle layer of an odd count split evenly, as `GradientMap.lower_half_share`), compared the same
    way: one test, so no correction; `verdict` reads the paper's "lower layers" claim from it.
    Each test's numbers are also read under their former flat names (`norm_p`, `lower_half_rank_biserial`, ...).
    """

    n_mem: int
    n_nmem: int
    components: tuple[str, ...]
    norm: TwoSampleTest
    share: TwoSampleTest
    component_rank_biserial: Float[Tensor, "layer component"]
    component_p: Float[Tensor, "layer component"]
    lower_half: TwoSampleTest

    def verdict(self, alpha: float = 0.05) -> str:
        """The paper's claim (MEM gradients sit relatively lower) as the rank test on lower-half shares reads it."""
        r, p = self.lower_half.rank_biserial, self.lower_half.p
        if not p <= alpha:
            return (
                f"no difference detected: MEM and NMEM paragraphs put a similar share of their gradient in the lower "
                f"half of the layers (r = {r:+.2f}, p = {p:.2g} >= {alpha:g}), so the paper's finding is not reproduced"
            )
        if r > 0:
            return (
                f"MEM paragraphs put a larger share of their gradient in the lower half of the layers, as the paper "
                f"found (r = {r:+.2f}, p = {p:.2g})"
            )
        return (
            f"MEM paragraphs put a SMALLER share of their gradient in the lower half of the layers, the opposite of "
            f"the paper (r = {r:+.2f}, p = {p:.2g})"
        )

    def to_json(self) -> dict:
        n_layers = self.norm.p.shape[0]
        layers = []
        for l in range(n_layers):
            row = {"layer": l}
            for q in ("norm", "share"):
                test: TwoSampleTest = getattr(self, q)
                row[q] = test.to_json(l) | {"p_bonferroni": min(1.0, float(test.p[l]) * n_layers)}
            row["components"] = {
                c: {"rank_biserial": float(self.component_rank_biserial[l, j]), "p": float(self.component_p[l, j])}
                for j, c in enumerate(self.components)
            }
            layers.append(row)
        return {
            "n_mem": self.n_mem,
            "n_nmem": self.n_nmem,
            "test": "Mann-Whitney U, two-sided",
            "layers": layers,
            "lower_half_share": self.lower_half.to_json() | {"verdict": self.verdict()},
        }

    @classmethod
    def from_json(cls, data: dict) -> NormComparison:
        """The comparison `to_json` wrote (tensors back as float32, nulls as NaN; `p_bonferroni` and the verdict
        follow from the rest)."""
        layers = data["layers"]
        components = tuple(layers[0]["components"])
        per_component = [[row["components"][c] for c in components] for row in layers]
        return cls(
            n_mem=data["n_mem"],
            n_nmem=data["n_nmem"],
            components=components,
            norm=TwoSampleTest.from_json([row["norm"] for row in layers]),
            share=TwoSampleTest.from_json([row["share"] for row in layers]),
            component_rank_biserial=tensor_from_json(
                [[c["rank_biserial"] for c in cs] for cs in per_component], torch.float32
            ),
            component_p=tensor_from_json([[c["p"] for c in cs] for cs in per_component], torch.float32),
            lower_half=TwoSampleTest.from_json(data["lower_half_share"]),
        )


def _effects(x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """Rank-biserial r, Cohen's d and the Mann-Whitney p along axis 0 (x = MEM, y = NMEM)."""
    u, p = stats.mannwhitneyu(x, y, alternative="two-sided", axis=0)
    r = 2.0 * u / (x.shape[0] * y.shape[0]) - 1.0
    pooled = np.sqrt(
        ((x.shape[0] - 1) * x.var(0, ddof=1) + (y.shape[0] - 1) * y.var(0, ddof=1)) / (x.shape[0] + y.shape[0] - 2)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (x.mean(0) - y.mean(0)) / pooled
    return (
        torch.as_tensor(r, dtype=torch.float32),
        torch.as_tensor(d, dtype=torch.float32),
        torch.as_tensor(p, dtype=torch.float32),
    )


def _lower_half(share: Float[Tensor, "n layer"]) -> Float[Tensor, "n"]:
    """Each paragraph's share in the lower half of the layers (an odd count's middle layer counts half)."""
    n = share.shape[1]
    weights = torch.tensor([1.0 if i < n // 2 else (0.5 if 2 * i + 1 == n else 0.0) for i in range(n)])
    return share.double() @ weights.double()


def compare_norms(mem: PerParagraphNorms, nmem: PerParagraphNorms) -> NormComparison:
    """Do MEM and NMEM paragraphs differ in per-layer gradient norm and in its share per layer?"""
    if len(mem.ids) < 2 or len(nmem.ids) < 2:
        raise UserError(f"need at least 2 MEM and 2 NMEM paragraphs to compare, got {len(mem.ids)} and {len(nmem.ids)}")
    if mem.norms.shape[1:] != nmem.norms.shape[1:]:
        raise UserError("MEM and NMEM norms come from different models (layer / component shapes differ)")
    r, _, p = _effects(mem.norms.double().numpy(), nmem.norms.double().numpy())
    return NormComparison(
        n_mem=len(mem.ids),
        n_nmem=len(nmem.ids),
        components=mem.components,
        norm=TwoSampleTest.of(mem.layer_norms, nmem.layer_norms),
        share=TwoSampleTest.of(mem.layer_share, nmem.layer_share),
        component_rank_biserial=r,
        component_p=p,
        lower_half=TwoSampleTest.of(_lower_half(mem.layer_share), _lower_half(nmem.layer_share)).as_floats(),
    )
