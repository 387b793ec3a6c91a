"""`interp memorized`: which paragraphs does the model recite? EM histogram, MEM / NMEM split."""

from __future__ import annotations

import argparse

import torch

from interp.commands.common import add_model_args, add_paragraph_args, model_from_args, paragraphs_from_args
from interp.io import write_json
from interp.memorization import split_mem_nmem
from interp.metrics import NMEM_MAX_EM, score_paragraphs
from interp.models import model_name


def register(sub) -> None:
    p = sub.add_parser("memorized", help="EM / NLL of every paragraph and the MEM / NMEM split")
    add_model_args(p)
    add_paragraph_args(p)
    p.add_argument("--nmem-max", type=int, default=NMEM_MAX_EM, help="NMEM: EM at most this (default 10)")
    p.add_argument("--json", type=str, default=None, help="write per-paragraph results here")
    p.set_defaults(run=run)


def em_histogram(em: torch.Tensor, cont_len: int, nmem_max: int) -> list[tuple[str, int]]:
    """Counts in the paper's bins: NMEM, the two intermediate bins, and MEM."""
    mid = max(nmem_max + 1, cont_len * 3 // 5)
    bins = [
        (f"{0}-{nmem_max}", 0, nmem_max),
        (f"{nmem_max + 1}-{mid - 1}", nmem_max + 1, mid - 1),
        (f"{mid}-{cont_len - 1}", mid, cont_len - 1),
        (f"{cont_len} (MEM)", cont_len, cont_len),
    ]
    return [(label, int(((em >= lo) & (em <= hi)).sum())) for label, lo, hi in bins]


def run(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    paragraphs = paragraphs_from_args(args, model)
    scores = score_paragraphs(model, paragraphs, batch_size=args.batch_size)
    cont = paragraphs.continuation_len
    mem, nmem = split_mem_nmem(scores.em, cont, nmem_max=args.nmem_max)
    print(f"model {model_name(model)}: {len(paragraphs)} paragraphs of {paragraphs.prefix_len} + {cont} tokens")
    print("EM histogram:")
    width = max(1, len(paragraphs))
    for label, n in em_histogram(scores.em, cont, args.nmem_max):
        print(f"  EM {label:>10}: {n:6d} {'#' * round(40 * n / width)}")
    print(f"MEM (EM = {cont}): {len(mem)}   NMEM (EM <= {args.nmem_max}): {len(nmem)}")
    if paragraphs.counts is not None:
        print("memorization by training repeat count:")
        print(f"  {'copies':>6} {'n':>5} {'MEM':>5} {'mean EM':>8} {'mean NLL':>9}")
        counts = torch.tensor(paragraphs.counts)
        for c in sorted(set(paragraphs.counts), reverse=True):
            sel = counts == c
            print(
                f"  {c:>6} {int(sel.sum()):>5} {int((scores.em[sel] == cont).sum()):>5} "
                f"{scores.em[sel].float().mean():>8.2f} {scores.nll[sel].mean():>9.3f}"
            )
    if args.json:
        records = scores.to_json()
        for i, rec in enumerate(records):
            rec["count"] = paragraphs.counts[i] if paragraphs.counts is not None else None
        write_json(
            args.json,
            {
                "model": model_name(model),
                "prefix_len": paragraphs.prefix_len,
                "continuation_len": cont,
                "paragraphs": records,
                "mem_ids": [paragraphs.ids[i] for i in mem.tolist()],
                "nmem_ids": [paragraphs.ids[i] for i in nmem.tolist()],
            },
        )
        print(f"wrote {args.json}")
    return 0
