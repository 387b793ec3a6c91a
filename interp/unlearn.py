"""Unlearning by fine-tuning only selected weights of a COPY of the model, and measuring the damage.

`unlearn` deep-copies the model, picks a fixed weight mask (the top fraction by |gradient| of the
paper's contrastive objective, a random mask of the same size per parameter, or all weights;
optionally restricted to layers, MLP / attention, one head), and runs a few Adam steps of one
objective (paper Eq. 3 `unlearn`, Eq. 4 `edit`, `ga`, `graddiff`, `npo`). After every step the
weights outside the mask are copied back from the original, so neither the gradient nor Adam's
weight decay can move them: they stay bit-identical. (The paper's public code zeroes only the
gradient, so its coupled weight decay shrinks EVERY trainable weight; `decay_outside_mask=True`
reproduces that.)

`evaluate` scores one model on the targets and on fixed probe sets (`probe_sets`): other MEM
paragraphs, NMEM paragraphs against the original model's own greedy continuation (the paper's
collateral measure, full length = unchanged) and held-out text perplexity, in one batched pass.
`relearn` is the recovery attack: a few steps of plain fine-tuning on related text that does not
contain the forgotten continuation. `unlearning_table` runs many configurations over several
targets (1 MEM + 10 NMEM per run, as in the paper) and averages: the paper's Figure 5 layout.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.data import Paragraphs
from interp.errors import UserError
from interp.gradients import parameter_gradients, selected_parameters
from interp.masks import candidate_mask, matched_random_mask, top_k_mask, uniform_random_mask
from interp.metrics import greedy_continuations, score_paragraphs
from interp.objectives import (
    NLL_WEIGHT,
    contrastive_objective,
    edit_objective,
    gradient_ascent,
    gradient_difference,
    npo,
    reference_log_probs,
    token_nll,
)

METHODS = ("unlearn", "edit", "ga", "graddiff", "npo")
"""unlearn = Eq. 3 (-w NLL(target) + KL on retain); edit = Eq. 4 (+NLL(new continuation) + KL);
ga = -NLL(target); graddiff = -NLL(target) + w NLL(retain); npo = negative preference optimisation."""
SELECTIONS = ("topk", "random", "random_matched", "all")

Hook = tuple[str, Callable]


@dataclass(frozen=True)
class UnlearnConfig:
    """One masked fine-tuning run. Defaults are the paper's public code: top 0.1% of the contrastive
    objective's |gradient|, Adam lr 1e-5, 5 steps, (coupled) weight decay 1.0."""

    method: str = "unlearn"
    select: str = "topk"
    fraction: float = 0.001
    scope: str = "global"  # top-k over all weights at once, or per parameter ("component")
    layers: tuple[int, ...] | None = None
    components: tuple[str, ...] | None = None  # "attn", "mlp", "W_V", ...
    head: int | None = None  # keep only this head's slice of the attention weights
    lr: float = 1e-5
    steps: int = 5
    weight_decay: float = 1.0
    nll_weight: float | None = None  # None: 0.1 for Eq. 3 (the paper's code), 1.0 for Eq. 4
    retain_weight: float = 1.0  # graddiff's weight on the retain NLL
    npo_beta: float = 0.1
    seed: int = 0  # the random mask's seed
    decay_outside_mask: bool = False  # True: Adam's weight decay also shrinks unselected weights (paper code)

    def __post_init__(self) -> None:
        check_training_settings(self.method, self.lr, self.steps, self.weight_decay)
        if self.select not in SELECTIONS:
            raise UserError(f"unknown selection {self.select!r}: use one of {', '.join(SELECTIONS)}")
        if not 0 < self.fraction <= 1:
            raise UserError(f"fraction must be in (0, 1], got {self.fraction} (0.001 = the top 0.1%)")

    @property
    def label(self) -> str:
        pct = f"{100 * self.fraction:g}%"
        what = {"all": "all", "topk": f"top-{pct}", "random": f"random-{pct}", "random_matched": f"random-{pct} matched"}[self.select]
        where = "".join([f" L{','.join(map(str, self.layers))}" if self.layers else "",
                         f" {'+'.join(self.components)}" if self.components else "",
                         f" head {self.head}" if self.head is not None else ""])
        return f"{self.method} {what}{where}"

    def to_dict(self) -> dict:
        return {"kind": "weights", **asdict(self)}

    def run(self, model, targets, retain, edit_targets=None, probe=None, before=None) -> UnlearnResult:
        return unlearn(model, targets, retain, self, edit_targets=edit_targets, probe=probe, before=before)


def check_training_settings(method: str, lr: float, steps: int, weight_decay: float) -> None:
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"learning rate must be a positive number, got {lr}")
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    if weight_decay < 0:
        raise UserError(f"weight decay must be >= 0, got {weight_decay}")


# ---- probes and evaluation ----


@dataclass(frozen=True)
class Probe:
    """Fixed collateral-damage probes, built once from the ORIGINAL model.

    `nmem` carries the original model's own greedy continuations, so its EM is 50 (full length)
    before any edit; `heldout` is text never trained on, for perplexity."""

    mem: Paragraphs
    nmem: Paragraphs
    heldout: Paragraphs


def probe_sets(model: HookedTransformer, mem: Paragraphs, nmem: Paragraphs, heldout: Paragraphs, batch_size: int = 64) -> Probe:
    """The probes, with NMEM continuations replaced by the model's own greedy decoding."""
    greedy = greedy_continuations(model, nmem.prefixes, nmem.continuation_len, batch_size=batch_size)
    return Probe(mem=mem, nmem=nmem.with_continuations(greedy), heldout=heldout)


@dataclass(frozen=True)
class Evaluation:
    """One model's scores: targets (and edit targets), probe MEM / NMEM EM, held-out perplexity."""

    target_ids: tuple[str, ...]
    target_em: Int[Tensor, "n_target"]
    target_nll: Float[Tensor, "n_target"]
    edit_em: Int[Tensor, "n_edit"]  # EM against the NEW continuation (empty unless edit targets were given)
    mem_ids: tuple[str, ...]
    mem_em: Int[Tensor, "n_mem"]
    nmem_em: Int[Tensor, "n_nmem"]  # against the original model's greedy continuation
    heldout_ppl: float  # exp(mean continuation NLL) on held-out paragraphs; nan without a probe

    def other_mem_em(self) -> float:
        """Mean EM of the probe MEM paragraphs that are not targets (nan when there are none)."""
        keep = torch.tensor([i not in set(self.target_ids) for i in self.mem_ids], dtype=torch.bool)
        return float(self.mem_em[keep].float().mean()) if bool(keep.any()) else float("nan")

    def summary(self) -> dict:
        """Means over paragraphs (nan for an empty set)."""
        return {"target_em": _mean(self.target_em), "target_nll": _mean(self.target_nll), "edit_em": _mean(self.edit_em),
                "other_mem_em": self.other_mem_em(), "nmem_em": _mean(self.nmem_em), "heldout_ppl": self.heldout_ppl}

    def to_json(self) -> dict:
        return {**self.summary(), "targets": [{"id": i, "em": int(e), "nll": float(n)} for i, e, n in
                                              zip(self.target_ids, self.target_em.tolist(), self.target_nll.tolist())],
                "edit_em_per_target": self.edit_em.tolist(), "mem_ids": list(self.mem_ids), "mem_em": self.mem_em.tolist(),
                "nmem_em": self.nmem_em.tolist()}


def _mean(values: Tensor) -> float:
    return float(values.float().mean()) if values.numel() else float("nan")


def _concat(parts: Sequence[Paragraphs]) -> Paragraphs:
    tokens = torch.cat([p.tokens.cpu() for p in parts])
    return Paragraphs(tokens, parts[0].prefix_len, tuple(str(i) for i in range(tokens.shape[0])))


@torch.no_grad()
def evaluate(
    model: HookedTransformer,
    targets: Paragraphs,
    probe: Probe | None = None,
    edit_targets: Paragraphs | None = None,
    hooks: Sequence[Hook] = (),
    batch_size: int = 64,
) -> Evaluation:
    """Score targets, edit targets and the probes in one batched teacher-forced pass (with `hooks` on)."""
    empty = targets.select(torch.zeros(len(targets), dtype=torch.bool))
    parts = [targets, edit_targets or empty]
    if probe is not None:
        parts += [probe.mem, probe.nmem, probe.heldout]
    if len({p.seq_len for p in parts if len(p)}) > 1 or len({p.prefix_len for p in parts}) > 1:
        raise UserError("targets, edit targets and probe paragraphs must share prefix and continuation lengths")
    with model.hooks(fwd_hooks=list(hooks)):
        scores = score_paragraphs(model, _concat(parts), batch_size=batch_size)
    bounds = torch.tensor([0] + [len(p) for p in parts]).cumsum(0).tolist()
    em = [scores.em[a:b] for a, b in zip(bounds, bounds[1:])]
    nll = [scores.nll[a:b] for a, b in zip(bounds, bounds[1:])]
    have = probe is not None
    return Evaluation(
        target_ids=targets.ids, target_em=em[0], target_nll=nll[0], edit_em=em[1],
        mem_ids=probe.mem.ids if have else (), mem_em=em[2] if have else em[1][:0],
        nmem_em=em[3] if have else em[1][:0],
        heldout_ppl=float(nll[4].mean().exp()) if have and len(probe.heldout) else float("nan"),
    )


# ---- the optimisation loop shared by weight editing, ReFT and relearning ----


def optimise(
    loss_fn: Callable[[], Tensor],
    params: Sequence[torch.nn.Parameter],
    steps: int,
    lr: float,
    weight_decay: float,
    after_step: Callable[[], None] | None = None,
) -> Float[Tensor, "steps"]:
    """`steps` Adam steps (coupled weight decay, as torch.optim.Adam) on `loss_fn`; returns each step's loss.

    Stops with a UserError naming the step when the loss is not finite."""
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    losses = []
    for step in range(steps):
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise UserError(f"the loss became {float(loss)} at step {step + 1} of {steps}: lower the learning rate (now {lr}) or the steps")
        loss.backward()
        optimiser.step()
        if after_step is not None:
            after_step()
        losses.append(float(loss.detach()))
    return torch.tensor(losses)


def objective(
    method: str,
    model: HookedTransformer,
    targets: Paragraphs,
    retain: Paragraphs,
    edit_targets: Paragraphs | None,
    nll_weight: float | None,
    retain_weight: float,
    npo_beta: float,
) -> Callable[[], Tensor]:
    """A closure computing `method`'s loss on `model`; anchors (KL reference, NPO reference) are taken now."""
    p = targets.prefix_len
    if method in ("unlearn", "edit", "graddiff") and len(retain) == 0:
        raise UserError(f"method {method!r} needs retain paragraphs (NMEM) for its second term")
    if method == "unlearn":
        ref = reference_log_probs(model, retain.tokens, p)
        w = NLL_WEIGHT if nll_weight is None else nll_weight
        return lambda: contrastive_objective(model, targets.tokens, retain.tokens, p, ref, nll_weight=w)
    if method == "edit":
        if edit_targets is None or len(edit_targets) != len(targets):
            raise UserError("the edit objective needs one edit target per target (prefix + new continuation); "
                            "make them with interp.perturbation.prefix_perturbation(...).editing_targets")
        ref = reference_log_probs(model, retain.tokens, p)
        w = 1.0 if nll_weight is None else nll_weight
        return lambda: edit_objective(model, edit_targets.tokens, retain.tokens, p, ref, nll_weight=w)
    if method == "ga":
        return lambda: gradient_ascent(model, targets.tokens, p)
    if method == "graddiff":
        return lambda: gradient_difference(model, targets.tokens, retain.tokens, p, retain_weight=retain_weight)
    with torch.no_grad():
        ref_nll = token_nll(model, targets.tokens, p).sum(dim=1)
    return lambda: npo(model, targets.tokens, p, ref_nll, beta=npo_beta)


# ---- masked fine-tuning ----


def select_weights(
    model: HookedTransformer, targets: Paragraphs, retain: Paragraphs, config: UnlearnConfig,
    edit_targets: Paragraphs | None = None,
) -> dict[str, Bool[Tensor, "..."]]:
    """The config's fixed mask, chosen AMONG the candidate weights (layers / components / head restriction
    first, as the paper's code). The candidates are the paper's weights: W_Q, W_K, W_V, W_O, W_in, W_out
    (no embeddings, biases, LayerNorms). top-k ranks |gradient| of Eq. 3 at the start (for `edit`: of
    Eq. 4 on the edit targets; at the start both equal a scaled target NLL gradient, the KL gradient
    being 0); "random" draws the same fraction uniformly over the candidates (the paper's control);
    "random_matched" keeps the top-k mask's count in every tensor at random places."""
    candidates = candidate_mask(selected_parameters(model), layers=config.layers, components=config.components,
                                head=config.head)
    if config.select == "all":
        return candidates
    if config.select == "random":
        return uniform_random_mask(candidates, config.fraction, seed=config.seed)
    source = edit_targets if config.method == "edit" and edit_targets is not None else targets
    grads = parameter_gradients(model, source, retain, objective="contrastive")
    top = top_k_mask(grads, fraction=config.fraction, scope=config.scope, candidates=candidates)
    if config.select == "random_matched":
        return matched_random_mask(top, seed=config.seed, candidates=candidates)
    return top


@dataclass(frozen=True)
class UnlearnResult:
    """A masked fine-tuning run: the edited COPY, the scores before and after, and what changed."""

    config: UnlearnConfig
    target_ids: tuple[str, ...]
    model: HookedTransformer = field(repr=False)  # the edited copy
    before: Evaluation
    after: Evaluation
    losses: Float[Tensor, "steps"]
    trained: int  # weights selected by the mask
    weights_changed: int  # weights whose value differs from the original, over the whole model

    def hooks(self) -> list[Hook]:
        return []

    def to_json(self) -> dict:
        return {"config": self.config.to_dict(), "label": self.config.label, "target_ids": list(self.target_ids),
                "before": self.before.to_json(), "after": self.after.to_json(), "losses": self.losses,
                "trained": self.trained, "weights_changed": self.weights_changed}


def unlearn(
    model: HookedTransformer,
    targets: Paragraphs,
    retain: Paragraphs,
    config: UnlearnConfig = UnlearnConfig(),
    *,
    edit_targets: Paragraphs | None = None,
    mask: dict[str, Bool[Tensor, "..."]] | None = None,
    probe: Probe | None = None,
    before: Evaluation | None = None,
) -> UnlearnResult:
    """Fine-tune a deep copy of `model` on `config.method`, updating only the masked weights.

    `mask` overrides the config's selection (keys: TransformerLens parameter names). `model` is
    left untouched (weights, gradients, requires_grad flags)."""
    if len(targets) == 0:
        raise UserError("no target paragraphs to unlearn")
    if mask is None:
        mask = select_weights(model, targets, retain, config, edit_targets)
    edited = copy.deepcopy(model)
    named = dict(edited.named_parameters())
    unknown = sorted(set(mask) - set(named))
    if unknown:
        raise UserError(f"the mask names parameters the model does not have: {unknown[:3]}")
    mask = {n: m.to(named[n].device) for n, m in mask.items() if bool(m.any())}
    if not mask:
        raise UserError("the mask selects no weights: widen --fraction or the layer/component restriction")
    flags = {n: p.requires_grad for n, p in named.items()}
    for p in named.values():
        p.requires_grad_(False)
    trained = {n: named[n].requires_grad_(True) for n in mask}
    originals = {n: p.detach().clone() for n, p in trained.items()}

    def keep_unmasked() -> None:
        with torch.no_grad():
            for n, p in trained.items():
                p.copy_(torch.where(mask[n], p, originals[n]))

    loss_fn = objective(config.method, edited, targets, retain, edit_targets, config.nll_weight, config.retain_weight, config.npo_beta)
    if before is None:
        before = evaluate(model, targets, probe, edit_targets)
    try:
        losses = optimise(loss_fn, list(trained.values()), config.steps, config.lr, config.weight_decay,
                          None if config.decay_outside_mask else keep_unmasked)
    finally:
        for n, p in named.items():
            p.requires_grad_(flags[n])
            p.grad = None
    changed = sum(int((p.detach() != model.get_parameter(n).detach()).sum()) for n, p in named.items())
    return UnlearnResult(
        config=config, target_ids=targets.ids, model=edited, before=before,
        after=evaluate(edited, targets, probe, edit_targets), losses=losses,
        trained=int(sum(int(m.sum()) for m in mask.values())), weights_changed=changed,
    )


# ---- the relearning attack ----


@dataclass(frozen=True)
class RelearnConfig:
    """Plain fine-tuning of every weight on text related to the targets but without their continuation:
    `data="prefix"` = the targets' prefixes alone, `"retain"` = the retain (NMEM) paragraphs."""

    steps: int = 10
    lr: float = 1e-4
    data: str = "prefix"

    def __post_init__(self) -> None:
        if self.data not in ("prefix", "retain"):
            raise UserError(f"relearn data must be 'prefix' or 'retain', not {self.data!r}")
        check_training_settings("ga", self.lr, self.steps, 0.0)


def relearn(
    model: HookedTransformer, targets: Paragraphs, retain: Paragraphs, config: RelearnConfig = RelearnConfig(),
    hooks: Sequence[Hook] = (),
) -> HookedTransformer:
    """A copy of `model` fine-tuned (all weights, next-token loss, `hooks` active) on the relearning text."""
    tokens = targets.prefixes if config.data == "prefix" else retain.tokens
    attacked = copy.deepcopy(model)
    params = [p for p in attacked.parameters() if p.requires_grad]

    def loss() -> Tensor:
        with attacked.hooks(fwd_hooks=list(hooks)):
            return attacked(tokens.to(attacked.cfg.device), return_type="loss")

    optimise(loss, params, config.steps, config.lr, 0.0)
    for p in params:
        p.grad = None
    return attacked


# ---- the table (paper Figure 5) ----

COLUMNS = ("target_em", "target_nll", "edit_em", "other_mem_em", "nmem_em", "heldout_ppl")


@dataclass(frozen=True)
class UnlearningTable:
    """Mean scores per configuration over runs (1 target + retain paragraphs each).

    `before` = the original model; `after[i]`, `relearned[i]` = row i after unlearning and after the
    relearning attack; `per_run` keeps every run's numbers."""

    labels: tuple[str, ...]
    configs: tuple[dict, ...]
    before: dict[str, float]
    after: tuple[dict[str, float], ...]
    relearned: tuple[dict[str, float], ...]
    trained: tuple[float, ...]
    weights_changed: tuple[float, ...]
    per_run: tuple[dict, ...]
    settings: dict

    def to_json(self) -> dict:
        rows = [{"label": lab, "config": cfg, "after": a, "relearned": r, "trained": t, "weights_changed": w}
                for lab, cfg, a, r, t, w in zip(self.labels, self.configs, self.after, self.relearned, self.trained, self.weights_changed)]
        return {"before": self.before, "rows": rows, "per_run": list(self.per_run), "settings": self.settings}

    def format(self) -> str:
        """A plain-text table: EM and NLL of the target, collateral, weights changed, EM after relearning."""
        head = f"{'run':<28} {'tgt EM':>7} {'tgt NLL':>8} {'edit EM':>7} {'MEM EM':>7} {'NMEM EM':>8} {'ppl':>7} {'changed':>9} {'relearn EM':>10}"
        b = self.before
        lines = [head, f"{'original':<28} {b['target_em']:>7.2f} {b['target_nll']:>8.3f} {'':>7} {b['other_mem_em']:>7.2f} "
                       f"{b['nmem_em']:>8.2f} {b['heldout_ppl']:>7.2f} {0:>9} {'':>10}"]
        for lab, a, r, w in zip(self.labels, self.after, self.relearned, self.weights_changed):
            edit = f"{a['edit_em']:>7.2f}" if math.isfinite(a["edit_em"]) else f"{'':>7}"
            rel = f"{r['target_em']:>10.2f}" if r else f"{'':>10}"
            lines.append(f"{lab:<28} {a['target_em']:>7.2f} {a['target_nll']:>8.3f} {edit} {a['other_mem_em']:>7.2f} "
                         f"{a['nmem_em']:>8.2f} {a['heldout_ppl']:>7.2f} {w:>9.0f} {rel}")
        return "\n".join(lines)


def paper_configs(lr: float = 1e-5, steps: int = 5, weight_decay: float = 1.0, fraction: float = 0.001) -> list[UnlearnConfig]:
    """The six runs of the paper's Figure 5: unlearn / edit x all / top-fraction / random-fraction."""
    return [UnlearnConfig(method=m, select=s, fraction=fraction, lr=lr, steps=steps, weight_decay=weight_decay)
            for m in ("unlearn", "edit") for s in ("all", "topk", "random")]


def _mean_summaries(evals: Sequence[dict]) -> dict[str, float]:
    return {k: float(torch.tensor([e[k] for e in evals], dtype=torch.float64).nanmean()) for k in COLUMNS}


def unlearning_table(
    model: HookedTransformer,
    targets: Paragraphs,
    retain: Paragraphs,
    configs: Sequence,
    probe: Probe,
    edit_targets: Paragraphs | None = None,
    retain_per_run: int = 10,
    relearn_config: RelearnConfig | None = RelearnConfig(),
    on_run: Callable | None = None,
) -> UnlearningTable:
    """Run every config once per target (target i with retain paragraphs [i*k, (i+1)*k)), then average.

    `configs` are UnlearnConfig or interp.reft.ReftConfig (anything with `.run(...)`, `.label`,
    `.to_dict()`); `edit_targets` aligns with `targets` and is needed for edit configs. `on_run` is
    called with every run's result (e.g. to keep an edited model); results are not kept otherwise."""
    if len(retain) < retain_per_run * len(targets):
        raise UserError(f"{len(targets)} runs x {retain_per_run} retain paragraphs need {retain_per_run * len(targets)} "
                        f"retain (NMEM) paragraphs, got {len(retain)}")
    before = evaluate(model, targets, probe, edit_targets)
    after, relearned, trained, changed, per_run = [], [], [], [], []
    for config in configs:
        runs_after, runs_relearn, n_trained, n_changed = [], [], [], []
        for i in range(len(targets)):
            target = targets.select([i])
            edit = edit_targets.select([i]) if edit_targets is not None else None
            kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
            result = config.run(model, target, kept, edit_targets=edit, probe=probe, before=before)
            if on_run is not None:
                on_run(result)
            record = {"label": config.label, "target": target.ids[0], "before": before.summary() | {
                "target_em": float(before.target_em[i]), "target_nll": float(before.target_nll[i])}, "after": result.after.summary(),
                "trained": result.trained, "weights_changed": result.weights_changed, "losses": result.losses.tolist()}
            if relearn_config is not None:
                attacked = relearn(result.model, target, kept, relearn_config, hooks=result.hooks())
                record["relearned"] = evaluate(attacked, target, None, hooks=result.hooks()).summary()
                runs_relearn.append(record["relearned"])
            runs_after.append(result.after.summary())
            n_trained.append(result.trained)
            n_changed.append(result.weights_changed)
            per_run.append(record)
        after.append(_mean_summaries(runs_after))
        relearned.append(_mean_summaries(runs_relearn) if runs_relearn else {})
        trained.append(sum(n_trained) / len(n_trained))
        changed.append(sum(n_changed) / len(n_changed))
    return UnlearningTable(
        labels=tuple(c.label for c in configs), configs=tuple(c.to_dict() for c in configs),
        before=before.summary(), after=tuple(after), relearned=tuple(relearned), trained=tuple(trained),
        weights_changed=tuple(changed), per_run=tuple(per_run),
        settings={"targets": list(targets.ids), "retain_per_run": retain_per_run, "probe_mem": len(probe.mem),
                  "probe_nmem": len(probe.nmem), "probe_heldout": len(probe.heldout),
                  "relearn": asdict(relearn_config) if relearn_config else None},
    )
