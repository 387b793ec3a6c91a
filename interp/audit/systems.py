"""Where an unlearning lives, and how an attack reaches it.

An unlearned system is a model with forward hooks: a weight-edited copy (no hooks), the original with an
intervention (hooks whose function is a module with parameters, e.g. interp.unlearning.reft's LoReFT at
`resid_post` of one layer), or a decoding-time ensemble (interp.unlearning.proxy.ProxyModel: a frozen base
steered by the logit difference of two small models). Its weights are every parameter it has: the model's,
the intervention's, and for an ensemble the base's and both small models'. Quantization rounds all of them,
relearning trains all of them, and restoration patches the activations where the edit lives.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.nn.utils import parametrize

from interp.audit.quantization import indivisible_width, quantize_matrix, quantized
from interp.audit.scoring import score
from interp.backend import Model, act_name, capture, copy_model, hooks_on
from interp.data import BATCH_SIZE, Paragraphs
from interp.metrics import Scorable
from interp.unlearning import Hook
from interp.unlearning.proxy import ProxyModel
from interp.unlearning.training import optimise

PATCHED = {"coefficients": ("post",), "attention": ("attn_out",), "both": ("post", "attn_out")}


def interventions(hooks: Sequence[Hook]) -> list[tuple[str, nn.Module]]:
    """The hooks that carry parameters (a module as the hook function): (hook name, module)."""
    return [(name, fn) for name, fn in hooks if isinstance(fn, nn.Module) and any(True for _ in fn.parameters())]


def _copy_hooks(hooks: Sequence[Hook]) -> list[Hook]:
    """The hooks with every module-valued function copied (parameter-free functions are shared)."""
    return [(name, copy.deepcopy(fn) if isinstance(fn, nn.Module) else fn) for name, fn in hooks]


def parts(model: Scorable) -> dict[str, Model]:
    """The models a system's weights live in, by name: the model itself, or an ensemble's three."""
    if isinstance(model, ProxyModel):
        return {"base": model.base, "small_original": model.small_original, "small_unlearned": model.small_unlearned}
    return {"model": model}


def _rebuild(model: Scorable, models: dict[str, Model]) -> Scorable:
    if isinstance(model, ProxyModel):
        return ProxyModel(models["base"], models["small_original"], models["small_unlearned"], model.alpha)
    return models["model"]


def cannot_quantize(model: Scorable, hooks: Sequence[Hook], group_size: int | None) -> str | None:
    """Why `group_size` groups do not fit the system's matrices (None: they do)."""
    widths = [indivisible_width(m, group_size) for m in parts(model).values()]
    widths += [p.shape[1] for _, fn in interventions(hooks) for p in fn.parameters() if p.ndim == 2]
    bad = [w for w in widths if w is not None and group_size is not None and w % group_size]
    if bad:
        return f"a weight matrix has {bad[0]} input channels, not a multiple of the group size {group_size}"
    return None


@torch.no_grad()
def quantized_system(
    model: Scorable, hooks: Sequence[Hook], bits: int, group_size: int | None, scheme: str
) -> tuple[Scorable, list[Hook], dict[str, float]]:
    """Copies of every model of the system (interp.audit.quantization.quantized) and of its interventions
    (every 2-D parameter [out, in] rounded the same way, parametrizations such as LoReFT's orthogonal one
    replaced by their current value), and the relative error of each tensor (prefixed by where it lives)."""
    models, errors = {}, {}
    for name, m in parts(model).items():
        models[name], err = quantized(m, bits, group_size, scheme)
        errors.update({(t if name == "model" else f"{name}.{t}"): e for t, e in err.items()})
    out = _copy_hooks(hooks)
    for i, (site, fn) in enumerate(out):
        if not (isinstance(fn, nn.Module) and any(True for _ in fn.parameters())):
            continue
        _unparametrize(fn)
        for pname, p in fn.named_parameters():
            if p.ndim == 2:
                q = quantize_matrix(p.detach(), bits, group_size, scheme)
                errors[f"intervention {site}.{pname}"] = float((q - p).norm() / p.norm().clamp_min(1e-30))
                p.copy_(q)
    return _rebuild(model, models), out, errors


def _unparametrize(module: nn.Module) -> None:
    """Replace every parametrized submodule of `module` (a copy) by a plain one of its original class holding
    the parametrized tensors' current values. (torch's remove_parametrizations edits the injected class,
    which copies share with the original module.)"""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not parametrize.is_parametrized(child):
                continue
            cls = type(child).__bases__[0]
            plain = cls.__new__(cls)
            plain.__dict__ = {**child.__dict__, "_parameters": dict(child._parameters), "_modules": dict(child._modules)}
            del plain._modules["parametrizations"]
            for tensor in child.parametrizations:
                plain._parameters[tensor] = nn.Parameter(getattr(child, tensor).detach().clone())
            setattr(parent, name, plain)


def _logits(model: Scorable, tokens: Int[Tensor, "n seq"]) -> Float[Tensor, "n seq vocab"]:
    """Logits with gradients (ProxyModel.logits has none)."""
    if isinstance(model, ProxyModel):
        small = tokens.to(model.small_original.cfg.device)
        diff = model.small_unlearned(small).float() - model.small_original(small).float()
        return model.base(tokens).float() + model.alpha * diff.to(model.base.cfg.device)
    return model(tokens)


def relearned_system(
    model: Scorable, hooks: Sequence[Hook], tokens: Int[Tensor, "n seq"], *, steps: int, lr: float
) -> tuple[Scorable, list[Hook], float]:
    """Copies of the system fine-tuned together for `steps` Adam steps at `lr` (no weight decay, next-token
    loss of the system's own logits, hooks on) on `tokens`: every parameter of every model and
    intervention. Also how far they moved: ||theta' - theta||_F / ||theta||_F over all of them."""
    models = {name: copy_model(m) for name, m in parts(model).items()}
    attacked, new_hooks = _rebuild(model, models), _copy_hooks(hooks)
    params = [p for m in models.values() for p in m.parameters()]
    params += [p for _, fn in interventions(new_hooks) for p in fn.parameters()]
    before = [p.detach().clone() for p in params]
    flags = [p.requires_grad for p in params]
    device = next(iter(models.values())).cfg.device
    tokens = tokens.to(device)

    def loss() -> Tensor:
        with hooks_on(attacked, new_hooks):
            logits = _logits(attacked, tokens)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))

    try:
        for p in params:
            p.requires_grad_(True)
        optimise(loss, params, steps=steps, lr=lr, weight_decay=0.0)
    finally:
        for p, flag in zip(params, flags):
            p.grad = None
            p.requires_grad_(flag)
    with torch.no_grad():
        moved = sum(float((p - b).float().pow(2).sum()) for p, b in zip(params, before))
        size = sum(float(b.float().pow(2).sum()) for b in before)
    return attacked, new_hooks, (moved / max(size, 1e-30)) ** 0.5


def restore_configs(
    n_layers: int, windows: Sequence[tuple[int, int]], experiments: Sequence[str], sites: Sequence[str] = ()
) -> list[tuple[str, list[str]]]:
    """(label, hook names patched) per experiment and window ("coefficients 2..4"), then one per extra site."""
    out = [
        (f"{e} {lo}..{hi}", [act_name(kind, layer) for kind in PATCHED[e] for layer in range(lo, hi + 1)])
        for e in experiments
        for lo, hi in windows
    ]
    return out + [(f"{site} (the intervention's site)", [site]) for site in sites]


def _patch(cached: Tensor):
    def hook(act: Tensor, hook) -> Tensor:
        return cached.to(act.dtype)

    return hook


@torch.no_grad()
def restored(
    source: Model,
    model: Scorable,
    hooks: Sequence[Hook],
    patched: Model,
    paragraphs: Paragraphs,
    configs: Sequence[tuple[str, list[str]]],
    *,
    batch_size: int = BATCH_SIZE,
) -> tuple[Int[Tensor, "c n"], Float[Tensor, "c n"]]:
    """EM and log10 p of the system (`model` with `hooks`) on each paragraph with `source`'s activations
    written over `patched`'s (a model inside the system) at each config's hook names, one row per config.
    Patches act after the system's own hooks at the same site, so an intervention is overwritten there."""
    names = sorted({n for _, ns in configs for n in ns})
    ems, lps = [], []
    for start in range(0, len(paragraphs), batch_size):
        tokens = paragraphs.tokens[start : start + batch_size]
        _, cache = capture(source, tokens.to(source.cfg.device), names)
        em_c, lp_c = [], []
        for _, ns in configs:
            patch = [(n, _patch(cache[n])) for n in ns]
            if patched is model:
                em, lp = score(model, tokens, paragraphs.prefix_len, hooks=[*hooks, *patch], batch_size=batch_size)
            else:
                with hooks_on(patched, patch):
                    em, lp = score(model, tokens, paragraphs.prefix_len, hooks=hooks, batch_size=batch_size)
            em_c.append(em)
            lp_c.append(lp)
        ems.append(torch.stack(em_c))
        lps.append(torch.stack(lp_c))
    return torch.cat(ems, 1), torch.cat(lps, 1)


def restoration_target(original: Model, model: Scorable, hooks: Sequence[Hook]) -> tuple[Model, Model, list[str]]:
    """(source, patched, extra sites) of the restoration attack on a system: the original's activations into
    the model (plus each intervention's own site), or for an ensemble the small original's into the small
    unlearned model, where its forgetting lives."""
    if isinstance(model, ProxyModel):
        return model.small_original, model.small_unlearned, []
    return original, model, [site for site, _ in interventions(hooks)]


def recite(model: Model, paragraphs: Paragraphs, *, max_steps: int, lr: float, batch_size: int = BATCH_SIZE) -> Model:
    """A copy of `model` fine-tuned (Adam, all weights, next-token loss on the whole paragraphs) until it
    recites `paragraphs` (mean EM >= 90% of the continuation, checked every 5 steps) or `max_steps`."""
    donor = copy_model(model)
    params = list(donor.parameters())
    flags = [p.requires_grad for p in params]
    tokens = paragraphs.tokens.to(donor.cfg.device)
    try:
        for p in params:
            p.requires_grad_(True)
        for _ in range(0, max_steps, 5):
            optimise(lambda: donor(tokens, return_type="loss"), params, steps=5, lr=lr, weight_decay=0.0)
            em, _ = score(donor, paragraphs.tokens, paragraphs.prefix_len, batch_size=batch_size)
            if float(em.float().mean()) >= 0.9 * paragraphs.continuation_len:
                break
    finally:
        for p, flag in zip(params, flags):
            p.grad = None
            p.requires_grad_(flag)
    return donor
