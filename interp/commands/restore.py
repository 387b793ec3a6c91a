"""`interp restore`: put the original model's MLP coefficients, attention outputs or value vectors back
into an unlearned model, a window of layers at a time, and measure how much forgotten text returns."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interp.commands import common, options_cli
from interp.commands.unlearn import SAVED_RUN
from interp.errors import UserError
from interp.options import RESTORE, RestoreOptions


def configure(p) -> None:
    with common.command_flags(p, run):
        p.add_argument(
            "--unlearned",
            type=Path,
            default=None,
            metavar="DIR",
            help="the unlearned model's folder, from `interp unlearn --save DIR` (required; the same flag as in audit)",
        )
        options_cli.add_alias(p, "--edited", "--unlearned")
        p.add_argument(
            "--targets",
            default=None,
            metavar="IDS",
            help="comma-separated ids of the forgotten paragraphs (default: those in DIR/unlearning.json, "
            "else every MEM paragraph whose EM the edit lowered)",
        )
        options_cli.add_option_flags(p, RestoreOptions, title="what is restored")
        common.add_output_args(
            p,
            json="write the results here (default: not written)",
            html="write the restoration heatmap here, offline HTML (default: none)",
        )


def run(args: argparse.Namespace) -> int:
    o = options_cli.options_from(args, RESTORE)
    if args.unlearned is None:  # not argparse's required=: the old spelling --edited must satisfy it too
        raise UserError("restore needs --unlearned DIR, the folder `interp unlearn --save DIR` wrote")
    if not (args.unlearned / "config.json").exists():
        raise UserError(
            f"--unlearned {args.unlearned} is not a saved model folder (no config.json); make one with "
            "`interp unlearn --save DIR`"
        )
    common.checkpoint_folder(str(args.unlearned), "--unlearned")
    import torch

    from interp.metrics import score_paragraphs
    from interp.models import load_model, model_name
    from interp.restore import restoration

    original = common.model_from_args(args)
    edited = load_model(str(args.unlearned), device=args.device, dtype=args.dtype)
    paragraphs = common.paragraphs_from_args(args, original)
    if args.targets:
        ids = common.ids_in(args.targets)
    elif (args.unlearned / SAVED_RUN).exists():
        ids = json.loads((args.unlearned / SAVED_RUN).read_text())["target_ids"]
    else:
        before = score_paragraphs(original, paragraphs, args.batch_size).em
        after = score_paragraphs(edited, paragraphs, args.batch_size).em
        ids = [
            paragraphs.ids[i]
            for i in ((before == paragraphs.continuation_len) & (after < before)).nonzero().flatten().tolist()
        ]
        if not ids:
            raise UserError(
                "the edited model recites every MEM paragraph the original does: nothing was forgotten to restore"
            )
    targets = paragraphs.select(torch.tensor(common.indices_of(paragraphs, ids)))
    with common.stage(f"restoring layers into the unlearned model on {len(targets)} paragraph(s)", args.progress):
        result = restoration(
            original, edited, targets, width=o.width, experiments=o.experiments, batch_size=args.batch_size
        )
    print(
        f"original {model_name(original)} vs unlearned {args.unlearned}: {len(targets)} forgotten paragraph(s); "
        f"mean EM {result.em_original.float().mean():.2f} -> {result.em_edited.float().mean():.2f}, "
        f"NLL {result.nll_original.mean():.3f} -> {result.nll_edited.mean():.3f}"
    )
    print("fraction recovered when restoring layers [lo..hi] (EM / NLL / KRS):")
    print(f"  {'layers':>8} " + " ".join(f"{e:>22}" for e in result.experiments))
    for l, (lo, hi) in enumerate(result.windows):
        cells = [
            f"{result.em_recovered[e, l]:>6.2f} {result.nll_recovered[e, l]:>6.2f} {result.krs[e, l]:>6.2f}"
            for e in range(len(result.experiments))
        ]
        print(f"  {f'{lo}..{hi}':>8} " + " ".join(f"{c:>22}" for c in cells))
    if args.json:
        common.write_json_output(
            args.json,
            {
                "model": model_name(original),
                "edited": str(args.unlearned),
                "options": options_cli.options_record(args, o),
                **result.to_json(),
            },
        )
    if args.html:
        from interp.views.unlearning import figure_restoration

        common.write_figure(figure_restoration(result), args.html)
    return 0
