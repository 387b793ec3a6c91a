"""`interp grad-map`: where the gradient of NLL / the contrastive objective lands, MEM vs NMEM."""

from __future__ import annotations

import argparse
import html

from interp.commands import common, options_cli
from interp.errors import UserError
from interp.options import GRAD_MAP, GradMapOptions


def configure(p) -> None:
    with common.command_flags(p, run):
        options_cli.add_option_flags(
            p,
            GradMapOptions,
            notes={"set_size": options_cli.SET_SIZE_NOTES["grad-map"], "nmem_max": options_cli.NMEM_NOTE},
            title="the gradient map",
        )
        common.add_output_args(
            p,
            json="write all scores here (default: not written)",
            html="write the figures here, one offline HTML page (default: none)",
        )


def _page(title: str, figures: dict) -> str:
    from plotly.offline import get_plotlyjs

    from interp.views.export import figures_html

    divs = "\n".join(
        f"<h2>{html.escape(name)}</h2>\n{div}" for name, div in zip(figures, figures_html(figures.values()))
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<script>{get_plotlyjs()}</script></head><body style='font-family:sans-serif'>"
        f"<h1>{html.escape(title)}</h1>\n{divs}</body></html>"
    )


def run(args: argparse.Namespace) -> int:
    o = options_cli.options_from(args, GRAD_MAP)
    from interp.gradient_norms import compare_norms, per_paragraph_norms
    from interp.gradients import gradient_map
    from interp.memorization import choose_sets
    from interp.models import model_name

    model = common.model_from_args(args)
    paragraphs = common.paragraphs_from_args(args, model)
    split = common.scored_split(model, paragraphs, args, o.nmem_max)
    mem, nmem = choose_sets(split, paragraphs, n_mem=o.set_size, n_nmem=o.set_size, seed=o.seed)
    if len(mem) == 0 or len(nmem) == 0:
        raise UserError(
            f"need both MEM and NMEM paragraphs, found {len(mem)} MEM and {len(nmem)} NMEM; "
            "pass a paragraph set that has both (see `interp memorized`)"
        )
    print(
        f"model {model_name(model)}: {len(mem)} MEM and {len(nmem)} NMEM paragraphs, objective {o.objective}, reduce {o.reduce}"
    )
    with common.stage(f"gradient maps of {len(mem)} MEM and {len(nmem)} NMEM paragraphs", args.progress):
        gm = gradient_map(
            model,
            mem,
            nmem,
            objective=o.objective,
            reduce=o.reduce,
            include_embeddings=o.include_embeddings,
            batch_size=o.grad_batch_size,
        )
    print(f"{'layer':>5} {'MEM':>10} {'NMEM':>10} {'MEM share':>10} {'NMEM share':>11}")
    for l in range(gm.mem_layers.shape[0]):
        print(
            f"{l:>5} {float(gm.mem_layers[l]):>10.4g} {float(gm.nmem_layers[l]):>10.4g} "
            f"{float(gm.mem_share[l]):>10.3f} {float(gm.nmem_share[l]):>11.3f}"
        )
    low = gm.lower_half_share()
    print(
        f"share of the squared gradient in the lower half of the layers: MEM {low['mem']:.3f}, NMEM {low['nmem']:.3f} "
        f"(maps are means over chunks of {gm.chunk_size} paragraphs, so both sets are compared at the same size)"
    )
    for key, cell in gm.most_salient().items():
        print(f"largest {key:>13}: layer {cell['layer']} head {cell['head']} {cell['component']} ({cell['value']:.4g})")
    out = {
        "model": model_name(model),
        "options": options_cli.options_record(args, o),
        "mem_ids": list(mem.ids),
        "nmem_ids": list(nmem.ids),
        "map": gm.to_json(),
    }
    figures = {}
    if args.html:
        from interp.views import gradients as views

        figures = {
            "Layer x component": views.figure_component_map(gm),
            "Layer x head": views.figure_head_map(gm),
            "Layer x head, each map scaled to sum 1": views.figure_head_map(gm, relative=True),
            "Share per layer": views.figure_layer_share(gm),
        }
    if o.per_paragraph:
        with common.stage(f"per-paragraph gradient norms of {len(mem) + len(nmem)} paragraphs", args.progress):
            norms_mem = per_paragraph_norms(model, mem, batch_size=o.grad_batch_size)
            norms_nmem = per_paragraph_norms(model, nmem, batch_size=o.grad_batch_size)
        cmp = compare_norms(norms_mem, norms_nmem)
        print("per-paragraph NLL gradient norms (rank-biserial r > 0: larger for MEM; Mann-Whitney p):")
        print(
            f"{'layer':>5} {'MEM median':>11} {'NMEM median':>12} {'r':>6} {'p':>9} | {'MEM share':>9} {'NMEM share':>10} {'r':>6} {'p':>9}"
        )
        for l in range(cmp.norm_p.shape[0]):
            print(
                f"{l:>5} {float(cmp.norm_mem_median[l]):>11.4g} {float(cmp.norm_nmem_median[l]):>12.4g} "
                f"{float(cmp.norm_rank_biserial[l]):>+6.2f} {float(cmp.norm_p[l]):>9.2g} | "
                f"{float(cmp.share_mem_median[l]):>9.3f} {float(cmp.share_nmem_median[l]):>10.3f} "
                f"{float(cmp.share_rank_biserial[l]):>+6.2f} {float(cmp.share_p[l]):>9.2g}"
            )
        print(f"lower-half share per paragraph (Mann-Whitney): {cmp.verdict()}")
        out |= {
            "per_paragraph": {"mem": norms_mem.to_json(), "nmem": norms_nmem.to_json()},
            "comparison": cmp.to_json(),
        }
        if args.html:
            figures["Per-paragraph norm per layer"] = views.figure_per_paragraph(norms_mem, norms_nmem, cmp)
            figures["Per-paragraph share per layer"] = views.figure_per_paragraph(
                norms_mem, norms_nmem, cmp, share=True
            )
    if args.json:
        common.write_json_output(args.json, out)
    if args.html:
        common.write_page(args.html, _page(f"Gradient maps: {model_name(model)}", figures))
    return 0
