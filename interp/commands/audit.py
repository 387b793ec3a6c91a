"""`interp audit`: is forgotten text really gone? Attack saved unlearned models (quantization, relearning,
restoration, perturbed prefixes), each attack with its controls, and score every target's residual
memorization (interp.audit); `--reference-retrained` adds a model retrained without the targets as a row."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from interp.audit.config import REFERENCE, AuditConfig
from interp.commands import common, options_cli
from interp.commands.unlearn import SAVED_RUN
from interp.constants import NMEM_MAX_EM
from interp.errors import UserError
from interp.options import option
from interp.unlearning.config import RETAIN_PER_RUN

if TYPE_CHECKING:
    from interp.data import Paragraphs


@dataclass(frozen=True)
class AuditSets:
    """The controls' paragraphs `interp audit` draws from the paragraph set: never-known text and the retain set."""

    n_never_known: int = option(32, "never-known paragraphs drawn")
    nmem_max: int = option(NMEM_MAX_EM, "never recited / retain: EM at most this")
    retain: int = option(
        RETAIN_PER_RUN,
        "relearn_retain text: the first N non-recited trained paragraphs, the set `interp unlearn` retains",
    )

    def __post_init__(self) -> None:
        if self.retain < 1 or self.n_never_known < 1:
            raise UserError("--retain and --n-never-known must be at least 1")


def configure(p) -> None:
    with common.command_flags(p, run, progress=False):
        p.add_argument(
            "--unlearned",
            action="append",
            required=True,
            help="an unlearned model folder from `interp unlearn --save DIR`, as DIR or NAME=DIR; repeat for several",
        )
        p.add_argument(
            "--targets",
            default=None,
            help="comma-separated ids of the forgotten paragraphs (default: DIR/unlearning.json)",
        )
        p.add_argument(
            "--never-known",
            type=Path,
            default=None,
            help="JSONL of paragraphs the model never recited (default: the paragraph set's held-out split, EM <= "
            "--nmem-max)",
        )
        p.add_argument(
            "--related",
            type=Path,
            default=None,
            help="JSONL of related text for relearn_related (default: the other paragraphs of each target's source "
            "document, from the paragraph set's 'source' field)",
        )
        p.add_argument(
            "--reference-retrained",
            default=None,
            help="a model retrained without the targets (a saved folder, or a spec such as testbed-reference): "
            f"scored under every attack as the row '{REFERENCE}', what a real forgetting should look like",
        )
        common.add_output_args(
            p,
            json="write the results here",
            html="write the method x attack recovery heatmap here (self-contained HTML)",
        )
    options_cli.add_option_flags(p, AuditSets, title="the controls' paragraphs")
    options_cli.add_option_flags(p, AuditConfig, skip=("batch_size",), title="attacks and budgets")


def _unlearned(specs: list[str]) -> dict[str, tuple[Path, dict | None]]:
    """NAME -> (folder, its unlearning.json or None); NAME defaults to the saved run's label, else the folder name."""
    out = {}
    for spec in specs:
        name, _, folder = spec.rpartition("=")
        path = Path(folder)
        if not (path / "config.json").exists():
            raise UserError(
                f"{path} is not a saved model folder (no config.json); make one with `interp unlearn --save DIR`"
            )
        saved = json.loads((path / SAVED_RUN).read_text()) if (path / SAVED_RUN).exists() else None
        name = name or (saved or {}).get("label") or path.name
        if name in out:
            name = f"{name} ({path.name})"
        out[name] = (path, saved)
    return out


def _targets(args, paragraphs: Paragraphs, saved: dict[str, tuple[Path, dict | None]]) -> Paragraphs:
    if args.targets:
        ids = common.ids_in(args.targets)
    else:
        lists = {tuple(s["target_ids"]) for _, s in saved.values() if s is not None}
        if len(lists) != 1 or any(s is None for _, s in saved.values()):
            raise UserError("the unlearned folders do not name one common set of forgotten paragraphs: pass --targets")
        ids = list(lists.pop())
    return paragraphs.select(common.indices_of(paragraphs, ids))


def _never_known(args, sets: AuditSets, original, paragraphs: Paragraphs, targets: Paragraphs, seed: int) -> Paragraphs:
    """--never-known FILE, else held-out paragraphs (never trained on) the original does not recite, seeded draw."""
    import torch

    from interp.memorization import heldout_indices, memorization_split

    if args.never_known is not None:
        return common.paragraphs_like(args.never_known, original, paragraphs)
    split = paragraphs.meta.get("split")
    if split is None:
        raise UserError("the paragraph set has no held-out split: pass --never-known FILE of text the model never saw")
    pool = paragraphs.select(
        [i for i, s in enumerate(split) if s == "heldout" and paragraphs.ids[i] not in targets.ids]
    )
    scored = memorization_split(original, pool, batch_size=args.batch_size, nmem_max=sets.nmem_max, n_examples=0)
    held = heldout_indices(scored)
    keep = held[scored.scores.em[held] <= sets.nmem_max]
    if len(keep) == 0:
        raise UserError("no held-out paragraph is free of recitation: pass --never-known FILE")
    gen = torch.Generator().manual_seed(seed)
    return pool.select(keep[torch.randperm(len(keep), generator=gen)[: sets.n_never_known]].sort().values)


def _retain(args, sets: AuditSets, original, paragraphs: Paragraphs, exclude: set[str]) -> Paragraphs:
    """The first --retain trained, non-recited paragraphs in file order (what `interp unlearn` retains)."""
    from interp.metrics import score_paragraphs

    split = paragraphs.meta.get("split")
    candidates = [
        i for i, pid in enumerate(paragraphs.ids) if pid not in exclude and (split is None or split[i] != "heldout")
    ]
    chosen: list[int] = []
    for start in range(0, len(candidates), 256):
        idx = candidates[start : start + 256]
        em = score_paragraphs(original, paragraphs.select(idx), batch_size=args.batch_size).em
        chosen += [i for i, e in zip(idx, em.tolist()) if e <= sets.nmem_max]
        if len(chosen) >= sets.retain:
            break
    if len(chosen) < sets.retain:
        raise UserError(f"{len(chosen)} non-recited paragraphs to retain, {sets.retain} wanted: lower --retain")
    return paragraphs.select(chosen[: sets.retain])


def audit_sets(args: argparse.Namespace) -> AuditSets:
    """The never-known and retain paragraphs the flags describe."""
    return options_cli.options_from(args, AuditSets())


def audit_config(args: argparse.Namespace) -> AuditConfig:
    """The attacks and budgets the flags describe."""
    config = options_cli.options_from(args, AuditConfig(batch_size=args.batch_size))
    if not config.shifts or min(config.shifts) < 1:
        raise UserError(f"--shifts must be positive numbers of tokens, got {' '.join(map(str, config.shifts))}")
    return config


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    sets = audit_sets(args)
    config = audit_config(args)
    saved = _unlearned(args.unlearned)
    from interp.audit.audit import audit
    from interp.models import load_model, model_name

    original = common.model_from_args(args)
    paragraphs = common.paragraphs_from_args(args, original)
    targets = _targets(args, paragraphs, saved)
    never_known = _never_known(args, sets, original, paragraphs, targets, config.seed)
    retain = _retain(args, sets, original, paragraphs, set(targets.ids) | set(never_known.ids))
    related = None if args.related is None else common.paragraphs_like(args.related, original, paragraphs)
    models = {name: load_model(str(path), device=args.device, dtype=args.dtype) for name, (path, _) in saved.items()}
    if args.reference_retrained:
        models[REFERENCE] = load_model(args.reference_retrained, device=args.device, dtype=args.dtype)
    print(
        f"original {model_name(original)}; auditing {', '.join(models)} on {len(targets)} target(s); "
        f"{len(never_known)} never-known, {len(retain)} retain paragraphs; attacks {', '.join(config.attacks)}"
    )
    result = audit(
        original, models, targets, never_known, retain=retain, related=related, pool=paragraphs, config=config
    )
    seconds = time.perf_counter() - start
    print(result.format())
    print(
        f"budgets: int4 groups of {config.group_size} and 128, zero-point, NF4 blocks of 64; relearning {config.relearn_steps} steps at lr "
        f"{config.relearn_lr:g}; {config.perturb_k} prefix edits; shifts {config.shifts}; {seconds:.0f} s in all"
    )
    if args.json:
        common.write_json_output(
            args.json,
            {
                "model": model_name(original),
                "unlearned": {name: str(path) for name, (path, _) in saved.items()},
                "options": options_cli.options_record(args, sets, config),
                "seconds": seconds,
                **result.to_json(),
            },
        )
    if args.html:
        from interp.views.audit import figure_audit

        common.write_figure(figure_audit(result), args.html)
    return 0
