"""`interp validate-locator`: the injection benchmark on the user's own model (a copy of it)."""

from __future__ import annotations

import argparse
import sys

from interp.commands.common import add_model_args, add_paragraph_args, model_from_args, paragraphs_from_args
from interp.errors import UserError
from interp.io import write_json, write_text_atomic
from interp.locate import HEAD_METHODS, NEURON_METHODS
from interp.locator_validation import RECALL_FRACTION, validate_locator
from interp.models import model_name
from interp.testbed import shipped_unigram_counts


def _head(text: str) -> tuple[int, int]:
    try:
        layer, head = (int(x) for x in text.split("."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"head {text!r} must be LAYER.HEAD, e.g. 1.2") from None
    return layer, head


def register(sub) -> None:
    p = sub.add_parser(
        "validate-locator",
        help="force paragraphs through known heads / neurons of a copy and see whether each locator method finds them",
    )
    add_model_args(p)
    add_paragraph_args(p)
    p.add_argument(
        "--heads",
        nargs="+",
        type=_head,
        default=None,
        metavar="L.H",
        help="heads to inject through (default: one in a lower, a middle and an upper layer)",
    )
    p.add_argument(
        "--neurons",
        action="store_true",
        help="also run MemPi's INJ: inject through random MLP neurons, report each neuron method's Recall@k",
    )
    p.add_argument(
        "--methods", nargs="+", choices=HEAD_METHODS, default=list(HEAD_METHODS), help="head methods (default: all)"
    )
    p.add_argument(
        "--neuron-methods",
        nargs="+",
        choices=NEURON_METHODS,
        default=None,
        help="neuron methods (default: activation, zero_out, integrated_gradients, hard_concrete, slimming)",
    )
    p.add_argument("--n-inject", type=int, default=4, help="paragraphs forced through each head (default 4)")
    p.add_argument(
        "--neuron-fraction",
        type=float,
        default=RECALL_FRACTION,
        help=f"share of MLP neurons trained (default {RECALL_FRACTION}: then Recall@k at k = the injected size is "
        "MemPi's Recall@0.5%%)",
    )
    p.add_argument(
        "--set-size",
        dest="max_paragraphs",
        type=int,
        default=8,
        help="MEM and NMEM paragraphs each for the locator's costly methods (default 8)",
    )
    p.add_argument("--candidates", type=int, default=8, help="heads the attribution screen passes to the exact methods")
    p.add_argument("--max-steps", type=int, default=400, help="injection steps at most (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the full result here")
    p.add_argument("--html", default=None, help="write an offline page with the section 'How far to trust the locator'")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.n_inject < 1 or args.max_steps < 1:
        raise UserError("--n-inject and --max-steps must be at least 1")
    model = model_from_args(args)
    paragraphs = paragraphs_from_args(args, model)
    kwargs = {} if args.neuron_methods is None else {"neuron_methods": tuple(args.neuron_methods)}
    result = validate_locator(
        model,
        paragraphs,
        heads=args.heads,
        neurons=args.neurons,
        methods=tuple(args.methods),
        n_inject=args.n_inject,
        neuron_fraction=args.neuron_fraction,
        unigram_counts=shipped_unigram_counts(model),
        max_paragraphs=args.max_paragraphs,
        candidates=args.candidates,
        max_steps=args.max_steps,
        seed=args.seed,
        batch_size=args.batch_size,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        **kwargs,
    )
    print(f"model {model_name(model)}: {len(result.heads)} injected head(s), {result.seconds:.0f} s in all")
    for h in result.heads:
        inj = h.injection
        print(
            f"head L{h.layer}H{h.head}: injected {len(inj.ids)} paragraphs in {inj.steps} steps ({inj.seconds:.0f} s), "
            f"recited {inj.n_recited}/{len(inj.ids)}, held-out ppl {inj.heldout_ppl_before:.2f} -> {inj.heldout_ppl_after:.2f}; "
            f"combined rank {h.combined_rank}" + ("" if h.in_screen is None else f", in screen: {h.in_screen}")
        )
    print("rank of each injected head (overall/within its layer), mean margin to the best other head, mean seconds:")
    print(
        f"{'method':>22} "
        + " ".join(f"{'L%dH%d' % (h.layer, h.head):>8}" for h in result.heads)
        + f" {'margin(sd)':>10} {'seconds':>8}"
    )
    for m in result.methods:
        ranks = " ".join(f"{f'{h.ranks[m]}/{h.layer_ranks[m]}':>8}" for h in result.heads)
        margin = sum(h.margins_z[m] for h in result.heads) / len(result.heads)
        seconds = sum(h.seconds[m] for h in result.heads) / len(result.heads)
        print(f"{m:>22} {ranks} {margin:>10.2f} {seconds:>8.1f}")
    choice, reason = result.recommended_rank_by("head")
    print(f"combine for heads: {', '.join(choice) or 'none'} ({reason})")
    if result.neurons is not None:
        n = result.neurons
        print(
            f"neurons: {len(n.injection.units)} injected ({n.fraction:.2%}), recited {n.injection.n_recited}/{len(n.injection.ids)}, "
            f"held-out ppl {n.injection.heldout_ppl_before:.2f} -> {n.injection.heldout_ppl_after:.2f}"
        )
        print(f"{'method':>22} {'R@inj':>7} {'R@0.5%':>7} {'seconds':>8}")
        for m, r in n.recall.items():
            print(f"{m:>22} {r['injected']:>7.3f} {r['0.5%']:>7.3f} {n.seconds[m]:>8.1f}")
        print(f"{'random':>22} {n.fraction:>7.3f} {RECALL_FRACTION:>7.3f}")
        choice, reason = result.recommended_rank_by("neuron")
        print(f"combine for neurons: {', '.join(choice) or 'none'} ({reason})")
    if args.json:
        write_json(args.json, result.to_json())
        print(f"wrote {args.json}")
    if args.html:
        from interp.views.locator import trust_section
        from interp.views.report_html import report_html

        page = report_html(
            f"How far to trust the locator on {model_name(model)}",
            {"model": model_name(model)},
            [trust_section(result)],
        )
        write_text_atomic(args.html, page)
        print(f"wrote {args.html}")
    return 0
