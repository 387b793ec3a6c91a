"""`interp validate-locator`: the injection benchmark on the user's own model (a copy of it)."""

from __future__ import annotations

import argparse
import sys

from interp.commands import common, options_cli
from interp.locator.options import RECALL_FRACTION, VALIDATE, ValidateOptions


def configure(p) -> None:
    with common.command_flags(p, run, progress=False):
        p.add_argument(
            "--heads",
            nargs="+",
            type=options_cli.parse_head,
            default=None,
            metavar="HEAD",
            help="heads to inject through, as L1H6 or 1.6 (default: one in a lower, a middle and an upper layer)",
        )
        options_cli.add_option_flags(
            p,
            ValidateOptions,
            notes={"set_size": options_cli.SET_SIZE_NOTES["validate-locator"]},
            title="the injection benchmark",
        )
        common.add_output_args(
            p,
            json="write the full result here (default: none)",
            html="write an offline page with the section 'How far to trust the locator' (default: none)",
        )


def _r(rank: int | None) -> str:
    return "-" if rank is None else str(rank)


def run(args: argparse.Namespace) -> int:
    o = options_cli.options_from(args, VALIDATE)
    from interp.locator.validation import validate_locator
    from interp.models import model_name
    from interp.testbed import shipped_unigram_counts

    model = common.model_from_args(args)
    paragraphs = common.paragraphs_from_args(args, model)
    result = validate_locator(
        model,
        paragraphs,
        options=o,
        heads=args.heads,
        unigram_counts=shipped_unigram_counts(model),
        batch_size=args.batch_size,
        log=lambda line: print(line, file=sys.stderr, flush=True),
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
        from interp.fingerprint import weights_fingerprint

        # the weights' hash lets `interp report --validation FILE` refuse a result measured on other weights
        common.write_json_output(args.json, {**result.to_json(), "weights_sha256": weights_fingerprint(model)})
    if args.html:
        from interp.views.locator import trust_section
        from interp.views.report_html import report_html

        page = report_html(
            f"How far to trust the locator on {model_name(model)}",
            {"model": model_name(model)},
            [trust_section(result)],
        )
        common.write_page(args.html, page)
    return 0
