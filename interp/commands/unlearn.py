"""`interp unlearn`: fine-tune only selected weights (or a LoReFT intervention) to forget MEM paragraphs.

One configuration, or with --table the paper's Figure 5 grid plus the GA / GradDiff / NPO and
LoReFT rows, each run on --runs MEM targets (1 target + --retain NMEM paragraphs per run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.commands.common import add_model_args, add_paragraph_args, model_from_args, paragraphs_from_args
from interp.data import Paragraphs
from interp.errors import UserError
from interp.io import write_json
from interp.metrics import NMEM_MAX_EM, score_paragraphs
from interp.models import load_model, model_name, save_model
from interp.reft import ReftConfig
from interp.unlearning import (
    METHODS,
    SELECTIONS,
    TOLERANCE,
    Probe,
    RelearnConfig,
    UnlearnConfig,
    calibrate,
    paper_configs,
    probe_sets,
    unlearning_table,
)
from interp.unlearning.proxy import ProxyConfig, ProxyMethod, small_model_spec

SAVED_RUN = "unlearning.json"  # written beside a saved edited model: which targets it forgot, and how


def register(sub) -> None:
    p = sub.add_parser(
        "unlearn", help="unlearn MEM paragraphs by masked fine-tuning or LoReFT; measure the collateral damage"
    )
    add_model_args(p)
    add_paragraph_args(p)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="unlearn",
        help="unlearn = paper Eq. 3, edit = Eq. 4 (new continuation from prefix perturbation), ga, graddiff, npo",
    )
    p.add_argument(
        "--select",
        choices=SELECTIONS + ("reft",),
        default="topk",
        help="weights to tune: top |gradient| fraction, a random mask of that size, all, or a LoReFT intervention",
    )
    p.add_argument(
        "--fraction", type=float, default=0.001, help="fraction of weights for topk / random (default 0.001 = 0.1%%)"
    )
    p.add_argument(
        "--scope", choices=("global", "component"), default="global", help="rank all weights together or per parameter"
    )
    p.add_argument("--layers", default=None, help="only these layers, e.g. 0,1")
    p.add_argument("--components", default=None, help="only these, e.g. mlp or attn or W_V,W_in")
    p.add_argument("--head", default=None, help="only this attention head, as LAYER.HEAD (e.g. 1.2)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam learning rate (default {UnlearnConfig.lr:g}, the paper's code; LoReFT {ReftConfig.lr:g})",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="compare at matched forgetting: for each run, the smallest learning rate (log grid 1e-5 .. 1e-1, then "
        "log-rate bisection to --tolerance) that brings EVERY target's EM to --level; the table lists the rate each "
        "row needed, and every rate tried is scored on the probes (the forgetting curves, --curves)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help=f"--calibrate: stop when the rate is known within a factor 1 + this (default {TOLERANCE:g})",
    )
    p.add_argument(
        "--level",
        type=int,
        default=None,
        help="--calibrate: target EM to reach (default: the NMEM threshold, 10 of 50 tokens)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"Adam steps (default {UnlearnConfig.steps}, the paper's code; LoReFT {ReftConfig.steps})",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help=f"Adam (coupled) weight decay (default {UnlearnConfig.weight_decay:g}, the paper's code; LoReFT {ReftConfig.weight_decay:g})",
    )
    p.add_argument(
        "--decay-outside-mask",
        action="store_true",
        help="zero the gradient outside the mask instead of restoring those weights, so weight decay shrinks "
        "the unselected weights of masked tensors, as the paper's public code does",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="the authors' code conventions: --decay-outside-mask at the paper's rate and steps (no --calibrate)",
    )
    p.add_argument(
        "--proxy",
        nargs="?",
        const="auto",
        default=None,
        metavar="SMALL_MODEL",
        help="decoding-time unlearning (proxy-tuning): unlearn SMALL_MODEL (same tokenizer; alone: the testbed's "
        "companion, for the testbed) on all its weights and add its logit difference to the frozen model at "
        "decoding time; --lr / --steps / --method set the small model's run, --calibrate its rate; with --table "
        "an extra row",
    )
    p.add_argument("--alpha", type=float, default=1.0, help="--proxy: strength of the logit difference (default 1)")
    p.add_argument(
        "--reft-layer", type=int, default=None, help="LoReFT: residual stream after this layer (default: the middle)"
    )
    p.add_argument("--reft-rank", type=int, default=4, help="LoReFT: rank of the intervention (default 4)")
    p.add_argument(
        "--targets",
        default=None,
        help="comma-separated ids of the MEM paragraphs to forget (default: the first --runs)",
    )
    p.add_argument("--runs", type=int, default=1, help="number of MEM targets, one run each (default 1)")
    p.add_argument(
        "--retain", type=int, default=10, help="NMEM paragraphs in each run's KL / retain term (default 10, the paper)"
    )
    p.add_argument(
        "--probe",
        type=int,
        default=50,
        help="MEM, NMEM and held-out paragraphs for collateral damage, at most (default 50)",
    )
    p.add_argument("--nmem-max", type=int, default=NMEM_MAX_EM, help="NMEM: EM at most this (default 10)")
    p.add_argument(
        "--perturb-samples",
        type=int,
        default=4,
        help="edit: random tokens per prefix position when finding the new continuation",
    )
    p.add_argument(
        "--relearn-steps", type=int, default=10, help="relearning attack: Adam steps on related text (0: no attack)"
    )
    p.add_argument("--relearn-lr", type=float, default=1e-4, help="relearning attack learning rate (default 1e-4)")
    p.add_argument(
        "--relearn-data",
        choices=("prefix", "retain"),
        default="prefix",
        help="relearning text: the targets' prefixes alone (default) or the retain NMEM paragraphs",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="run the paper's Figure 5 grid (unlearn / edit x all / top / random) plus GA, GradDiff, NPO and LoReFT",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--html", default=None, help="write the table figure here (self-contained HTML)")
    p.add_argument(
        "--curves",
        default=None,
        help="--calibrate: write the forgetting curves (collateral damage vs target EM along each rate trace) here",
    )
    p.add_argument("--save", type=Path, default=None, help="write the edited model here (one weight-editing run only)")
    p.set_defaults(run=run)


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--{what} takes comma-separated integers, got {text!r}") from None


def _configs(args: argparse.Namespace) -> list:
    """The single configuration the flags describe, or the --table grid."""
    given = {
        k: v
        for k, v in {"lr": args.lr, "steps": args.steps, "weight_decay": args.weight_decay}.items()
        if v is not None
    }
    weights = dict(
        given, decay_outside_mask=args.decay_outside_mask or args.paper
    )  # the rest: UnlearnConfig's defaults
    reft = dict(given, layer=args.reft_layer, rank=args.reft_rank, seed=args.seed)  # the rest: ReftConfig's defaults
    if args.table:
        grid = paper_configs(fraction=args.fraction, **weights)
        grid += [
            UnlearnConfig(method=m, fraction=args.fraction, seed=args.seed, **weights)
            for m in ("ga", "graddiff", "npo")
        ]
        return grid + [ReftConfig(method="unlearn", **reft)]
    if args.select == "reft":
        return [ReftConfig(method=args.method, **reft)]
    layers, head = _ints(args.layers, "layers"), None
    if args.head is not None:
        try:
            layer, head = (int(x) for x in args.head.split("."))
        except ValueError:
            raise UserError(f"--head takes LAYER.HEAD, e.g. 1.2, got {args.head!r}") from None
        layers = (layer,)
    components = tuple(c.strip() for c in args.components.split(",")) if args.components else None
    return [
        UnlearnConfig(
            method=args.method,
            select=args.select,
            fraction=args.fraction,
            scope=args.scope,
            layers=layers,
            components=components,
            head=head,
            seed=args.seed,
            **weights,
        )
    ]


def _relearn(args: argparse.Namespace) -> RelearnConfig | None:
    """The relearning attack the flags describe (None: no attack)."""
    return RelearnConfig(args.relearn_steps, args.relearn_lr, args.relearn_data) if args.relearn_steps > 0 else None


def _proxy(model, args: argparse.Namespace) -> ProxyMethod:
    """The decoding-time row --proxy describes, its small model loaded."""
    spec = small_model_spec(model, args.proxy)
    if spec is None:
        raise UserError(
            f"--proxy needs a small model with {model_name(model)}'s tokenizer (the testbed's companion serves only "
            "the testbed): pass --proxy SMALL_MODEL"
        )
    if args.method == "edit":
        raise UserError("--proxy unlearns the small model with unlearn, ga, graddiff or npo: change --method")
    unlearn = UnlearnConfig(
        method=args.method,
        select="all",
        lr=args.lr if args.lr is not None else ProxyConfig().unlearn.lr,
        steps=args.steps if args.steps is not None else ProxyConfig().unlearn.steps,
        weight_decay=args.weight_decay if args.weight_decay is not None else 0.0,
        seed=args.seed,
    )
    small = load_model(spec, device=args.device, dtype=args.dtype)
    return ProxyMethod(small, ProxyConfig(small=spec, unlearn=unlearn, alpha=args.alpha))


def _scan(
    model, paragraphs: Paragraphs, candidates: list[int], want_mem: int, want_nmem: int, args
) -> tuple[list[int], list[int]]:
    """MEM and NMEM indices among `candidates`, scored in file order only until both quotas are met."""
    mem, nmem = [], []
    chunk = max(args.batch_size, 256)
    for start in range(0, len(candidates), chunk):
        idx = candidates[start : start + chunk]
        em = score_paragraphs(model, paragraphs.select(idx), batch_size=args.batch_size).em
        mem += [i for i, e in zip(idx, em.tolist()) if e == paragraphs.continuation_len]
        nmem += [i for i, e in zip(idx, em.tolist()) if e <= args.nmem_max]
        if len(mem) >= want_mem and len(nmem) >= want_nmem:
            break
    return mem, nmem


def _pick(model, paragraphs: Paragraphs, args) -> tuple[Paragraphs, Paragraphs, Probe, Paragraphs | None]:
    """Targets (given ids, or the first --runs MEM), retain NMEM, the probes, and the never-seen paragraphs
    for relearning control (b) (None without a 'heldout' split). Paragraphs of a 'heldout' split (the
    testbed's never-seen text) are the held-out probe and are never scored; without one, unused NMEM
    paragraphs stand in for the perplexity probe only."""
    split = paragraphs.meta.get("split")
    heldout = [i for i in range(len(paragraphs)) if split is not None and split[i] == "heldout"][: args.probe]
    candidates = [i for i in range(len(paragraphs)) if split is None or split[i] != "heldout"]
    where = {pid: i for i, pid in enumerate(paragraphs.ids)}
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else []
    missing = [t for t in wanted if t not in where]
    if missing:
        raise UserError(f"target ids {missing[:5]} are not in the paragraph set")
    n_targets = len(wanted) or args.runs
    need = args.retain * n_targets
    candidates = [i for i in candidates if paragraphs.ids[i] not in set(wanted)]
    mem, nmem = _scan(
        model,
        paragraphs,
        candidates,
        (0 if wanted else n_targets) + args.probe,
        need + args.probe + (0 if heldout else args.probe),
        args,
    )
    cont = paragraphs.continuation_len
    if wanted:
        target_idx = [where[t] for t in wanted]
    elif len(mem) < n_targets:
        raise UserError(
            f"{len(mem)} paragraph(s) memorized (EM = {cont}), {n_targets} wanted: lower --runs or check the model"
        )
    else:
        target_idx, mem = mem[:n_targets], mem[n_targets:]
    if len(nmem) < need + 1:
        raise UserError(f"{len(nmem)} NMEM paragraphs (EM <= {args.nmem_max}); need {need} to retain and some to probe")
    never_seen = paragraphs.select(heldout) if heldout else None
    if not heldout:  # no held-out split in the paragraph set: unused NMEM paragraphs stand in for perplexity
        heldout = nmem[need + args.probe :][: args.probe] or nmem[need:][: args.probe]
    probe = probe_sets(
        model,
        paragraphs.select(mem[: args.probe]),
        paragraphs.select(nmem[need : need + args.probe]),
        paragraphs.select(heldout),
        batch_size=args.batch_size,
    )
    return paragraphs.select(target_idx), paragraphs.select(nmem[:need]), probe, never_seen


def run(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.retain < 1 or args.probe < 1:
        raise UserError("--runs, --retain and --probe must be at least 1")
    if args.curves and not args.calibrate:
        raise UserError("--curves draws the calibration traces: add --calibrate")
    if args.calibrate and (args.lr is not None or args.paper):
        raise UserError("--calibrate searches the learning rate itself: drop --lr / --paper")
    configs = _configs(args)
    if args.save is not None and (len(configs) != 1 or isinstance(configs[0], ReftConfig) or args.proxy):
        raise UserError(
            "--save writes the weights of ONE weight-editing run: drop --table, and LoReFT and --proxy change no "
            "weights"
        )
    model = model_from_args(args)
    if args.proxy is not None:
        proxy = _proxy(model, args)
        configs = [*configs, proxy] if args.table else [proxy]
    paragraphs = paragraphs_from_args(args, model)
    targets, retain, probe, never_seen = _pick(model, paragraphs, args)
    if never_seen is not None:
        never_seen = never_seen.select(range(min(len(targets), len(never_seen))))
    edit_targets = never_seen_edit = None
    if any(getattr(c, "method", None) == "edit" for c in configs):
        from interp.perturbation import prefix_perturbation

        edit_targets = prefix_perturbation(
            model, targets, samples_per_position=args.perturb_samples, seed=args.seed
        ).editing_targets
        if never_seen is not None and args.relearn_steps > 0:
            never_seen_edit = prefix_perturbation(
                model, never_seen, samples_per_position=args.perturb_samples, seed=args.seed
            ).editing_targets
    print(
        f"model {model_name(model)}: forgetting {len(targets)} paragraph(s) ({', '.join(targets.ids[:5])}"
        f"{', ...' if len(targets) > 5 else ''}), {args.retain} retain NMEM each; probes: {len(probe.mem)} MEM, "
        f"{len(probe.nmem)} NMEM, {len(probe.heldout)} held-out"
    )
    saved = {}

    def keep_for_save(result) -> None:
        if args.save is not None:
            saved["result"] = result

    def calibrate_row(config):  # each row's rate found just before its runs (one row's models held at a time)
        def show(lr: float, em: float) -> None:
            print(f"  calibrating {config.label}: lr {lr:.2g} -> mean target EM {em:.1f}", flush=True)

        search = calibrate(
            model,
            targets,
            retain,
            config,
            level=args.level,
            edit_targets=edit_targets,
            retain_per_run=args.retain,
            on_try=show,
            tolerance=args.tolerance,
            probe=probe,
        )
        print(f"  {search.label}: {search.describe()}", flush=True)
        return search

    relearn = _relearn(args)
    table = unlearning_table(
        model,
        targets,
        retain,
        configs,
        probe,
        edit_targets=edit_targets,
        retain_per_run=args.retain,
        relearn_config=relearn,
        on_run=keep_for_save,
        calibrate=calibrate_row if args.calibrate else None,
        heldout=never_seen,
        heldout_edit_targets=never_seen_edit,
    )
    print(table.format())
    print(
        "EM columns are means over runs; NMEM EM is measured against the original model's own greedy continuation "
        f"({paragraphs.continuation_len} = unchanged); ppl = held-out perplexity; 'changed' = weights whose value moved."
    )
    if args.save is not None:
        result = saved["result"]
        save_model(result.model, args.save)
        write_json(args.save / SAVED_RUN, {"source": model_name(model), **result.to_json()})
        print(f"wrote the edited model to {args.save} (check: interp memorized --model {args.save})")
    if args.json:
        write_json(args.json, {"model": model_name(model), **table.to_json()})
        print(f"wrote {args.json}")
    if args.html:
        from interp.views.unlearning import figure_unlearning_table

        figure_unlearning_table(table).write_html(args.html, include_plotlyjs=True, full_html=True)
        print(f"wrote {args.html}")
    if args.curves:
        from interp.views.unlearning import figure_forgetting_curves

        figure_forgetting_curves(table).write_html(args.curves, include_plotlyjs=True, full_html=True)
        print(f"wrote {args.curves}")
    return 0
