"""The whole pipeline in one call: analysis steps -> report.html, results.json, PNG / SVG figures.

A step is a name, an analysis (a function of the model, the paragraphs, the options and the
results of the steps it depends on) and a view that turns its result into a report section.
Each step's result is cached on disk under a key made of the model's weights, the paragraph
tokens, the options the step reads, the keys of the steps it depends on and the toolkit's own
source, so an interrupted report resumes from the steps it finished and a changed input redoes
exactly what it touches. Outputs are assembled in a staging folder and moved into place only
when all of them are complete: a failed or interrupted run never replaces a good report.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

import interp
from interp.data import Paragraphs
from interp.errors import UserError
from interp.io import to_jsonable, write_json, write_text_atomic
from interp.memorization import MemorizationSplit, choose_sets, memorization_split
from interp.models import model_name
from interp.testbed import shipped_unigram_counts
from interp.views.report_html import Section, Table, report_html

CACHE_FORMAT = 1


@dataclass(frozen=True)
class ReportOptions:
    """What the pipeline computes and on how much data. `quick()` is a smaller preset of the same."""

    batch_size: int = 64
    max_paragraphs: int | None = None  # score a seeded sample of at most this many paragraphs (None = all)
    nmem_max: int | None = None  # NMEM: EM at most this (None: 10 of 50 tokens, as the paper, scaled by length)
    n_mem: int = 16  # MEM paragraphs used by the gradient, head and perturbation steps
    n_nmem: int = 64  # NMEM paragraphs used beside them
    n_examples: int = 2  # example paragraphs shown token by token
    seed: int = 0
    grad_batch_size: int = 16  # paragraphs per backward pass
    n_perturb: int = 8  # MEM and NMEM paragraphs each for prefix perturbation
    perturb_samples: int = 1  # random tokens per prefix position (the paper: one)
    unlearn_targets: int = 2  # MEM paragraphs unlearned, one run each (paper: 1 MEM + 10 NMEM per run)
    unlearn_lr: float = 1e-3  # the paper's code: 1e-5 for 5 steps on GPT-Neo 125M; set both to compare
    unlearn_steps: int = 10
    unlearn_methods: tuple[str, ...] = ("unlearn", "edit")  # paper Eq. 3 and Eq. 4, each with all / top / random weights
    reft: bool = True  # add a LoReFT (representation) unlearning run to the table
    relearn_steps: int = 10  # relearning attack after each run (0 = none)
    restore_selects: tuple[str, ...] = ("all", "topk")  # unlearning runs that restoration dissects
    probe: int = 30  # MEM / NMEM / held-out paragraphs probing collateral damage
    steps: tuple[str, ...] | None = None  # None = every step
    progress: bool = True  # progress bars inside steps

    @classmethod
    def quick(cls, **overrides: Any) -> ReportOptions:
        return replace(cls(max_paragraphs=400, n_mem=4, n_nmem=16, n_examples=1, n_perturb=3, perturb_samples=1,
                           unlearn_targets=1, probe=5, unlearn_steps=5, unlearn_methods=("unlearn",), reft=False,
                           relearn_steps=0, restore_selects=("all",)), **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StepInputs:
    """What a step's analysis sees: the model, every paragraph, the options, earlier results."""

    model: HookedTransformer
    paragraphs: Paragraphs
    options: ReportOptions
    results: Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    """One analysis of the pipeline and the section of the report that shows it."""

    name: str
    analyse: Callable[[StepInputs], Any]  # returns a result with to_json()
    section: Callable[[Any, Mapping[str, Any]], Section]  # (result, all results so far) -> section
    options: tuple[str, ...] = ()  # the ReportOptions fields the result depends on
    depends: tuple[str, ...] = ()


# ---- fingerprints: what a cached result depends on ----


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def model_fingerprint(model: HookedTransformer) -> str:
    """Hash of the model's config and every weight's bytes: two models share it only if equal."""
    h = hashlib.sha256(json.dumps(model.cfg.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def paragraphs_fingerprint(paragraphs: Paragraphs) -> str:
    """Hash of the paragraph tokens, prefix length, ids and repeat counts."""
    h = hashlib.sha256(paragraphs.tokens.cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([paragraphs.prefix_len, paragraphs.ids, paragraphs.counts, paragraphs.meta.get("split")]).encode())
    return h.hexdigest()


def code_fingerprint() -> str:
    """Hash of the toolkit's analysis source (views and commands excluded): new code, new results."""
    root = Path(interp.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("views", "commands", "testbed"):
            continue
        h.update(str(rel).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class StepCache:
    """Step results pickled under `folder`, one file per key, written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str, key: str) -> Path:
        return self.folder / f"{name}-{key[:24]}.pkl"

    def load(self, name: str, key: str) -> tuple[bool, Any]:
        path = self.path(name, key)
        if not path.exists():
            return False, None
        try:
            with path.open("rb") as fh:
                return True, pickle.load(fh)
        except Exception as exc:  # an unreadable entry (older code, torn disk) is recomputed
            warnings.warn(f"ignoring unreadable cached result {path.name}: {exc}", stacklevel=2)
            return False, None

    def store(self, name: str, key: str, result: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(name, key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            tmp.unlink(missing_ok=True)
            warnings.warn(f"step {name!r}: result not cached ({exc})", stacklevel=2)


def step_keys(steps: Sequence[Step], base: Mapping[str, str], options: ReportOptions) -> dict[str, str]:
    """Cache key of each step: base fingerprints + its options + the keys of what it depends on."""
    keys: dict[str, str] = {}
    opts = options.to_dict()
    for step in steps:
        payload = {"format": CACHE_FORMAT, "step": step.name, **base,
                   "options": {k: opts[k] for k in step.options}, "depends": [keys[d] for d in step.depends]}
        keys[step.name] = _sha(json.dumps(payload, sort_keys=True, default=str))
    return keys


# ---- the steps ----


def _memorization(inputs: StepInputs) -> MemorizationSplit:
    o = inputs.options
    return memorization_split(inputs.model, inputs.paragraphs, batch_size=o.batch_size, nmem_max=o.nmem_max,
                              n_examples=o.n_examples)


def _memorization_section(split: MemorizationSplit, results: Mapping[str, Any]) -> Section:
    from interp.views import memorization as views

    cont = split.continuation_len
    figures = {"em_histogram": views.figure_em_histogram(split), "nll_vs_em": views.figure_nll_vs_em(split)}
    tables = []
    notes = [f"{len(split.mem_idx)} of {len(split.scores.em)} paragraphs are memorized (MEM: the greedy continuation "
             f"reproduces all {cont} tokens); {len(split.nmem_idx)} are NMEM (EM <= {split.nmem_max}). "
             f"Mean EM {float(split.scores.em.float().mean()):.2f}."]
    rows = split.by_count()
    if rows:
        figures["memorization_by_count"] = views.figure_memorization_by_count(split)
        tables.append(Table("Memorization by training repeat count",
                            ["copies in training", "paragraphs", "MEM", "fraction MEM", "mean EM", "mean NLL"],
                            [[r["count"], r["n"], r["n_mem"], r["fraction_mem"], r["mean_em"], r["mean_nll"]] for r in rows]))
    if split.examples:
        tables.append(Table("Example paragraphs (shown as text: the model's own tokens, decoded)",
                            ["kind", "id", "EM", "prefix", "continuation"],
                            [[ex["kind"].upper(), ex["id"], ex["em"], "".join(ex["str_tokens"][:ex["prefix_len"]]),
                              "".join(ex["str_tokens"][ex["prefix_len"]:])] for ex in split.examples]))
    return Section(
        key="memorization", title="1. Which paragraphs does the model recite?",
        text=(f"Every paragraph is a {split.examples[0]['prefix_len'] if split.examples else '?'}-token prefix followed by a "
              f"{cont}-token continuation. EM (exact match) counts the continuation tokens that greedy decoding "
              "reproduces before the first mistake, computed from one teacher-forced pass; NLL is the mean "
              "negative log-likelihood of the true continuation tokens. The histogram shows how many paragraphs "
              "reach each EM (log scale); the scatter plot shows that memorized paragraphs have near-zero loss."
              "\n\nThe token views below colour each token by its loss under the model (white = predicted "
              "with certainty, red = surprising): a memorized paragraph's continuation is all white."),
        figures=figures, views=views.view_example_tokens(split), tables=tables, notes=notes,
    )


@dataclass(frozen=True)
class Bundle:
    """Several named results of one step."""

    parts: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.parts[name]

    def to_json(self) -> dict:
        return {name: _result_json(part) for name, part in self.parts.items()}


@dataclass(frozen=True)
class Skipped:
    """A step that could not run on this model and data, and why (shown in the report)."""

    reason: str

    def to_json(self) -> dict:
        return {"skipped": self.reason}


def _sets(inputs: StepInputs) -> tuple[Paragraphs, Paragraphs] | Skipped:
    split: MemorizationSplit = inputs.results["memorization"]
    if len(split.mem_idx) == 0 or len(split.nmem_idx) == 0:
        return Skipped(f"needs both MEM and NMEM paragraphs; this set has {len(split.mem_idx)} MEM and "
                       f"{len(split.nmem_idx)} NMEM (see section 1)")
    o = inputs.options
    return choose_sets(split, inputs.paragraphs, o.n_mem, o.n_nmem, o.seed)


SET_OPTIONS = ("n_mem", "n_nmem", "seed")


def _gradients(inputs: StepInputs) -> Bundle | Skipped:
    from interp.gradient_norms import compare_norms, per_paragraph_norms
    from interp.gradients import gradient_map

    sets = _sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    mem, nmem = sets
    model, bs = inputs.model, inputs.options.grad_batch_size
    bar = tqdm(total=4, desc="gradients", unit="pass", leave=False, disable=not inputs.options.progress)
    parts: dict[str, Any] = {}
    for objective in ("nll", "contrastive"):
        parts[objective] = gradient_map(model, mem, nmem, objective=objective, reduce="max", batch_size=bs)
        bar.update()
    norms_mem = per_paragraph_norms(model, mem, batch_size=bs)
    bar.update()
    norms_nmem = per_paragraph_norms(model, nmem, batch_size=bs)
    bar.update()
    bar.close()
    parts.update(norms_mem=norms_mem, norms_nmem=norms_nmem, comparison=compare_norms(norms_mem, norms_nmem))
    return Bundle(parts)


def _gradients_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    from interp.views import gradients as views

    nll, co = result["nll"], result["contrastive"]
    low = nll.lower_half_share()
    top = nll.most_salient()
    cmp = result["comparison"]
    notes = [
        f"Share of the max-|grad| per-layer total in the lower half of the layers: MEM {low['mem']:.3f}, NMEM "
        f"{low['nmem']:.3f} ({'MEM puts relatively more gradient in lower layers, as the paper found' if low['mem'] > low['nmem'] else 'MEM does NOT put relatively more gradient in lower layers here, unlike the paper'}).",
        f"Largest MEM cell: layer {top['mem']['layer']} head {top['mem']['head']} {top['mem']['component']}; largest "
        f"MEM-NMEM difference after scaling each map to sum 1: layer {top['relative_diff']['layer']} head "
        f"{top['relative_diff']['head']} {top['relative_diff']['component']} (the paper: layer 1 head 2 W_V in GPT-Neo 125M).",
    ]
    rows = [[l, float(cmp.norm_mem_median[l]), float(cmp.norm_nmem_median[l]), float(cmp.norm_rank_biserial[l]),
             float(cmp.norm_p[l]), float(cmp.share_mem_median[l]), float(cmp.share_nmem_median[l]),
             float(cmp.share_rank_biserial[l]), float(cmp.share_p[l])] for l in range(len(cmp.norm_p))]
    return Section(
        key="gradients", title="2. Where does the gradient of a memorized paragraph land?",
        text=("The gradient of the continuation NLL is taken separately for a batch of MEM and a batch of NMEM "
              "paragraphs (paper section 5.1). Each cell is the largest |gradient| over one weight matrix: W_Q, W_K, "
              "W_V, W_O per head and the MLP's W_in, W_out per layer; embeddings, unembedding and biases are left out. "
              "The contrastive objective (-0.1 NLL of a MEM paragraph + KL to the original model on NMEM paragraphs, "
              "paper Eq. 3) is the one unlearning uses; at the original weights its KL term has zero gradient."
              "\n\nBelow, each paragraph's own gradient norm per layer (computed in batched passes without "
              "per-paragraph gradients) shows the spread behind the batch numbers, with a Mann-Whitney U test per layer "
              "(r > 0: larger for MEM)."),
        figures={"nll_components": views.figure_component_map(nll), "nll_heads": views.figure_head_map(nll),
                 "nll_heads_relative": views.figure_head_map(nll, relative=True),
                 "nll_layer_share": views.figure_layer_share(nll), "contrastive_components": views.figure_component_map(co),
                 "per_paragraph_share": views.figure_per_paragraph(result["norms_mem"], result["norms_nmem"], cmp, share=True)},
        tables=[Table("Per-paragraph NLL gradient norm per layer, MEM vs NMEM",
                      ["layer", "MEM median", "NMEM median", "r", "p", "MEM share median", "NMEM share median", "r (share)", "p (share)"],
                      rows)],
        notes=notes,
    )


def _heads(inputs: StepInputs) -> Bundle | Skipped:
    from interp.data import rarity_ranks, unigram_counts
    from interp.locate import locate_memorization_head
    from interp.memorization import choose_indices

    split: MemorizationSplit = inputs.results["memorization"]
    if len(split.mem_idx) == 0 or len(split.nmem_idx) == 0:
        return _sets(inputs)
    o, model = inputs.options, inputs.model
    # the locator re-scores what it is given: every MEM paragraph it may use and as many NMEM ones
    wide = 16 * o.n_mem
    mem_idx, nmem_idx = choose_indices(split, wide, wide, o.seed)
    subset = inputs.paragraphs.select(torch.cat([mem_idx, nmem_idx]).sort().values)
    counts = shipped_unigram_counts(model)
    ranking = locate_memorization_head(model, subset, unigram_counts=counts, max_paragraphs=o.n_mem,
                                       mem_min=split.mem_min, nmem_max=split.nmem_max, seed=o.seed, batch_size=o.batch_size)
    # attention patterns of the top heads on one MEM paragraph, for the circuitsvis view
    heads = [tuple(h) for h in ranking.order[:3].tolist()]
    example = inputs.paragraphs.select(mem_idx[:1])
    with torch.no_grad():
        _, cache = model.run_with_cache(example.tokens.to(model.cfg.device), names_filter=lambda n: n.endswith("hook_pattern"))
    patterns = torch.stack([cache["pattern", layer][0, head] for layer, head in heads]).cpu()
    rarity = rarity_ranks(example.tokens, counts if counts is not None else unigram_counts(subset.tokens, model.cfg.d_vocab))[0]
    return Bundle({"ranking": ranking, "example": {
        "id": example.ids[0], "heads": heads, "patterns": patterns, "rarity": rarity,
        "str_tokens": [model.tokenizer.decode([t]) if model.tokenizer else f"<{t}>" for t in example.tokens[0].tolist()],
        "corpus_counts": counts is not None}})


def _heads_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    from interp.views import heads as views

    ranking, ex = result["ranking"], result["example"]
    table = ranking.head_table()
    cols = ["rank", "layer", "head", "patching_effect", "ablation_effect", "rare_token_tau", "gradient_score", "mean_rank"]
    layer, head = ranking.top
    notes = [f"Top head: layer {layer}, head {head}, ordered by {', '.join(ranking.rank_by)} "
             f"({len(ranking.mem_ids)} MEM, {len(ranking.nmem_ids)} NMEM paragraphs)."]
    if ranking.rare_tokens is not None:
        tau = ranking.rare_tokens.tau
        flat = int(tau.nan_to_num(1.0).flatten().argmin())
        l2, h2 = divmod(flat, tau.shape[1])
        notes.append(f"Strongest preference for rare tokens: layer {l2} head {h2}, Kendall tau {float(tau[l2, h2]):.2f} "
                     f"(the paper: -0.97 for head 1.2 of GPT-Neo 125M); the top head's tau is {float(tau[layer, head]):.2f}.")
    notes.append("Agreement between methods (Kendall tau of their head scores): " +
                 ", ".join(f"{k} {v:+.2f}" for k, v in ranking.agreement.items()) + ".")
    notes += list(ranking.notes)
    pattern_heads = [tuple(h) for h in ex["heads"]]
    full = torch.zeros(max(l for l, _ in pattern_heads) + 1, max(h for _, h in pattern_heads) + 1, *ex["patterns"].shape[1:])
    for i, (l, h) in enumerate(pattern_heads):
        full[l, h] = ex["patterns"][i]
    view = views.attention_view(ex["str_tokens"], full, pattern_heads, rarity=ex["rarity"].tolist())
    return Section(
        key="heads", title="3. Which attention head carries the memorized paragraphs?",
        text=("Four kinds of evidence per head. Rare-token attention: the attention from the position that predicts "
              "the first continuation token to each prefix token, against the token's corpus frequency rank in its "
              "paragraph (0 = rarest), summarised by Kendall's tau (negative = attends to rare tokens; paper section 6). "
              "Gradient: how much more of the MEM gradient than the NMEM gradient lands in the head. Ablation: how much "
              "more mean-ablating the head raises the NLL of MEM than of NMEM continuations. Patching: how much of a "
              "memorized continuation's log-probability comes back when the head's clean output is patched into a run "
              "with a corrupted prefix (1 = all). The table is ordered by the causal methods (ablation, patching); the "
              "paper's own methods disagreed, so the agreement between methods is shown rather than hidden."
              "\n\nThe attention view shows the top heads on one memorized paragraph; each token carries its "
              "frequency rank in the paragraph ([r0] = rarest)."),
        figures=views.ranking_figures(ranking),
        views={f"Attention of the top heads on MEM paragraph {ex['id']}": view},
        tables=[Table("Heads ranked (best first, top 12)", cols, [[row.get(c) for c in cols] for row in table[:12]])],
        notes=notes,
    )


def _perturbation(inputs: StepInputs) -> Bundle | Skipped:
    from interp.perturbation import prefix_perturbation

    sets = _sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model = inputs.options, inputs.model
    n = o.n_perturb
    mem, nmem = sets[0].select(range(min(n, len(sets[0])))), sets[1].select(range(min(n, len(sets[1]))))
    both = Paragraphs(torch.cat([mem.tokens, nmem.tokens]), mem.prefix_len, mem.ids + nmem.ids)
    result = prefix_perturbation(model, both, samples_per_position=o.perturb_samples, seed=o.seed, batch_size=4 * o.batch_size)
    tok = model.tokenizer
    str_tokens = [[tok.decode([t]) if tok else f"<{t}>" for t in row.tolist()] for row in both.prefixes]
    return Bundle({"all": result, "n_mem": len(mem), "str_tokens": str_tokens})


def _perturbation_parts(result: Bundle) -> tuple[Any, Any]:
    """The MEM and the NMEM rows of the perturbation result."""
    k, every = result["n_mem"], result["all"]
    return every.select(torch.arange(k)), every.select(torch.arange(k, len(every.ids)))


def _perturbation_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    from interp.views import heads as head_views
    from interp.views import memorization as views

    mem, nmem = _perturbation_parts(result)
    drop_m, drop_n = float(mem.mean_em_drop.mean()), float(nmem.mean_em_drop.mean())
    k = len(mem.ids)
    return Section(
        key="perturbation", title="4. How hard is a memorized paragraph to knock off course?",
        text=(f"Each prefix token is replaced, one at a time, by {mem.em.shape[-1]} random token(s); the continuation is "
              "decoded greedily and compared with the model's own unperturbed greedy continuation (EM, as in the paper "
              "section 4). The curve shows the mean EM lost per perturbed position; the token view colours each prefix "
              "token by the EM its replacement costs (red = a token the recitation depends on). The most damaging "
              "perturbation of each MEM paragraph gives the new continuation used as the editing target in section 5."),
        figures={"em_drop_by_position": views.figure_perturbation_by_position(mem, nmem)},
        views={"Prefix tokens coloured by the EM lost when replaced (MEM first, then NMEM)":
               head_views.perturbation_view(result["all"], result["str_tokens"], max_paragraphs=8)},
        tables=[Table("Mean EM drop per perturbed prefix token", ["set", "paragraphs", "mean EM drop", "paper (GPT-Neo 125M)"],
                      [["MEM", k, drop_m, 12.19], ["NMEM", len(nmem.ids), drop_n, 33.12]])],
        notes=[f"Mean EM drop per perturbed token: MEM {drop_m:.2f}, NMEM {drop_n:.2f} "
               f"({'memorized paragraphs are harder to corrupt, as in the paper' if drop_m < drop_n else 'memorized paragraphs are NOT harder to corrupt here, unlike the paper'}; "
               "note that NMEM EM starts from the model's own greedy continuation, so both start at the full length)."],
    )


def _unlearning(inputs: StepInputs) -> Bundle | Skipped:
    from interp.memorization import heldout_indices
    from interp.reft import ReftConfig
    from interp.unlearning import RelearnConfig, paper_configs, probe_sets, unlearning_table

    sets = _sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model, split = inputs.options, inputs.model, inputs.results["memorization"]
    mem, nmem = sets
    perturbed_mem, _ = _perturbation_parts(inputs.results["perturbation"])
    n_targets = min(o.unlearn_targets, len(mem), len(perturbed_mem.ids))
    retain_per_run = 10
    if len(nmem) < n_targets * retain_per_run + 1:
        return Skipped(f"needs {n_targets * retain_per_run + 1} NMEM paragraphs ({retain_per_run} per run + probes); "
                       f"raise n_nmem (now {o.n_nmem})")
    targets = mem.select(range(n_targets))
    edit_targets = perturbed_mem.editing_targets.select(torch.arange(n_targets))
    retain = nmem.select(range(n_targets * retain_per_run))
    probe_nmem = nmem.select(range(n_targets * retain_per_run, min(len(nmem), n_targets * retain_per_run + o.probe)))
    held = heldout_indices(split)
    heldout = inputs.paragraphs.select(held[: o.probe]) if len(held) else probe_nmem
    probe = probe_sets(model, mem.select(range(n_targets, len(mem))) if len(mem) > n_targets else mem, probe_nmem, heldout,
                       batch_size=o.batch_size)
    weights = dict(lr=o.unlearn_lr, steps=o.unlearn_steps, weight_decay=1.0)
    configs = [c for c in paper_configs(fraction=0.001, **weights) if c.method in o.unlearn_methods]
    if o.reft:
        configs.append(ReftConfig(method="unlearn", seed=o.seed))
    table = unlearning_table(model, targets, retain, configs, probe, edit_targets=edit_targets, retain_per_run=retain_per_run,
                             relearn_config=RelearnConfig(steps=o.relearn_steps) if o.relearn_steps else None)
    return Bundle({"table": table})


def _unlearning_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    from interp.unlearning import COLUMNS
    from interp.views import unlearning as views

    table = result["table"]
    rows = [["original model", *[table.before.get(c) for c in COLUMNS], 0, None]]
    for label, after, rel, changed in zip(table.labels, table.after, table.relearned, table.weights_changed):
        rows.append([label, *[after.get(c) for c in COLUMNS], changed, rel.get("target_em") if rel else None])
    s = table.settings
    return Section(
        key="unlearning", title="5. Can the memorized text be unlearned by editing only high-gradient weights?",
        text=("Each run fine-tunes a copy of the model on ONE memorized target paragraph with 10 NMEM paragraphs in the "
              "KL term (paper section 5.3), updating all weights, only the top 0.1% by |gradient| of the contrastive "
              "objective, or a random 0.1% of the same size; 'unlearn' minimises Eq. 3 (push the target's "
              "continuation down), 'edit' Eq. 4 (teach the target prefix the new continuation found in section 4); "
              "a 'reft' row trains a low-rank intervention on one residual stream (LoReFT) instead of weights. "
              "Collateral damage: EM of other MEM paragraphs, EM of NMEM paragraphs against the original model's own "
              "greedy continuation (full length = unchanged, the paper's measure) and held-out perplexity. The last "
              "column is the target's EM after a relearning attack (a few steps of ordinary fine-tuning on the "
              "target's prefix alone; '-' when not run): a forgotten paragraph that comes straight back was hidden, "
              f"not removed.\n\nSettings: {len(s['targets'])} target(s), {s['retain_per_run']} retain paragraphs per run, probes of "
              f"{s['probe_mem']} MEM / {s['probe_nmem']} NMEM / {s['probe_heldout']} held-out paragraphs. The paper's means "
              "(GPT-Neo 125M, MEM / NMEM EM after unlearning): all weights 26.90 / 45.11, top-0.1% 26.75 / 45.84, "
              "random-0.1% 49.80 / 44.86."),
        figures={"table": views.figure_unlearning_table(table)},
        tables=[Table("Mean scores after each run (EM in tokens; ppl = held-out perplexity)",
                      ["run", *COLUMNS, "weights changed", "target EM after relearning"], rows)],
    )


def _restoration(inputs: StepInputs) -> Bundle | Skipped:
    from interp.restore import restoration
    from interp.unlearning import UnlearnConfig, unlearn

    sets = _sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model = inputs.options, inputs.model
    mem, nmem = sets
    targets = mem.select(range(min(o.unlearn_targets, len(mem))))
    retain = nmem.select(range(min(10, len(nmem))))
    parts: dict[str, Any] = {}
    for select in o.restore_selects:
        edited = unlearn(model, targets, retain, UnlearnConfig(method="unlearn", select=select, lr=o.unlearn_lr,
                                                                steps=o.unlearn_steps, weight_decay=1.0))
        parts[select] = restoration(model, edited.model, targets, batch_size=o.batch_size)
        parts[f"{select}_em_after"] = edited.after.summary()["target_em"]
    return Bundle(parts)


def _restoration_section(result: Bundle, results: Mapping[str, Any]) -> Section:
    from interp.views import unlearning as views

    notes = []
    labels = {"all": "all weights", "topk": "top-0.1% weights", "random": "random-0.1% weights"}
    selects = [k for k in labels if k in result.parts]
    figures = {}
    for select in selects:
        r, label = result[select], labels[select]
        before, after = float(r.em_original.float().mean()), float(r.em_edited.float().mean())
        if after >= before:
            notes.append(f"Unlearning with {label} did not lower the target's EM ({before:.1f} -> {after:.1f}): "
                         "nothing was forgotten, so there is nothing to restore and no heatmap.")
            continue
        figures[f"{select}_weights"] = views.figure_restoration(r)
        krs = r.krs
        best = divmod(int(krs.nan_to_num(-1e9).flatten().argmax()), krs.shape[1])
        values = f"; value vectors (W_out) recover at most KRS {float(krs[list(r.experiments).index('values')].max()):.2f}" \
            if "values" in r.experiments else ""
        notes.append(f"Unlearning with {label}: target EM {before:.1f} -> {after:.1f}; the largest recovery (KRS "
                     f"{float(krs[best]):.2f}) comes from restoring {r.experiments[best[0]]} around layer {best[1]}{values}.")
    return Section(
        key="restoration", title="6. Is the unlearned text gone, or only harder to reach?",
        text=(f"After unlearning (Eq. 3; {' and '.join(labels[k] for k in selects)}), parts of the ORIGINAL model are put back "
              "into the unlearned one for a window of 5 layers around each layer (paper B): the MLP coefficients (the "
              "activations after the nonlinearity), the attention outputs, both, or the MLP value vectors (W_out "
              "weights). Each cell is the fraction recovered: of the forgotten EM, of the NLL increase, and the "
              "Knowledge Recovery Score 1 - loss(restored) / loss(unlearned) on logits (1 = fully restored). The paper "
              "found value vectors recover almost nothing while the last layers' coefficients carry the forgetting: "
              "unlearning changes retrieval, not storage."),
        figures=figures, notes=notes + _window_note(result[selects[0]]),
    )


def _window_note(r: Any) -> list[str]:
    lo, hi = r.windows[0][0], r.windows[-1][1]
    widest = max(b - a + 1 for a, b in r.windows)
    if widest >= hi - lo + 1:
        return [f"This model has only {hi - lo + 1} layers, so a 5-layer window covers all of them: the heatmap cannot "
                "localize the forgetting to layers here, only to the kind of state restored."]
    return []


def default_steps() -> list[Step]:
    """The pipeline in order."""
    return [
        Step("memorization", _memorization, _memorization_section, options=("batch_size", "nmem_max", "n_examples")),
        Step("gradients", _gradients, _gradients_section, options=(*SET_OPTIONS, "grad_batch_size"), depends=("memorization",)),
        Step("heads", _heads, _heads_section, options=(*SET_OPTIONS, "batch_size"), depends=("memorization",)),
        Step("perturbation", _perturbation, _perturbation_section, options=(*SET_OPTIONS, "n_perturb", "perturb_samples"),
             depends=("memorization",)),
        Step("unlearning", _unlearning, _unlearning_section,
             options=(*SET_OPTIONS, "unlearn_targets", "unlearn_lr", "unlearn_steps", "unlearn_methods", "reft",
                      "relearn_steps", "probe", "batch_size"),
             depends=("memorization", "perturbation")),
        Step("restoration", _restoration, _restoration_section,
             options=(*SET_OPTIONS, "unlearn_targets", "unlearn_lr", "unlearn_steps", "restore_selects", "batch_size"),
             depends=("memorization",)),
    ]


# ---- running it ----


@dataclass
class ReportRun:
    """What `run_report` did: where the outputs are, and per step the seconds and cache hits."""

    out_dir: Path
    html: Path
    results_json: Path
    figures: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def provenance(model: HookedTransformer, paragraphs: Paragraphs, paragraphs_source: str | None,
               fingerprints: Mapping[str, str], options: ReportOptions) -> dict:
    """Where the model and data came from, and what ran: shown in the report and in results.json."""
    cfg = model.cfg
    source = getattr(model, "interp_source", None)
    model_info = {"spec": model_name(model), "path": source.path if source else None,
                  "architecture": cfg.original_architecture, "layers": cfg.n_layers, "heads": cfg.n_heads,
                  "d_model": cfg.d_model, "d_mlp": cfg.d_mlp, "vocabulary": cfg.d_vocab, "context": cfg.n_ctx,
                  "parameters": sum(p.numel() for p in model.parameters()), "weights_sha256": fingerprints["model"]}
    if source and source.path and (Path(source.path) / "metadata.json").exists():
        meta = json.loads((Path(source.path) / "metadata.json").read_text())
        corpus = meta.get("corpus", {})
        model_info["training_corpus"] = corpus.get("source")
        model_info["training_tokens"] = meta.get("training", {}).get("tokens_seen")
    splits = paragraphs.meta.get("split")
    data_info = {"source": paragraphs_source or "(given in memory)", "paragraphs": len(paragraphs),
                 "prefix_len": paragraphs.prefix_len, "continuation_len": paragraphs.continuation_len,
                 "tokens_sha256": fingerprints["paragraphs"]}
    if splits is not None:
        data_info["splits"] = ", ".join(f"{s}: {splits.count(s)}" for s in sorted(set(splits)))
    run_info = {"interp": interp_version(), "torch": torch.__version__, "python": platform.python_version(),
                "device": str(cfg.device), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {"model": model_info, "paragraphs": data_info,
            "options": {k: v for k, v in options.to_dict().items() if v is not None}, "run": run_info}


def interp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interp")
    except PackageNotFoundError:
        return "unknown"


def sample_paragraphs(paragraphs: Paragraphs, limit: int | None, seed: int) -> Paragraphs:
    """At most `limit` paragraphs, drawn with `seed`, in their original order (all of them if fewer)."""
    if limit is None or len(paragraphs) <= limit:
        return paragraphs
    keep = torch.randperm(len(paragraphs), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return paragraphs.select(keep)


def select_steps(options: ReportOptions, steps: Sequence[Step]) -> list[Step]:
    """The steps `options.steps` asks for, with the steps they depend on, in pipeline order."""
    names = [s.name for s in steps]
    if options.steps is None:
        return list(steps)
    unknown = [s for s in options.steps if s not in names]
    if unknown:
        raise UserError(f"unknown report step(s) {', '.join(unknown)}: the steps are {', '.join(names)}")
    wanted = set(options.steps)
    for step in reversed(steps):  # a chosen step brings what it depends on (listed before it)
        if step.name in wanted:
            wanted |= set(step.depends)
    return [s for s in steps if s.name in wanted]


def run_report(
    model: HookedTransformer,
    paragraphs: Paragraphs,
    out_dir: str | Path,
    options: ReportOptions = ReportOptions(),
    steps: Sequence[Step] | None = None,
    use_cache: bool = True,
    paragraphs_source: str | None = None,
    image_formats: Sequence[str] = ("png", "svg"),
) -> ReportRun:
    """Run every step (or resume from cached ones) and write report.html, results.json, figures/.

    The outputs are built in a staging folder inside `out_dir` and moved into place only at the
    end, so an interrupted run leaves the previous report untouched (and its finished steps cached
    under `out_dir/.cache`). The model is never changed.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a folder")
    steps = select_steps(options, default_steps() if steps is None else steps)
    n_given = len(paragraphs)
    paragraphs = sample_paragraphs(paragraphs, options.max_paragraphs, options.seed)
    base = {"model": model_fingerprint(model), "paragraphs": paragraphs_fingerprint(paragraphs), "code": code_fingerprint()}
    keys = step_keys(steps, base, options)
    cache = StepCache(out_dir / ".cache")
    run = ReportRun(out_dir, out_dir / "report.html", out_dir / "results.json", [])
    sections: list[Section] = []
    progress = options.progress
    bar = tqdm(steps, desc="report", unit="step", disable=not progress)
    for step in bar:
        bar.set_postfix_str(step.name)
        start = time.perf_counter()
        hit, result = cache.load(step.name, keys[step.name]) if use_cache else (False, None)
        if not hit:
            result = step.analyse(StepInputs(model, paragraphs, options, dict(run.results)))
            cache.store(step.name, keys[step.name], result)
        run.results[step.name] = result
        run.cached[step.name] = hit
        run.seconds[step.name] = round(time.perf_counter() - start, 2)
        sections.append(_skipped_section(step, result) if isinstance(result, Skipped) else step.section(result, run.results))
    prov = provenance(model, paragraphs, paragraphs_source, base, options)
    if len(paragraphs) < n_given:
        prov["paragraphs"]["sampled"] = f"a seeded random sample of {len(paragraphs)} of the {n_given} paragraphs given"
    _write_outputs(run, sections, prov, image_formats, progress)
    return run


def _write_outputs(run: ReportRun, sections: list[Section], prov: dict, image_formats: Sequence[str], progress: bool) -> None:
    from interp.views.export import save_figures

    out_dir = run.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        figures = {f"{s.key}_{name}": fig for s in sections for name, fig in s.figures.items()}
        start = time.perf_counter()
        if image_formats and figures:
            if progress:
                print(f"report: exporting {len(figures)} figures as {', '.join(image_formats)} ...", flush=True)
            save_figures(figures, staging / "figures", formats=tuple(image_formats))
        run.seconds["export_images"] = round(time.perf_counter() - start, 2)
        results = {
            "provenance": prov,
            "steps": {name: {"seconds": run.seconds[name], "cached": run.cached[name], "result": _result_json(r)}
                      for name, r in run.results.items()},
            "figures": sorted(figures),
            "tables": {s.key: [{"caption": t.caption, "columns": list(t.columns), "rows": to_jsonable(t.rows)} for t in s.tables]
                       for s in sections if s.tables},
            "notes": {s.key: list(s.notes) for s in sections if s.notes},
        }
        write_json(staging / "results.json", results)
        html = report_html(
            title=f"Where does {prov['model']['spec']} store the text it recites?",
            provenance=prov, sections=sections,
            intro=("This report runs the whole interp pipeline on one model and one paragraph set. Each section says "
                   "what its figure shows and what the numbers mean; every number is also in results.json beside "
                   "this file, and each figure is saved as PNG and SVG in figures/. Figures are interactive "
                   "(hover, zoom); the page needs no network."),
        )
        write_text_atomic(staging / "report.html", html)
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    run.figures = sorted((out_dir / "figures").glob("*")) if (out_dir / "figures").exists() else []


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Swap the complete new outputs in: figures folder, then results.json, then report.html."""
    new_figures, old_figures = staging / "figures", out_dir / "figures"
    if new_figures.exists():
        trash = staging / "old-figures"
        if old_figures.exists():
            old_figures.replace(trash)
        new_figures.replace(old_figures)
    (staging / "results.json").replace(out_dir / "results.json")
    (staging / "report.html").replace(out_dir / "report.html")


def _skipped_section(step: Step, skipped: Skipped) -> Section:
    return Section(key=step.name, title=f"{step.name}: skipped", notes=[f"The {step.name} step did not run: {skipped.reason}."])


def _result_json(result: Any) -> Any:
    if hasattr(result, "to_json"):
        return to_jsonable(result.to_json())
    return to_jsonable(result)
