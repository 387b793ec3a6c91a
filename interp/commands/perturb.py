"""`interp perturb`: single-token prefix perturbation of MEM vs NMEM paragraphs, and editing targets."""

from __future__ import annotations

import argparse

from interp.commands import common, options_cli
from interp.constants import BATCH_SIZE
from interp.errors import UserError
from interp.options import PERTURB, PerturbOptions


def configure(p) -> None:
    with common.command_flags(p, run):
        options_cli.add_option_flags(
            p,
            PerturbOptions,
            rename={"reference": "--compare-to"},
            notes={"set_size": options_cli.SET_SIZE_NOTES["perturb"], "nmem_max": options_cli.NMEM_NOTE},
            title="the perturbation",
        )
        p.add_argument(
            "--save-targets",
            default=None,
            metavar="FILE",
            help="write the MEM paragraphs' editing targets here (JSONL, original prefix + new continuation) "
            "(default: not written)",
        )
        options_cli.add_alias(p, "--targets", "--save-targets")
        common.add_output_args(
            p,
            json="write the full results here (default: not written)",
            html="write a per-token sensitivity view here, offline (default: none)",
        )


def run(args: argparse.Namespace) -> int:
    o = options_cli.options_from(args, PERTURB)
    if o.samples < 1 or o.nmem_max < 0:
        raise UserError(f"--samples must be at least 1 and --nmem-max 0 or more, got {o.samples} and {o.nmem_max}")
    import torch

    from interp.memorization import choose_indices
    from interp.models import model_name
    from interp.perturbation import prefix_perturbation

    model = common.model_from_args(args)
    paragraphs = common.paragraphs_from_args(args, model)
    split = common.scored_split(model, paragraphs, args, o.nmem_max)
    mem, nmem = choose_indices(split, n_mem=o.set_size, n_nmem=o.set_size, seed=o.seed)
    if len(mem) == 0:
        raise UserError(
            f"no paragraph is memorized (EM = {paragraphs.continuation_len}): nothing to perturb; check the model and paragraph set"
        )
    chosen = paragraphs.select(torch.cat([mem, nmem]))
    print(
        f"model {model_name(model)}: perturbing {len(mem)} MEM and {len(nmem)} NMEM paragraphs, "
        f"{paragraphs.prefix_len} positions x {o.samples} samples each"
    )
    what = f"perturbing {len(chosen)} paragraphs x {paragraphs.prefix_len} positions x {o.samples} samples"
    with common.stage(what, args.progress):
        result = prefix_perturbation(
            model,
            chosen,
            samples_per_position=o.samples,
            seed=o.seed,
            reference=o.reference,
            batch_size=max(args.batch_size, BATCH_SIZE),
        )
    mem_res, nmem_res = result.select(torch.arange(len(mem))), result.select(torch.arange(len(mem), len(chosen)))
    print(f"{'':6} {'n':>4} {'mean EM drop / perturbed token':>31} {'mean NLL increase':>18}")
    for name, r in (("MEM", mem_res), ("NMEM", nmem_res)):
        if len(r.ids):
            print(
                f"{name:6} {len(r.ids):>4} {float(r.mean_em_drop.mean()):>31.2f} {float(r.nll_increase.mean()):>18.3f}"
            )
    print("(the paper, GPT-Neo 125M: MEM 12.19, NMEM 33.12)")
    print(f"MEM editing targets whose continuation changed: {int(mem_res.target_changed.sum())}/{len(mem_res.ids)}")
    if args.save_targets:
        common.wrote(
            args.save_targets, lambda path: mem_res.editing_targets.save_jsonl(path, tokenizer=model.tokenizer)
        )
    if args.json:
        common.write_json_output(
            args.json,
            {
                "model": model_name(model),
                "options": options_cli.options_record(args, o),
                "mem_ids": mem_res.ids,
                "nmem_ids": nmem_res.ids,
                "mem": mem_res.to_json(),
                "nmem": nmem_res.to_json(),
            },
        )
    if args.html:
        from interp.views.heads import offline_html, perturbation_view

        str_tokens = [model.to_str_tokens(row) for row in chosen.prefixes[: len(mem)]]
        common.write_page(args.html, offline_html(perturbation_view(mem_res, str_tokens), "prefix perturbation"))
    return 0
