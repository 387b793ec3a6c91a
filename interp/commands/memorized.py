"""`interp memorized`: which paragraphs does the model recite? EM histogram, MEM / NMEM split."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TYPE_CHECKING

from interp.commands import common, options_cli
from interp.options import MEMORIZED, MemorizedOptions

if TYPE_CHECKING:
    import torch

    from interp.data import Paragraphs
    from interp.metrics import ParagraphScores


def configure(p) -> None:
    with common.command_flags(p, run):
        options_cli.add_option_flags(
            p, MemorizedOptions, notes={"nmem_max": options_cli.NMEM_NOTE}, title="the split and the sampling"
        )
        common.add_output_args(p, json="write per-paragraph results here (default: none)")


def em_histogram(em: torch.Tensor, cont_len: int, nmem_max: int) -> list[tuple[str, int]]:
    """Counts in the paper's bins: NMEM, the two intermediate bins, and MEM."""
    from interp.metrics import em_bins

    return [(label, int(((em >= lo) & (em <= hi)).sum())) for label, lo, hi in em_bins(cont_len, nmem_max)]


def scored_with_progress(
    model, paragraphs: Paragraphs, args: argparse.Namespace, top_k: int | None = None
) -> ParagraphScores:
    """`score_paragraphs` a few batches at a time (under top-k sampling with `top_k`), with a bar counting paragraphs
    on stderr (--no-progress: none)."""
    import torch
    from tqdm.auto import tqdm

    from interp.metrics import ParagraphScores, score_paragraphs

    step = 4 * args.batch_size
    parts = []
    with tqdm(total=len(paragraphs), unit="paragraph", desc="scoring", disable=not args.progress) as bar:
        for start in range(0, len(paragraphs), step):
            chunk = paragraphs.select(range(start, min(start + step, len(paragraphs))))
            parts.append(score_paragraphs(model, chunk, batch_size=args.batch_size, top_k=top_k))
            bar.update(len(chunk))
    joined = {}
    for f in fields(ParagraphScores):
        values = [getattr(part, f.name) for part in parts]
        if isinstance(values[0], torch.Tensor):
            joined[f.name] = torch.cat(values)
        else:  # ids are concatenated; continuation_len and top_k are the same in every part
            joined[f.name] = sum(values, ()) if f.name == "ids" else values[0]
    return ParagraphScores(**joined)


def run(args: argparse.Namespace) -> int:
    o = options_cli.options_from(args, MEMORIZED)
    from interp.memorization import split_mem_nmem
    from interp.metrics import EXTRACTION_NS, count_groups, extraction_by_em_bin
    from interp.models import model_name

    model = common.model_from_args(args)
    paragraphs = common.paragraphs_from_args(args, model)
    scores = scored_with_progress(model, paragraphs, args, o.top_k)
    cont = paragraphs.continuation_len
    mem, nmem = split_mem_nmem(scores.em, cont, nmem_max=o.nmem_max)
    print(f"model {model_name(model)}: {len(paragraphs)} paragraphs of {paragraphs.prefix_len} + {cont} tokens")
    print("EM histogram:")
    width = max(1, len(paragraphs))
    for label, n in em_histogram(scores.em, cont, o.nmem_max):
        print(f"  EM {label:>10}: {n:6d} {'#' * round(40 * n / width)}")
    print(f"MEM (EM = {cont}): {len(mem)}   NMEM (EM <= {o.nmem_max}): {len(nmem)}")
    sampling = f"top-{o.top_k} sampling" if o.top_k else "sampling at temperature 1"
    print(
        f"extraction probability: p = P({sampling} reproduces the whole continuation); "
        "p100 = P(at least one of 100 samples does)"
    )
    rows = extraction_by_em_bin(scores, o.nmem_max)
    labels = list(rows[0]["log10_p_histogram"])
    print("log10 p by EM bin (paragraphs per log10 p range):")
    print(f"  {'EM':>10} {'n':>6} {'median':>7} {'p100>=.5':>8}  " + " ".join(f"{x:>20}" for x in labels))
    for r in rows:
        print(
            f"  {r['em_bin']:>10} {r['n']:>6} {r['median_log10_p']:>7.1f} {r['share_p100_ge_half']:>8.2f}  "
            + " ".join(f"{v:>20}" for v in r["log10_p_histogram"].values())
        )
    if o.top_k:
        print(f"  -inf: a continuation token lies outside the top {o.top_k}, so top-k sampling never produces it")
    if paragraphs.counts is not None:
        print("memorization by training repeat count:")
        print(f"  {'copies':>6} {'n':>5} {'MEM':>5} {'mean EM':>8} {'mean NLL':>9} {'med log10 p':>11}")
        for c, sel in count_groups(paragraphs.counts):
            print(
                f"  {c:>6} {int(sel.sum()):>5} {int((scores.em[sel] == cont).sum()):>5} "
                f"{scores.em[sel].float().mean():>8.2f} {scores.nll[sel].mean():>9.3f} "
                f"{scores.log10_p[sel].median():>11.1f}"
            )
    if args.json:
        records = scores.to_json()
        for i, rec in enumerate(records):
            rec["count"] = paragraphs.counts[i] if paragraphs.counts is not None else None
        common.write_json_output(
            args.json,
            {
                "model": model_name(model),
                "options": options_cli.options_record(args, o),
                "prefix_len": paragraphs.prefix_len,
                "continuation_len": cont,
                "sampling": {"temperature": 1.0, "top_k": o.top_k, "n_samples": list(EXTRACTION_NS)},
                "extraction_by_em_bin": rows,
                "paragraphs": records,
                "mem_ids": [paragraphs.ids[i] for i in mem.tolist()],
                "nmem_ids": [paragraphs.ids[i] for i in nmem.tolist()],
            },
        )
    return 0
