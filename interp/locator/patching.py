"""Activation patching, batched, and attribution patching (its one-forward-one-backward estimate).

Clean run: memorized paragraphs. Corrupted run: the same paragraphs with prefix tokens
perturbed (same continuation). Denoising patches a clean activation into the corrupted run;
noising patches a corrupted activation into the clean run. The metric is the mean log-prob of
the memorized continuation (teacher-forced), averaged over paragraphs and normalised so that
1 = clean and 0 = corrupted, exactly as `transformer_lens.patching` computes it with
`metric = (mean log-prob - corrupted) / (clean - corrupted)`.

Where `transformer_lens.patching` runs one forward per cell, `patch_variants` stacks many
patched variants (cell x paragraph) into each forward, with ONE hook per layer that writes, per
batch row, that row's cell. Variants that patch layer L start from the cached residual stream
before layer L (`start_at_layer`), since nothing earlier changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from scipy.stats import spearmanr
from torch import Tensor

from interp.backend import Model, act_name, capture, hooks_on
from interp.data import BATCH_SIZE, Paragraphs
from interp.errors import UserError
from interp.metrics import continuation_log_probs, continuation_scores

KINDS = {
    # kind: (activation, what the second index of a cell is)
    "head_out": ("z", "head"),  # each head's output (its z, before W_O), all positions
    "resid_pre": ("resid_pre", "pos"),  # the residual stream entering each layer, per position
    "attn_out": ("attn_out", "pos"),  # each attention layer's output, per position
    "mlp_out": ("mlp_out", "pos"),  # each MLP layer's output, per position
}
DIRECTIONS = ("denoise", "noise")


def _full(logits: Tensor) -> Tensor:
    """Half-precision logits in float32; float32 and float64 kept as they are."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _check_kinds(kinds) -> None:
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise UserError(f"unknown patch kind {bad[0]!r}: use any of {', '.join(KINDS)}")


def all_cells(model: Model, kind: str, seq_len: int) -> Int[Tensor, "cell 2"]:
    """Every (layer, head) or (layer, position) cell of a patch kind, layer-major."""
    second = model.cfg.n_heads if KINDS[kind][1] == "head" else seq_len
    layers, index = torch.meshgrid(torch.arange(model.cfg.n_layers), torch.arange(second), indexing="ij")
    return torch.stack([layers.flatten(), index.flatten()], 1)


def _setter(index_kind: str):
    if index_kind == "head":

        def patch(act, rows, paragraph, index, source):
            act[rows, :, index] = source[paragraph, :, index].to(act.dtype)
            return act
    else:

        def patch(act, rows, paragraph, index, source):
            act[rows, index] = source[paragraph, index].to(act.dtype)
            return act

    return patch


@torch.no_grad()
def resid_pre_all_layers(
    model: Model, tokens: Int[Tensor, "n seq"]
) -> tuple[Float[Tensor, "n seq vocab"], list[Tensor]]:
    """Logits and the residual stream entering every layer (the starting points of patched runs)."""
    names = {act_name("resid_pre", layer) for layer in range(model.cfg.n_layers)}
    logits, cache = capture(model, tokens.to(model.cfg.device), names)
    return logits, [cache["resid_pre", layer] for layer in range(model.cfg.n_layers)]


@torch.no_grad()
def patch_variants(
    model: Model,
    tokens: Int[Tensor, "n seq"],
    prefix_len: int,
    kind: str,
    cells: Int[Tensor, "cell 2"],
    source: list[Tensor],
    resid_pre: list[Tensor],
    batch_size: int = BATCH_SIZE,
) -> tuple[Float[Tensor, "cell n cont"], Bool[Tensor, "cell n cont"]]:
    """Run `tokens` once per (cell, paragraph), each with ONE cell overwritten from `source`.

    `source[layer]` is the activation to write in, indexed like the hooked activation with the
    paragraph as batch axis (an expanded view is fine, e.g. zeros for ablation). `resid_pre[layer]`
    is the run's own residual stream before that layer. Returns the continuation log-probs and
    argmax hits of every variant. Variants are stacked `batch_size` rows per forward.
    """
    _check_kinds([kind])
    act, index_kind = KINDS[kind]
    patch = _setter(index_kind)
    n = tokens.shape[0]
    device = model.cfg.device
    tokens = tokens.to(device)
    dtype = torch.promote_types(model.cfg.dtype, torch.float32)
    logp = torch.empty(len(cells), n, tokens.shape[1] - prefix_len, dtype=dtype)
    hits = torch.empty(len(cells), n, tokens.shape[1] - prefix_len, dtype=torch.bool)
    for layer in cells[:, 0].unique().tolist():
        cell_ids = (cells[:, 0] == layer).nonzero().flatten()
        # Row r of this layer's variants: cell cell_ids[r // n], paragraph r % n.
        rows_cell = cell_ids.repeat_interleave(n)
        rows_paragraph = torch.arange(n).repeat(len(cell_ids))
        name = act_name(act, layer)
        for start in range(0, len(rows_cell), batch_size):
            c = rows_cell[start : start + batch_size]
            b = rows_paragraph[start : start + batch_size]
            index = cells[c, 1].to(device)
            b_dev = b.to(device)

            def hook(activation, hook, b_dev=b_dev, index=index):
                return patch(activation, torch.arange(len(b_dev), device=device), b_dev, index, source[layer])

            with hooks_on(model, [(name, hook)]):
                chunk_logp, chunk_hits = continuation_scores(
                    model, tokens[b_dev], prefix_len, residual=resid_pre[layer][b_dev], start_at_layer=layer
                )
            logp[c, b] = chunk_logp.cpu()
            hits[c, b] = chunk_hits.cpu()
    return logp, hits


@dataclass(frozen=True)
class PatchingResult:
    """Normalised patching effect per cell: 1 = the clean metric, 0 = the corrupted one.

    `effect[layer, index]` (index = head or position). `per_paragraph` holds each variant's raw
    metric (mean continuation log-prob) per paragraph for exact patching, None for attribution.
    """

    kind: str
    direction: str
    method: str
    effect: Float[Tensor, "layer index"]
    clean_metric: float
    corrupted_metric: float
    per_paragraph: Float[Tensor, "layer index n"] | None = None

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "direction": self.direction,
            "method": self.method,
            "index": KINDS[self.kind][1],
            "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric,
            "effect": self.effect,
        }


def _validate(model: Model, clean: Paragraphs, corrupted: Tensor, direction: str) -> None:
    if direction not in DIRECTIONS:
        raise UserError(f"unknown direction {direction!r}: use 'denoise' (clean into corrupted) or 'noise'")
    if corrupted.shape != clean.tokens.shape:
        raise UserError(
            f"corrupted tokens of shape {tuple(corrupted.shape)} do not match the clean {tuple(clean.tokens.shape)}"
        )
    if not torch.equal(corrupted[:, clean.prefix_len :].cpu(), clean.continuations.cpu()):
        raise UserError("corrupted paragraphs must keep the clean continuation: perturb only prefix tokens")
    if model.cfg.positional_embedding_type == "shortformer":
        raise UserError("patching does not support shortformer position embeddings")


def _runs(
    model: Model, clean: Paragraphs, corrupted_tokens: Int[Tensor, "n seq"], kinds: tuple[str, ...], direction: str
) -> tuple[Int[Tensor, "n seq"], Int[Tensor, "n seq"], list[str]]:
    """Checked inputs, on the model's device: (the tokens run and patched, the tokens the patched activations
    come from, the hook names of `kinds` in every layer)."""
    _check_kinds(kinds)
    _validate(model, clean, corrupted_tokens, direction)
    clean_tokens, corrupted_tokens = clean.tokens.to(model.cfg.device), corrupted_tokens.to(model.cfg.device)
    run, source = (corrupted_tokens, clean_tokens) if direction == "denoise" else (clean_tokens, corrupted_tokens)
    names = [act_name(KINDS[k][0], layer) for k in kinds for layer in range(model.cfg.n_layers)]
    return run, source, list(dict.fromkeys(names))


def activation_patching(
    model: Model,
    clean: Paragraphs,
    corrupted_tokens: Int[Tensor, "n seq"],
    kinds: tuple[str, ...] = ("head_out",),
    direction: str = "denoise",
    batch_size: int = BATCH_SIZE,
) -> dict[str, PatchingResult]:
    """Exact activation patching of every cell of each kind, many variants per forward."""
    run_tokens, source_tokens, names = _runs(model, clean, corrupted_tokens, kinds, direction)
    p = clean.prefix_len
    with torch.no_grad():
        run_logits, resid = resid_pre_all_layers(model, run_tokens)
        source_logits, cache = capture(model, source_tokens, names)
    run_metric = continuation_log_probs(_full(run_logits), run_tokens, p).mean(1).cpu()
    source_metric = continuation_log_probs(_full(source_logits), source_tokens, p).mean(1).cpu()
    clean_m, corrupt_m = (source_metric, run_metric) if direction == "denoise" else (run_metric, source_metric)
    results = {}
    for kind in kinds:
        cells = all_cells(model, kind, clean.seq_len)
        source = [cache[act_name(KINDS[kind][0], layer)] for layer in range(model.cfg.n_layers)]
        logp, _ = patch_variants(model, run_tokens, p, kind, cells, source, resid, batch_size)
        per_paragraph = logp.mean(-1)  # [cell, n]
        effect = (per_paragraph.mean(1) - corrupt_m.mean()) / (clean_m.mean() - corrupt_m.mean())
        shape = (model.cfg.n_layers, -1)
        results[kind] = PatchingResult(
            kind,
            direction,
            "exact",
            effect.view(shape).float(),
            float(clean_m.mean()),
            float(corrupt_m.mean()),
            per_paragraph.view(*shape, len(clean)).float(),
        )
    return results


def attribution_patching(
    model: Model,
    clean: Paragraphs,
    corrupted_tokens: Int[Tensor, "n seq"],
    kinds: tuple[str, ...] = ("head_out",),
    direction: str = "denoise",
) -> dict[str, PatchingResult]:
    """The linear estimate of activation patching: (source - run activation) . d metric / d activation.

    One forward with gradients on the run being patched and one backward give every cell of
    every kind at once. Parameter gradients are never accumulated: gradients are taken only
    with respect to the hooked activations (torch.autograd.grad), so the model is untouched.
    """
    run_tokens, source_tokens, names = _runs(model, clean, corrupted_tokens, kinds, direction)
    p = clean.prefix_len
    with torch.no_grad():
        source_logits, cache = capture(model, source_tokens, names)
    source_metric = continuation_log_probs(_full(source_logits), source_tokens, p).mean(1).mean()

    captured: dict[str, Tensor] = {}

    def embed_requires_grad(act, hook):  # gradients flow from here even in a frozen model
        return act.detach().requires_grad_(True)

    def keep(name: str):  # keyed by the name asked for: a backend may name the hook point behind it otherwise
        def hook_fn(act, hook):
            captured[name] = act
            return act

        return hook_fn

    fwd_hooks = [(act_name("embed"), embed_requires_grad)] + [(name, keep(name)) for name in names]
    with torch.enable_grad():
        with hooks_on(model, fwd_hooks):
            logits = model(run_tokens)
        run_metric = continuation_log_probs(_full(logits), run_tokens, p).mean(1).mean()
        grads = torch.autograd.grad(run_metric, [captured[name] for name in names])
    grad_of = dict(zip(names, grads))
    run_metric = run_metric.detach()
    clean_m, corrupt_m = (source_metric, run_metric) if direction == "denoise" else (run_metric, source_metric)
    total = clean_m - corrupt_m
    results = {}
    for kind in kinds:
        act, index_kind = KINDS[kind]
        rows = []
        for layer in range(model.cfg.n_layers):
            name = act_name(act, layer)
            delta = (cache[name] - captured[name].detach()) * grad_of[name]
            rows.append(delta.sum(dim=(0, 1, 3)) if index_kind == "head" else delta.sum(dim=(0, 2)))
        estimate = (torch.stack(rows).detach().cpu() / float(total)).float()
        effect = estimate if direction == "denoise" else 1 + estimate
        results[kind] = PatchingResult(kind, direction, "attribution", effect, float(clean_m), float(corrupt_m))
    return results


def patching_agreement(exact: PatchingResult, estimate: PatchingResult) -> dict[str, float]:
    """Pearson and Spearman correlation between two patching maps of the same cells."""
    a, b = exact.effect.flatten().double(), estimate.effect.flatten().double()
    pearson = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    return {"pearson": pearson, "spearman": float(spearmanr(a.numpy(), b.numpy()).statistic)}
