"""`interp validate-locator`: the injection benchmark on the user's own model (a copy of it)."""

from __future__ import annotations

import argparse
import sys

from interp.commands.common import add_model_args, add_paragraph_args, model_from_args, paragraphs_from_args
from interp.errors import UserError
from interp.io import write_json, write_text_atomic
from interp.locator.injection import LR_GRID, SCHEDULES
from interp.locator.ranking import HEAD_METHODS, NEURON_METHODS
from interp.locator.validation import HEAD_LR, MAX_STEPS, RECALL_FRACTION, SCHEDULE, validate_locator
from interp.models import model_name
from interp.testbed import shipped_unigram_counts


def _head(text: str) -> tuple[int, int]:
    try:
        layer, head = (int(x) for x in text.split("."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"head {text!r} must be LAYER.HEAD, e.g. 1.2") from None
    return layer, head


def _rate(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lr {text!r} must be a number or 'auto'") from None


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
        help="cap on paragraphs per set (MEM / NMEM) for the locator's costly methods (default 8)",
    )
    p.add_argument("--candidates", type=int, default=8, help="heads the attribution screen passes to the exact methods")
    p.add_argument(
        "--max-steps",
        type=int,
        default=MAX_STEPS,
        help=f"injection step budget; it stops as soon as every paragraph is recited (default {MAX_STEPS})",
    )
    p.add_argument(
        "--lr",
        dest="head_lr",
        type=_rate,
        default=HEAD_LR,
        help=f"head injection rate, or 'auto': probe {', '.join(map(str, LR_GRID))} on this model's loss and "
        f"keep the best (default {HEAD_LR})",
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=SCHEDULE,
        help=f"head injection rate schedule (cosine: warm-up, then decay to a tenth; default {SCHEDULE})",
    )
    p.add_argument(
        "--with-mlp",
        action="store_true",
        help="inject through the head AND its layer's MLP (more capacity; the answer is then no longer one head)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="repeat the benchmark per seed (own paragraphs, heads, neurons each), e.g. 3 4 5 to validate on seeds "
        "other than those the settings were chosen on (default: --seed)",
    )
    p.add_argument("--json", default=None, help="write the full result here")
    p.add_argument("--html", default=None, help="write an offline page with the section 'How far to trust the locator'")
    p.set_defaults(run=run)


def _r(rank: int | None) -> str:
    return "-" if rank is None else str(rank)


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
        head_lr=args.head_lr,
        schedule=args.schedule,
        with_mlp=args.with_mlp,
        seed=args.seed,
        seeds=tuple(args.seeds) if args.seeds else None,
        batch_size=args.batch_size,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        **kwargs,
    )
    print(
        f"model {model_name(model)}: {len(result.heads)} injected head(s) over seed(s) "
        f"{' '.join(map(str, result.seeds))}, {result.seconds:.0f} s in all"
    )
    for h in result.heads:
        inj = h.injection
        print(
            f"seed {h.seed} head L{h.layer}H{h.head}: injected {len(inj.ids)} paragraphs in {inj.steps} steps at rate "
            f"{inj.lr:g} ({inj.seconds:.0f} s), recited {inj.n_recited}/{len(inj.ids)}, held-out ppl "
            f"{inj.heldout_ppl_before:.2f} -> {inj.heldout_ppl_after:.2f}; combined rank {h.shown(h.combined_rank)}"
            + ("" if h.in_screen is None or not h.evidence else f", in screen: {h.in_screen}")
        )
    used = len(result.usable_heads())
    print(
        "rank of each injected head (overall/within its layer; 'not evidence': the injection failed; "
        "'-': outside the screen), mean rank over the "
        f"{used} injection(s) that worked, mean margin to the best other head, mean seconds:"
    )
    print(
        f"{'method':>22} "
        + " ".join(f"{'s%dL%dH%d' % (h.seed, h.layer, h.head):>12}" for h in result.heads)
        + f" {'mean rank':>9} {'margin(sd)':>10} {'seconds':>8}"
    )
    means, missed = result.mean_rank(), result.missed()
    for m in result.methods:
        ranks = " ".join(
            f"{(f'{_r(h.ranks[m])}/{_r(h.layer_ranks[m])}' if h.evidence else 'not evidence'):>12}"
            for h in result.heads
        )
        margins = [h.margins_z[m] for h in result.usable_heads()]
        margin = sum(margins) / len(margins) if margins else float("nan")
        seconds = sum(h.seconds[m] for h in result.heads) / len(result.heads)
        mean = "-" if means.get(m) is None else f"{means[m]:.1f}" + ("*" if missed.get(m) else "")
        print(f"{m:>22} {ranks} {mean:>9} {margin:>10.2f} {seconds:>8.1f}")
    combined = " ".join(f"{h.shown(h.combined_rank):>12}" for h in result.heads)
    cm = result.combined_mean_rank()
    print(f"{'combined':>22} {combined} {'-' if cm is None else f'{cm:.1f}':>9}")
    if any(missed.values()) or result.combined_missed():
        print("  * mean over the heads the method scored; some injected heads were outside the screen")
    choice, reason = result.recommended_rank_by("head")
    print(f"combine for heads: {', '.join(choice) or 'none'} ({reason})")
    for n in result.neuron_checks:
        print(
            f"seed {n.seed} neurons: {len(n.injection.units)} injected ({n.fraction:.2%}), recited "
            f"{n.injection.n_recited}/{len(n.injection.ids)}, held-out ppl {n.injection.heldout_ppl_before:.2f} -> "
            f"{n.injection.heldout_ppl_after:.2f}"
        )
    if result.neuron_checks:
        recall = result.recall()
        n = result.neuron_checks[0]
        print(f"{'method':>22} {'R@inj':>7} {'R@0.5%':>7} {'seconds':>8}  (mean over seeds whose injection worked)")
        for m in n.recall:
            r = recall.get(m)
            seconds = sum(c.seconds[m] for c in result.neuron_checks) / len(result.neuron_checks)
            cells = f"{r['injected']:>7.3f} {r['0.5%']:>7.3f}" if r else f"{'not evidence':>15}"
            print(f"{m:>22} {cells} {seconds:>8.1f}")
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
