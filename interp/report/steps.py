"""The report's eight analysis steps: adapters from `StepInputs` to library calls, and their order.

Each analysis returns a result with `to_json()` (or `Skipped` with the reason); the section that
shows it is a view in `interp.views.sections`, paired with it in `default_steps`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.attention import mem_specific_head
from interp.backend import act_name, capture
from interp.conventions import conventions
from interp.data import Paragraphs, rarity_ranks, unigram_counts
from interp.errors import UserError
from interp.gradient_norms import compare_norms, per_paragraph_norms
from interp.gradients import gradient_map
from interp.locate import DEFAULT_METHODS, locate_memorization_head
from interp.locator_validation import LocatorValidation, validate_locator
from interp.memorization import MemorizationSplit, choose_indices, choose_sets, heldout_indices, memorization_split
from interp.perturbation import PerturbationResult, prefix_perturbation
from interp.reft import ReftConfig
from interp.report.audit_step import AuditedRows, Transient, audit_step, audited, keep_runs, proxy_row
from interp.report.runner import Bundle, Skipped, Step, StepInputs
from interp.restore import RestorationResult, restoration
from interp.testbed import shipped_unigram_counts
from interp.unlearning import (
    RelearnConfig,
    UnlearnConfig,
    calibrate,
    calibrated_configs,
    paper_configs,
    probe_sets,
    unlearn,
    unlearning_table,
)

SET_OPTIONS = ("n_mem", "n_nmem", "seed")


def _memorization(inputs: StepInputs) -> MemorizationSplit:
    o = inputs.options
    return memorization_split(
        inputs.model, inputs.paragraphs, batch_size=o.batch_size, nmem_max=o.nmem_max, n_examples=o.n_examples
    )


def _sets(inputs: StepInputs) -> tuple[Paragraphs, Paragraphs] | Skipped:
    split: MemorizationSplit = inputs.results["memorization"]
    if len(split.mem_idx) == 0 or len(split.nmem_idx) == 0:
        return Skipped(
            f"needs both MEM and NMEM paragraphs; this set has {len(split.mem_idx)} MEM and "
            f"{len(split.nmem_idx)} NMEM (see section 1)"
        )
    o = inputs.options
    return choose_sets(split, inputs.paragraphs, n_mem=o.n_mem, n_nmem=o.n_nmem, seed=o.seed)


def _gradients(inputs: StepInputs) -> Bundle | Skipped:
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


def _heads(inputs: StepInputs) -> Bundle | Skipped:
    split: MemorizationSplit = inputs.results["memorization"]
    if len(split.mem_idx) == 0 or len(split.nmem_idx) == 0:
        return _sets(inputs)
    o, model = inputs.options, inputs.model
    # the locator re-scores what it is given: every MEM paragraph it may use and as many NMEM ones
    wide = 16 * o.n_mem
    mem_idx, nmem_idx = choose_indices(split, n_mem=wide, n_nmem=wide, seed=o.seed)
    subset = inputs.paragraphs.select(torch.cat([mem_idx, nmem_idx]).sort().values)
    counts = shipped_unigram_counts(model)
    ranking = locate_memorization_head(
        model,
        subset,
        unigram_counts=counts,
        max_paragraphs=o.n_mem,
        method_options={
            "rare_token": {"score": conventions(o.conventions).rare_token_score, "null": o.rare_token_null}
        },
        mem_min=split.mem_min,
        nmem_max=split.nmem_max,
        seed=o.seed,
        batch_size=o.batch_size,
        progress=o.progress,
    )
    rare, rare_nmem, specific = ranking.rare_tokens, ranking.rare_tokens_nmem, None
    if rare is not None:
        if rare.null != o.rare_token_null:  # the locator scores with the default null; the p-values use the option's
            rare, rare_nmem = rare.with_null(o.rare_token_null), rare_nmem.with_null(o.rare_token_null)
        _ = rare.sum, rare_nmem.sum  # computed (and cached) here, in the step, so the view only reads them
        try:
            specific = mem_specific_head(rare, rare_nmem, seed=o.seed)
        except UserError as exc:
            specific = Skipped(str(exc))
    # attention patterns of the top heads on one MEM paragraph, for the circuitsvis view
    heads = [tuple(h) for h in ranking.order[:3].tolist()]
    example = inputs.paragraphs.select(mem_idx[:1])
    with torch.no_grad():
        _, cache = capture(model, example.tokens.to(model.cfg.device), [act_name("pattern", l) for l in range(model.cfg.n_layers)])
    patterns = torch.stack([cache["pattern", layer][0, head] for layer, head in heads]).cpu()
    rarity = rarity_ranks(
        example.tokens, counts if counts is not None else unigram_counts(subset.tokens, model.cfg.d_vocab)
    )[0]
    return Bundle(
        {
            "ranking": ranking,
            "rare_tokens": rare,
            "rare_tokens_nmem": rare_nmem,
            "mem_specific_head": specific,
            "options": {
                "query": rare.query if rare is not None else None,
                "rare_token_null": o.rare_token_null,
                "rare_token_score": conventions(o.conventions).rare_token_score,
                "conventions": o.conventions,
            },
            "example": {
                "id": example.ids[0],
                "heads": heads,
                "patterns": patterns,
                "rarity": rarity,
                "str_tokens": [
                    model.tokenizer.decode([t]) if model.tokenizer else f"<{t}>" for t in example.tokens[0].tolist()
                ],
                "corpus_counts": counts is not None,
            },
        }
    )


def _locator_trust(inputs: StepInputs) -> LocatorValidation | Skipped:
    o, model = inputs.options, inputs.model
    if not o.validate_locator:
        return Skipped(
            "turned off (validate_locator=False; --quick turns it off); `interp validate-locator` runs it alone"
        )
    try:
        return validate_locator(  # the methods section 3 runs, on heads whose answer is known
            model,
            inputs.paragraphs,
            methods=DEFAULT_METHODS,
            neurons=o.validate_neurons,
            unigram_counts=shipped_unigram_counts(model),
            seed=o.seed,
            batch_size=o.batch_size,
        )
    except UserError as exc:  # e.g. too few paragraphs the model does not recite: the rest of the report stands
        return Skipped(str(exc))


def _perturbation(inputs: StepInputs) -> Bundle | Skipped:
    sets = _sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model = inputs.options, inputs.model
    n = o.n_perturb
    mem, nmem = sets[0].select(range(min(n, len(sets[0])))), sets[1].select(range(min(n, len(sets[1]))))
    both = Paragraphs(torch.cat([mem.tokens, nmem.tokens]), mem.prefix_len, mem.ids + nmem.ids)
    result = prefix_perturbation(
        model, both, samples_per_position=o.perturb_samples, seed=o.seed, batch_size=4 * o.batch_size
    )
    tok = model.tokenizer
    str_tokens = [[tok.decode([t]) if tok else f"<{t}>" for t in row.tolist()] for row in both.prefixes]
    return Bundle({"all": result, "n_mem": len(mem), "str_tokens": str_tokens})


def perturbation_parts(result: Bundle) -> tuple[PerturbationResult, PerturbationResult]:
    """The MEM and the NMEM rows of the perturbation result."""
    k, every = result["n_mem"], result["all"]
    return every.select(torch.arange(k)), every.select(torch.arange(k, len(every.ids)))


def _unlearning(inputs: StepInputs) -> Bundle | Skipped:
    sets = _sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model, split = inputs.options, inputs.model, inputs.results["memorization"]
    mem, nmem = sets
    perturbed_mem, _ = perturbation_parts(inputs.results["perturbation"])
    n_targets = min(o.unlearn_targets, len(mem), len(perturbed_mem.ids))
    retain_per_run = 10
    need = n_targets * retain_per_run + 1
    if len(nmem) < need:
        have = len(split.nmem_idx)
        fix = (
            f"raise n_nmem (now {o.n_nmem}; the set has {have} NMEM paragraphs)"
            if have >= need
            else f"the paragraph set has only {have} NMEM paragraphs: give a larger set (e.g. from `interp scan`) or "
            f"lower unlearn_targets (now {o.unlearn_targets})"
        )
        return Skipped(f"needs {need} NMEM paragraphs ({retain_per_run} per run + probes); {fix}")
    targets = mem.select(range(n_targets))
    edit_targets = perturbed_mem.editing_targets.select(torch.arange(n_targets))
    retain = nmem.select(range(n_targets * retain_per_run))
    probe_nmem = nmem.select(range(n_targets * retain_per_run, min(len(nmem), n_targets * retain_per_run + o.probe)))
    held = heldout_indices(split)
    heldout = inputs.paragraphs.select(held[: o.probe]) if len(held) else probe_nmem
    probe = probe_sets(
        model,
        mem.select(range(n_targets, len(mem))) if len(mem) > n_targets else mem,
        probe_nmem,
        heldout,
        batch_size=o.batch_size,
    )
    weights = dict(
        lr=o.unlearn_lr or 1e-3,
        steps=o.unlearn_steps,
        weight_decay=1.0,
        decay_outside_mask=conventions(o.conventions).decay_outside_mask,
    )
    configs = [c for c in paper_configs(fraction=0.001, **weights) if c.method in o.unlearn_methods]
    configs += [UnlearnConfig(method=m, select="all", fraction=0.001, **weights) for m in o.unlearn_baselines]
    if o.reft:
        configs.append(ReftConfig(method="unlearn", seed=o.seed))
    proxy = proxy_row(model, o.proxy)
    if proxy is not None:
        configs.append(proxy)
    calibrations = []
    if o.unlearn_lr is None:  # compare methods at matched forgetting, not at one arbitrary rate
        bar = tqdm(
            total=len(configs), desc="calibrating learning rates", unit="method", leave=False, disable=not o.progress
        )
        todo, configs = configs, []
        for config in todo:
            found, [search] = calibrated_configs(  # probes scored at every rate tried: the forgetting curves
                model,
                targets,
                retain,
                [config],
                level=o.unlearn_level,
                edit_targets=edit_targets,
                retain_per_run=retain_per_run,
                probe=probe,
            )
            configs += found
            calibrations.append(search)
            bar.update()
        bar.close()
    # relearning control (b) needs text the model was never trained on: the 'heldout' split, never NMEM text
    never_seen = inputs.paragraphs.select(held[:n_targets]) if len(held) and o.relearn_steps else None
    never_seen_edit = (
        prefix_perturbation(
            model, never_seen, samples_per_position=o.perturb_samples, seed=o.seed, batch_size=4 * o.batch_size
        ).editing_targets
        if never_seen is not None and any(getattr(c, "method", None) == "edit" for c in configs)
        else None
    )
    chosen = [c for c, cal in zip(configs, calibrations or [None] * len(configs)) if audited(c, cal)]
    runs, keep = keep_runs(chosen)
    table = unlearning_table(
        model,
        targets,
        retain,
        configs,
        probe,
        edit_targets=edit_targets,
        retain_per_run=retain_per_run,
        relearn_config=RelearnConfig(steps=o.relearn_steps) if o.relearn_steps else None,
        calibrations=calibrations,
        progress=o.progress,
        heldout=never_seen,
        heldout_edit_targets=never_seen_edit,
        on_run=keep if o.audit else None,
    )
    return Bundle({"table": table, "audited": AuditedRows(chosen), "runs": Transient(runs), "retain": list(retain.ids)})


def _restoration(inputs: StepInputs) -> Bundle | Skipped:
    """Restoration of the runs section 5 calibrated and tabulated: each target unlearned in its OWN run (the
    target + its 10 retain NMEM paragraphs, its own weight mask) at the row's calibrated rate, restored one
    target at a time; the per-paragraph scores are then pooled into one heatmap."""
    sets = _sets(inputs)
    if isinstance(sets, Skipped):
        return sets
    o, model = inputs.options, inputs.model
    mem, nmem = sets
    retain_per_run = 10
    table = inputs.results.get("unlearning")
    ids = table["table"].settings["targets"] if isinstance(table, Bundle) else None
    n_targets = len(ids) if ids else min(o.unlearn_targets, len(mem), len(nmem) // retain_per_run)
    if n_targets == 0:
        return Skipped(f"needs {retain_per_run} NMEM paragraphs per unlearning run; the sets have {len(nmem)}")
    targets = mem.select(range(n_targets))
    if ids and list(targets.ids) != list(ids):
        raise UserError("the restoration targets differ from section 5's: rerun the report without its cache")
    retain = nmem.select(range(n_targets * retain_per_run))
    paper = conventions(o.conventions)
    parts: dict[str, Any] = {"mode": "per target", "targets": list(targets.ids), "retain_per_run": retain_per_run}
    for select in o.restore_selects:
        config = UnlearnConfig(
            method="unlearn",
            select=select,
            lr=o.unlearn_lr or 1e-3,
            steps=o.unlearn_steps,
            weight_decay=1.0,
            decay_outside_mask=paper.decay_outside_mask,
        )
        source = "fixed (unlearn_lr)"
        if o.unlearn_lr is None:  # the rate section 5 calibrated for these very runs, else calibrate them here
            rates = (
                [
                    c["lr"]
                    for c in table["table"].configs
                    if c.get("kind") == "weights" and c["method"] == "unlearn" and c["select"] == select
                ]
                if isinstance(table, Bundle)
                else []
            )
            if rates:
                lr, source = rates[0], "calibrated in section 5"
            else:
                lr = calibrate(model, targets, retain, config, level=o.unlearn_level, retain_per_run=retain_per_run).lr
                source = "calibrated here, per target as section 5 does"
            config = replace(config, lr=lr)
        per_target, em_after = [], []
        for i in range(n_targets):
            target = targets.select([i])
            kept = retain.select(range(i * retain_per_run, (i + 1) * retain_per_run))
            edited = unlearn(model, target, kept, config)
            per_target.append(
                restoration(model, edited.model, target, width=paper.restore_width, batch_size=o.batch_size)
            )
            em_after.append(float(edited.after.target_em.float().mean()))
        parts[select] = RestorationResult.concat(per_target)
        parts[f"{select}_em_after"] = sum(em_after) / len(em_after)
        parts[f"{select}_lr"] = config.lr
        parts[f"{select}_lr_source"] = source
    return Bundle(parts)


def default_steps() -> list[Step]:
    """The pipeline in order, each analysis with the section that shows it."""
    from interp.views.sections import (  # the views, loaded only when the steps are assembled
        audit_section,
        gradients_section,
        heads_section,
        locator_trust_section,
        memorization_section,
        perturbation_section,
        restoration_section,
        unlearning_section,
    )

    return [
        Step("memorization", _memorization, memorization_section, options=("batch_size", "nmem_max", "n_examples")),
        Step(
            "gradients",
            _gradients,
            gradients_section,
            options=(*SET_OPTIONS, "grad_batch_size"),
            depends=("memorization",),
        ),
        Step(
            "heads",
            _heads,
            heads_section,
            options=(*SET_OPTIONS, "batch_size", "conventions", "rare_token_null"),
            depends=("memorization",),
        ),
        Step(
            "perturbation",
            _perturbation,
            perturbation_section,
            options=(*SET_OPTIONS, "n_perturb", "perturb_samples", "batch_size"),
            depends=("memorization",),
        ),
        Step(
            "unlearning",
            _unlearning,
            unlearning_section,
            options=(
                *SET_OPTIONS,
                "unlearn_targets",
                "unlearn_lr",
                "unlearn_level",
                "unlearn_steps",
                "unlearn_methods",
                "unlearn_baselines",
                "reft",
                "proxy",
                "audit",
                "relearn_steps",
                "probe",
                "perturb_samples",
                "batch_size",
                "conventions",
            ),
            depends=("memorization", "perturbation"),
        ),
        Step(
            "audit",
            audit_step,
            audit_section,
            options=(*SET_OPTIONS, "audit", "audit_never_known", "relearn_steps", "proxy", "batch_size"),
            depends=("memorization", "unlearning"),
        ),
        Step(
            "restoration",
            _restoration,
            restoration_section,
            options=(
                *SET_OPTIONS,
                "unlearn_targets",
                "unlearn_lr",
                "unlearn_level",
                "unlearn_steps",
                "restore_selects",
                "batch_size",
                "conventions",
            ),
            depends=("memorization", "unlearning"),
        ),
        Step(
            "locator_trust",
            _locator_trust,
            locator_trust_section,
            options=("validate_locator", "validate_neurons", "seed", "batch_size"),
        ),
    ]
