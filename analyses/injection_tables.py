"""Markdown tables of a `validate-locator --seeds ... --json FILE` result, per layer and per seed (the README's
injection tables). Prints them; writes nothing.

    python analyses/injection_tables.py docs/injection_heldout_seeds.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def _cell(head: dict, rank) -> str:
    if not head["evidence"]:
        return "n.e."
    return "out" if rank is None else str(rank)


def head_table(data: dict) -> str:
    """Rank of the injected head per method: one column per layer, the seeds' ranks side by side."""
    heads = data["heads"]
    seeds = data["seeds"]
    by_layer = defaultdict(dict)
    for h in heads:
        by_layer[h["layer"]][h["seed"]] = h
    layers = sorted(by_layer)

    def header(layer: int) -> str:
        parts = []
        for s in seeds:
            h = by_layer[layer][s]
            inj = h["injection"]
            parts.append(f"s{s} L{layer}H{h['head']} {inj['n_recited']}/{len(inj['ids'])} in {inj['steps']}")
        return "<br>".join(parts)

    methods = list(heads[0]["ranks"])
    lines = [
        "| method | " + " | ".join(header(layer) for layer in layers) + " | mean rank | seconds per head |",
        "|---|" + "---|" * (len(layers) + 2),
    ]
    for m in methods:
        cells = [
            " / ".join(_cell(by_layer[layer][s], by_layer[layer][s]["ranks"][m]) for s in seeds) for layer in layers
        ]
        mean = data["mean_rank"].get(m)
        missed = data["missed"].get(m, 0)
        mean_text = "-" if mean is None else f"{mean:.1f}" + (f" ({missed} out)" if missed else "")
        seconds = sum(h["seconds"][m] for h in heads) / len(heads)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean_text} | {seconds:.1f} |")
    cells = [
        " / ".join(_cell(by_layer[layer][s], by_layer[layer][s]["combined_rank"]) for s in seeds) for layer in layers
    ]
    cm = data["combined_mean_rank"]
    rank_by = " + ".join(heads[0]["rank_by"])
    lines.append(f"| **combined ({rank_by})** | " + " | ".join(cells) + f" | {'-' if cm is None else f'{cm:.1f}'} | |")
    return "\n".join(lines)


def injection_table(data: dict) -> str:
    """Per injected head: recited, steps, rate, held-out perplexity before and after."""
    lines = [
        "| seed | head | recited | steps | rate | EM after | held-out ppl before -> after |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in data["heads"]:
        inj = h["injection"]
        lines.append(
            f"| {h['seed']} | L{h['layer']}H{h['head']} | {inj['n_recited']} of {len(inj['ids'])} | {inj['steps']} | "
            f"{inj['lr']:g} | {', '.join(map(str, inj['em_after']))} | "
            f"{inj['heldout_ppl_before']:.1f} -> {inj['heldout_ppl_after']:.1f} |"
        )
    return "\n".join(lines)


def neuron_table(data: dict) -> str:
    """Recall@0.5% of the injected neurons per method and seed, their mean, MemPi's GPT-2 figure."""
    checks = data.get("neuron_seeds") or []
    if not checks:
        return ""
    mempi = checks[0]["mempi_gpt2_recall_at_0.5%"]
    mean = data["neuron_recall_mean"]
    head = " | ".join(
        f"seed {c['seed']} ({len(c['injection']['units'])} neurons, {c['injection']['n_recited']} of "
        f"{len(c['injection']['ids'])} recited, {c['injection']['steps']} steps)"
        for c in checks
    )
    lines = [f"| method | {head} | mean | MemPi GPT-2 | seconds |", "|---|" + "---|" * (len(checks) + 3)]
    for m in checks[0]["recall"]:
        cells = " | ".join(f"{c['recall'][m]['0.5%']:.2f}" if c["injection"]["n_recited"] else "n.e." for c in checks)
        seconds = sum(c["seconds"][m] for c in checks) / len(checks)
        avg = f"{mean[m]['0.5%']:.2f}" if m in mean else "-"
        lines.append(f"| {m} | {cells} | {avg} | {mempi.get(m, '-')} | {seconds:.1f} |")
    lines.append("| random | " + " | ".join("0.005" for _ in checks) + " | 0.005 | 0.5 | |")
    return "\n".join(lines)


def main() -> None:
    data = json.loads(open(sys.argv[1]).read())
    print(injection_table(data), head_table(data), neuron_table(data), sep="\n\n")
    rec = data["recommended_rank_by"]
    print("\nrecommended:", json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
