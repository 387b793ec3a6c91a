"""`interp locate-head`: rank every head by how specifically it carries memorized paragraphs."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.commands import common, options_cli
from interp.locator.options import LOCATE, LocateOptions


def configure(p) -> None:
    with common.command_flags(p, run):
        p.add_argument(
            "--validation",
            default=None,
            metavar="FILE",
            help="a validate-locator --json result for this model: combine the methods that found the injected "
            "heads there (default: none; the methods' own order)",
        )
        p.add_argument(
            "--reference",
            type=Path,
            default=None,
            metavar="FILE",
            help="JSONL of paragraphs mean ablation averages each head's output over, never scored (default: carved "
            "out of the paragraph set first, the scored sets sized to what is left)",
        )
        options_cli.add_option_flags(
            p,
            LocateOptions,
            notes={
                "set_size": options_cli.SET_SIZE_NOTES["locate-head"],
                "nmem_max": "as interp report; memorized, perturb, grad-map, scan and unlearn take a fixed 10",
            },
            title="the locator",
        )
        common.add_output_args(
            p,
            json="write the ranked table and the evidence here (default: none)",
            html="write an offline page with the table, figures and attention views here (default: none)",
        )


def run(args: argparse.Namespace) -> int:
    from interp.locator.ranking import locate_memorization_head
    from interp.locator.validation import read_validation
    from interp.models import model_name
    from interp.testbed import shipped_unigram_counts

    model = common.model_from_args(args)
    paragraphs = common.paragraphs_from_args(args, model)
    counts = shipped_unigram_counts(model)
    validation = read_validation(args.validation) if args.validation else None
    reference = None if args.reference is None else common.paragraphs_like(args.reference, model, paragraphs)
    o = options_cli.options_from(args, LOCATE)
    with common.stage(f"ranking heads over {len(paragraphs)} paragraphs ({', '.join(o.methods)})", args.progress):
        ranking = locate_memorization_head(
            model,
            paragraphs,
            options=o,
            reference=reference,
            unigram_counts=counts,
            validation=validation,
            batch_size=args.batch_size,
        )
    rows = ranking.head_table()
    print(
        f"model {model_name(model)}: {len(ranking.mem_ids)} MEM, {len(ranking.nmem_ids)} NMEM paragraphs scored, "
        f"{len(ranking.reference_ids)} as mean ablation's reference; "
        f"ordered by {', '.join(ranking.rank_by)} ({ranking.combination_reason})"
    )
    print("seconds per method: " + ", ".join(f"{m} {s:.1f}" for m, s in ranking.seconds.items()))
    if ranking.screen:
        print("screen: " + ", ".join(f"{k} {v}" for k, v in ranking.screen.items()))
    print(f"{'rank':>4} {'head':>6} {'patching':>9} {'ablation':>9} {'rare tau':>9} {'gradient':>9}  method ranks")

    def f(v):
        return f"{v:>9.3f}" if v is not None else f"{'-':>9}"

    for r in rows[:10]:
        ranks = " ".join(f"{m}={'-' if k is None else k}" for m, k in r["method_ranks"].items())
        place = r["rank"] if r["rank"] is not None else "-"
        status = "" if r["status"] == "ranked" else f"  ({r['status']})"
        print(
            f"{place:>4} {'L%dH%d' % (r['layer'], r['head']):>6} {f(r['patching_effect'])} {f(r['ablation_effect'])} "
            f"{f(r['rare_token_tau'])} {f(r['gradient_score'])}  {ranks}{status}"
        )
    print("agreement between methods (Kendall tau of their head scores):")
    for k, v in ranking.agreement.items():
        print(f"  {k}: {v:+.2f}")
    for note in ranking.notes:
        print(f"note: {note}")
    if args.json:
        out = ranking.to_json()
        out["model"] = model_name(model)
        common.write_json_output(args.json, out)
    if args.html:
        import torch

        from interp.backend import act_name, capture
        from interp.data import rarity_ranks
        from interp.views.heads import attention_view, ranking_page

        mem_pos = [paragraphs.ids.index(i) for i in ranking.mem_ids[:1]]
        views = []
        if mem_pos and model.tokenizer is not None:
            tokens = paragraphs.tokens[mem_pos[0] : mem_pos[0] + 1].to(model.cfg.device)
            _, cache = capture(model, tokens, [act_name("pattern", l) for l in range(model.cfg.n_layers)])
            patterns = torch.stack([cache["pattern", l][0] for l in range(model.cfg.n_layers)]).cpu()
            heads = [(r["layer"], r["head"]) for r in rows[:3]]
            rarity = rarity_ranks(tokens.cpu(), counts)[0].tolist() if counts is not None else None
            views.append(attention_view(model.to_str_tokens(tokens[0]), patterns, heads, rarity))
        common.write_page(args.html, ranking_page(ranking, views, title=f"Memorization head of {model_name(model)}"))
    return 0
