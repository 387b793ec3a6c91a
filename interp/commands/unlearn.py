"""`interp unlearn`: fine-tune only selected weights (or a LoReFT intervention) to forget MEM paragraphs.

One configuration, or with --table the paper's Figure 5 grid plus the GA / GradDiff / NPO and
LoReFT rows, each run on --runs MEM targets (1 target + --retain NMEM paragraphs per run).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.commands.common import (
    add_model_args,
    add_output_args,
    add_paragraph_args,
    add_progress_arg,
    check_output_folder,
    ids_in,
    indices_of,
    model_from_args,
    paragraphs_from_args,
    stage,
    write_figure,
    write_json_output,
)
from interp.commands.options_cli import (
    NMEM_NOTE,
    add_option_flags,
    config_options,
    given_options,
    options_from,
    options_record,
    parse_head,
    with_options,
)
from interp.constants import NMEM_MAX_EM
from interp.errors import UserError
from interp.options import option
from interp.unlearning.config import (
    RETAIN_PER_RUN,
    SELECTIONS,
    MatchedForgetting,
    ProxyConfig,
    ReftConfig,
    RelearnConfig,
    UnlearnConfig,
)

if TYPE_CHECKING:
    from interp.data import Paragraphs
    from interp.unlearning.proxy import ProxyMethod
    from interp.unlearning.sets import UnlearningSets

SAVED_RUN = "unlearning.json"  # written beside a saved edited model: which targets it forgot, and how
SHARED = ("method", "lr", "steps", "weight_decay", "nll_weight", "retain_weight", "npo_beta", "seed")
"""The run's flags that also set LoReFT's and --proxy's small model's."""
TRAINING = ("lr", "steps", "weight_decay", "nll_weight", "retain_weight", "npo_beta", "decay_outside_mask")
"""What the --table rows take from the flags beside --fraction (and --seed for the baselines)."""


@dataclass(frozen=True)
class UnlearnSets:
    """The paragraphs `interp unlearn` runs on: its targets, each run's retain set and the probes."""

    runs: int = option(1, "number of MEM targets, one run each")
    retain: int = option(RETAIN_PER_RUN, "NMEM paragraphs in each run's KL / retain term, as many as the paper")
    probe: int = option(50, "MEM, NMEM and held-out paragraphs for collateral damage, at most")
    nmem_max: int = option(NMEM_MAX_EM, "NMEM: EM at most this")
    perturb_samples: int = option(4, "edit: random tokens per prefix position when finding the new continuation")

    def __post_init__(self) -> None:
        if self.runs < 1 or self.retain < 1 or self.probe < 1 or self.perturb_samples < 1:
            raise UserError("--runs, --retain, --probe and --perturb-samples must be at least 1")
        if self.nmem_max < 0:
            raise UserError(f"--nmem-max must be 0 or more, got {self.nmem_max}")


CLASSES = (UnlearnSets, MatchedForgetting, UnlearnConfig, ReftConfig, RelearnConfig, ProxyConfig)
"""The options classes of `interp unlearn`, each a section of its --config file and of its --json "options"."""


def _preset(paper: bool) -> UnlearnConfig:
    """The run before any flag; with --paper the authors' code (decay outside the mask, their weight decay)."""
    from interp.conventions import PAPER

    if paper:
        return UnlearnConfig(decay_outside_mask=True, weight_decay=PAPER.weight_decay)
    return UnlearnConfig()


def configure(p) -> None:
    add_model_args(p)
    add_paragraph_args(p)
    p.add_argument(
        "--select",
        choices=SELECTIONS + ("reft",),
        default=UnlearnConfig.select,
        help="weights to tune: top |gradient| fraction, a random mask of that size, all, or a LoReFT intervention "
        f"(default: {UnlearnConfig.select})",
    )
    p.add_argument(
        "--head",
        type=parse_head,
        default=None,
        metavar="HEAD",
        help="only this attention head's weights, as L1H6 or 1.6 (default: every head); not with --select reft, "
        "which intervenes on the residual stream (--reft-layer), nor with --table",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="compare at matched forgetting: for each run, the smallest learning rate (log grid 1e-5 .. 1e-1, then "
        "log-rate bisection to --tolerance) that brings EVERY target's EM to --level; the table lists the rate each "
        "row needed; the probes are scored at the rate chosen and the highest below it (every rate tried with "
        "--curves or --probe-points every: the forgetting curves) (default: off: "
        "one run at --lr, which may forget nothing; a warning says so)",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="the authors' code conventions: --decay-outside-mask, their weight decay, rate and steps (default: the "
        "toolkit's, see the README's conventions table; not with --calibrate)",
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
        "an extra row (default: off)",
    )
    p.add_argument(
        "--targets",
        default=None,
        metavar="IDS",
        help="comma-separated ids of the MEM paragraphs to forget (default: the first --runs)",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="run the paper's Figure 5 grid (unlearn / edit x all / top / random) plus GA, GradDiff, NPO and LoReFT "
        "(default: one run)",
    )
    add_output_args(
        p,
        json="write the results here (default: not written)",
        html="write the table figure here, offline HTML (default: none)",
    )
    p.add_argument(
        "--curves",
        default=None,
        metavar="FILE",
        help="--calibrate: write the forgetting curves (collateral damage vs target EM along each rate trace) here "
        "(default: none)",
    )
    p.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the edited model here, one weight-editing run only (default: not saved)",
    )
    add_progress_arg(p)
    add_option_flags(
        p,
        UnlearnSets,
        notes={
            "probe": "interp report probes 30 of each, to keep the whole pipeline's time down",
            "nmem_max": NMEM_NOTE,
        },
        title="targets, retain sets and probes",
    )
    add_option_flags(p, MatchedForgetting, title="--calibrate: matched forgetting")
    add_option_flags(
        p,
        UnlearnConfig,
        skip=("select", "head"),
        notes={
            "steps": "the paper's, to go with the default --lr; interp report's --unlearn-steps is the toolkit's 10, "
            "used with a calibrated rate"
        },
        title="the run; --method, --lr, --steps, --weight-decay and --seed also set LoReFT's (which otherwise keeps "
        f"its own lr {ReftConfig.lr:g}, {ReftConfig.steps} steps, weight decay {ReftConfig.weight_decay:g}) and "
        "--proxy's small model's",
    )
    add_option_flags(
        p, ReftConfig, only=("layer", "rank"), prefix="reft-", title="--select reft: LoReFT", config_also=SHARED
    )
    add_option_flags(p, RelearnConfig, prefix="relearn-", title="relearning attack after each run (0 steps: none)")
    add_option_flags(p, ProxyConfig, only=("alpha",), title="--proxy", config_also=("unlearn",))
    p.set_defaults(run=run)


def _sets(args: argparse.Namespace) -> UnlearnSets:
    """The targets, retain sets and probes the flags describe."""
    return options_from(args, UnlearnSets())


def _matched(args: argparse.Namespace) -> MatchedForgetting | None:
    """The calibration --calibrate asks for (None without it); --curves scores the probes at every rate tried
    unless --probe-points says otherwise."""
    if not args.calibrate:
        return None
    matched = _calibration(args)
    if args.curves and "probe_points" not in given_options(args, MatchedForgetting):
        matched = replace(matched, probe_points="every")
    return matched


def _calibration(args: argparse.Namespace) -> MatchedForgetting:
    """The matched forgetting the flags describe, whether or not --calibrate asks for it."""
    return options_from(args, MatchedForgetting())


def _weights(args: argparse.Namespace) -> UnlearnConfig:
    """The weight-editing run the generated flags describe, over the preset (--paper: decay outside the mask)."""
    return options_from(args, _preset(args.paper))


def _shared(args: argparse.Namespace) -> dict:
    """The flags given that every kind of run takes: weight editing, LoReFT and the proxy's small model (--config
    sets each run's own: its ReftConfig and ProxyConfig sections hold them, as the --json output records them)."""
    return {k: v for k, v in given_options(args, UnlearnConfig, config=False).items() if k in SHARED}


def _reft(args: argparse.Namespace) -> ReftConfig:
    """The LoReFT run the flags describe: its own layer and rank, the run's shared training flags."""
    given = config_options(args, ReftConfig) | _shared(args) | given_options(args, ReftConfig, config=False)
    return with_options(ReftConfig(), given, prefix="reft-")


def _configs(args: argparse.Namespace) -> list:
    """The single configuration the flags describe, or the --table grid."""
    weights, reft = _weights(args), _reft(args)
    if args.table:
        from interp.unlearning.experiments import paper_configs

        training = {k: getattr(weights, k) for k in TRAINING}
        grid = [replace(c, **training) for c in paper_configs(fraction=weights.fraction)]
        grid += [
            UnlearnConfig(method=m, fraction=weights.fraction, seed=weights.seed, **training)
            for m in ("ga", "graddiff", "npo")
        ]
        return grid + [replace(reft, method="unlearn")]
    if args.select == "reft":
        return [reft]
    if args.head is None:
        return [replace(weights, select=args.select)]
    layer, head = args.head
    return [replace(weights, select=args.select, layers=(layer,), head=head)]


def _relearn(args: argparse.Namespace) -> RelearnConfig | None:
    """The relearning attack the flags describe (None: --relearn-steps 0)."""
    given = given_options(args, RelearnConfig)
    if given.get("steps", RelearnConfig.steps) <= 0:
        return None
    return with_options(RelearnConfig(), given, prefix="relearn-")


def unlearn_options(args: argparse.Namespace) -> dict[str, Any]:
    """Every options object the flags and --config describe, by class name (RelearnConfig None: 0 steps)."""
    options = (_sets(args), _calibration(args), _weights(args), _reft(args), _relearn(args), _proxy_config(args))
    return {cls.__name__: o for cls, o in zip(CLASSES, options)}


def options_json(args: argparse.Namespace) -> dict[str, Any]:
    """What the --json output records under "options", for --config to read back."""
    options = unlearn_options(args)
    record = options_record(args, *(o for o in options.values() if o is not None))
    record["ProxyConfig"]["unlearn"] = {k: getattr(options["ProxyConfig"].unlearn, k) for k in SHARED}
    return record | ({} if options["RelearnConfig"] else {"RelearnConfig": {"steps": 0}})


def _proxy_config(args: argparse.Namespace, small: str | None = None) -> ProxyConfig:
    """The proxy's options the flags describe (its small model `small`, when known): its strength, and its small
    model's run, which takes the flags every kind of run takes."""
    preset = ProxyConfig() if small is None else ProxyConfig(small=small)
    given = config_options(args, ProxyConfig) | given_options(args, ProxyConfig, config=False)
    run = {k: tuple(v) if isinstance(v, list) else v for k, v in given.pop("unlearn", {}).items()} | _shared(args)
    config = with_options(preset, given)
    return replace(config, unlearn=replace(config.unlearn, **run))


def _proxy(model, args: argparse.Namespace) -> ProxyMethod:
    """The decoding-time row --proxy describes, its small model loaded."""
    from interp.models import load_model, model_name
    from interp.unlearning.proxy import ProxyMethod, small_model_spec

    spec = small_model_spec(model, args.proxy)
    if spec is None:
        raise UserError(
            f"--proxy needs a small model with {model_name(model)}'s tokenizer (the testbed's companion serves only "
            "the testbed): pass --proxy SMALL_MODEL"
        )
    if _weights(args).method == "edit":
        raise UserError("--proxy unlearns the small model with unlearn, ga, graddiff or npo: change --method")
    return ProxyMethod(load_model(spec, device=args.device, dtype=args.dtype), _proxy_config(args, spec))


def _scan(
    model, paragraphs: Paragraphs, candidates: list[int], want_mem: int, want_nmem: int, nmem_max: int, args
) -> tuple[list[int], list[int]]:
    """MEM and NMEM indices among `candidates`, scored in file order only until both quotas are met."""
    from interp.metrics import score_paragraphs

    mem, nmem = [], []
    chunk = max(args.batch_size, 256)
    for start in range(0, len(candidates), chunk):
        idx = candidates[start : start + chunk]
        em = score_paragraphs(model, paragraphs.select(idx), batch_size=args.batch_size).em
        mem += [i for i, e in zip(idx, em.tolist()) if e == paragraphs.continuation_len]
        nmem += [i for i, e in zip(idx, em.tolist()) if e <= nmem_max]
        if len(mem) >= want_mem and len(nmem) >= want_nmem:
            break
    return mem, nmem


def _pick(model, paragraphs: Paragraphs, sets: UnlearnSets, args, *, edit: bool, relearn: bool) -> UnlearningSets:
    """Targets (given ids, or the first --runs MEM), retain NMEM, the probes, the never-seen paragraphs for
    relearning control (b), and edit targets when an edit row runs (`interp.unlearning.sets`). Paragraphs of
    a 'heldout' split (the testbed's never-seen text) are never scored; without one, unused NMEM paragraphs
    stand in for the perplexity probe only."""
    from interp.unlearning.sets import unlearning_sets

    split = paragraphs.meta.get("split")
    heldout = [i for i in range(len(paragraphs)) if split is not None and split[i] == "heldout"]
    candidates = [i for i in range(len(paragraphs)) if split is None or split[i] != "heldout"]
    wanted = ids_in(args.targets) if args.targets else []
    target_idx = indices_of(paragraphs, wanted)
    n_targets = len(wanted) or sets.runs
    need = sets.retain * n_targets
    candidates = [i for i in candidates if paragraphs.ids[i] not in set(wanted)]
    mem, nmem = _scan(
        model,
        paragraphs,
        candidates,
        (0 if wanted else n_targets) + sets.probe,
        need + sets.probe + (0 if heldout else sets.probe),
        sets.nmem_max,
        args,
    )
    cont = paragraphs.continuation_len
    if not wanted and len(mem) < n_targets:
        raise UserError(
            f"{len(mem)} paragraph(s) memorized (EM = {cont}), {n_targets} wanted: lower --runs or check the model"
        )
    if not wanted:
        target_idx, mem = mem[:n_targets], mem[n_targets:]
    if len(nmem) < need + 1:
        raise UserError(f"{len(nmem)} NMEM paragraphs (EM <= {sets.nmem_max}); need {need} to retain and some to probe")
    return unlearning_sets(
        model,
        paragraphs.select(target_idx),
        paragraphs.select(mem),
        paragraphs.select(nmem),
        paragraphs.select(heldout) if heldout else None,
        retain_per_run=sets.retain,
        probe=sets.probe,
        batch_size=args.batch_size,
        relearn=relearn,
        edit=edit,
        perturb_samples=sets.perturb_samples,
        seed=_weights(args).seed,
    )


def nothing_forgotten(table, matched: MatchedForgetting | None) -> list[str]:
    """One line per row of `table` whose runs left every target's EM where it was, naming --calibrate (empty when
    the rates were calibrated: the calibration already says which rows reached the level)."""
    if matched is not None:
        return []
    before = table.before["target_em"]
    return [
        f"{label}: no target was forgotten (mean target EM {after['target_em']:.1f}, as before) at lr "
        f"{config.get('lr', float('nan')):g}: pass --calibrate to find the rate that forgets, or raise --lr"
        for label, config, after in zip(table.labels, table.configs, table.after)
        if after["target_em"] >= before
    ]


def run(args: argparse.Namespace) -> int:
    sets, matched = _sets(args), _matched(args)
    if args.curves and not args.calibrate:
        raise UserError("--curves draws the calibration traces: add --calibrate")
    if args.calibrate and ("lr" in given_options(args, UnlearnConfig, config=False) or args.paper):
        raise UserError("--calibrate searches the learning rate itself: drop --lr / --paper")
    if args.head is not None and (args.select == "reft" or args.table):
        raise UserError(
            "--head picks one head's weights to tune: --select reft intervenes on the residual stream instead "
            "(choose its layer with --reft-layer) and --table runs its own grid; drop --head"
        )
    if args.save is not None:
        check_output_folder(args.save, "--save")
    configs, relearn = _configs(args), _relearn(args)
    if args.save is not None and (len(configs) != 1 or isinstance(configs[0], ReftConfig) or args.proxy):
        raise UserError(
            "--save writes the weights of ONE weight-editing run: drop --table, and LoReFT and --proxy change no "
            "weights"
        )
    from interp.io import write_json
    from interp.models import model_name, save_model
    from interp.unlearning.experiments import unlearning_table

    model = model_from_args(args)
    if args.proxy is not None:
        proxy = _proxy(model, args)
        configs = [*configs, proxy] if args.table else [proxy]
    paragraphs = paragraphs_from_args(args, model)
    edit = any(getattr(c, "method", None) == "edit" for c in configs)
    with stage(f"choosing targets, retain sets and probes among {len(paragraphs)} paragraphs", args.progress):
        chosen = _pick(model, paragraphs, sets, args, edit=edit, relearn=relearn is not None)
    targets, probe = chosen.targets, chosen.probe
    print(
        f"model {model_name(model)}: forgetting {len(targets)} paragraph(s) ({', '.join(targets.ids[:5])}"
        f"{', ...' if len(targets) > 5 else ''}), {sets.retain} retain NMEM each; probes: {len(probe.mem)} MEM, "
        f"{len(probe.nmem)} NMEM, {len(probe.heldout)} held-out"
    )
    saved = {}

    def keep_for_save(result) -> None:
        if args.save is not None:
            saved["result"] = result

    def show_try(config, lr: float, em: float) -> None:
        print(f"  calibrating {config.label}: lr {lr:.2g} -> mean target EM {em:.1f}", flush=True)

    def show_search(search) -> None:
        print(f"  {search.label}: {search.describe()}", flush=True)

    what = f"unlearning: {len(configs)} configuration(s) x {len(targets)} target(s)"
    with stage(what, args.progress and matched is None):  # --calibrate prints each rate it tries instead
        table = unlearning_table(
            model,
            configs=configs,
            **chosen.table_arguments(),
            relearn_config=relearn,
            on_run=keep_for_save,
            calibrate=matched,  # each row's rate found just before its runs (one row's models held at a time)
            on_try=show_try,
            on_calibrated=show_search,
            decay_control=bool(args.table),  # the grid has all-weights rows; a single run (and --save) has no control
        )
    print(table.format())
    for line in nothing_forgotten(table, matched):
        print(f"interp: warning: {line}", file=sys.stderr)
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
        write_json_output(args.json, {"model": model_name(model), "options": options_json(args), **table.to_json()})
    if args.html:
        from interp.views.unlearning import figure_unlearning_table

        write_figure(figure_unlearning_table(table), args.html)
    if args.curves:
        from interp.views.unlearning import figure_forgetting_curves

        write_figure(figure_forgetting_curves(table), args.curves)
    return 0
