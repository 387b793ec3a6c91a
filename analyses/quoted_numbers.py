"""Every result number the documentation quotes, generated from the JSON it comes from.

A block in README.md or docs/*.md between `<!-- generated: NAME -->` and `<!-- /generated -->` is the output
of `BLOCKS[NAME]`, read from figures/*.json, benchmarks/*.json, docs/injection_*.json or the testbed's
metadata; figures/README.md is generated whole by `make_figures.readme()`.

    python -m analyses.quoted_numbers           # list the blocks that differ from their source
    python -m analyses.quoted_numbers --write   # rewrite them (and figures/README.md)

tests/test_docs.py fails when a quoted number drifts from its source.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from analyses import injection_tables, make_figures

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


def _json(path: str) -> dict:
    return json.loads((ROOT / path).read_text())


def _figures(name: str) -> dict:
    return _json(f"figures/{name}.json")


def testbed_memorization() -> str:
    """Memorization of the shipped testbed by training repeat count, as measured when it was built."""
    meta = _json("interp/testbed/checkpoint/metadata.json")
    lines = [
        "| copies in training | paragraphs | fully memorized (EM = 50) | mean EM |",
        "|---:|---:|---:|---:|",
    ]
    for count, row in meta["memorization_by_count"].items():
        label = {"1": "1 (seen once)", "0": "0 (held out)"}.get(count, count)
        lines.append(f"| {label} | {row['n']:,} | {row['n_memorized']:,} | {row['mean_em']:.1f} |")
    robust = meta["position_robustness"]["table"]
    shares = " / ".join(f"{r['share_kept']:.0%}" for r in robust)
    ks = " / ".join(str(r["k"]) for r in robust)
    lines += [
        "",
        f"{meta['n_mem']} MEM paragraphs. Preceded by k tokens of unrelated held-out text, {shares} of them still "
        f"recite all 50 tokens at k = {ks}.",
    ]
    return "\n".join(lines)


def _runs(n: int) -> str:
    return "1 run" if n == 1 else f"{n} runs"


def report_time() -> str:
    """How long the testbed's report took, default and `--quick` (bench_report's JSON)."""
    full, quick = _json("benchmarks/report_default.json")["total_s"], _json("benchmarks/report_quick.json")["total_s"]
    def spread(values: list[float], scale: float, unit: str, digits: int) -> str:
        x = lambda v: f"{v / scale:.{digits}f}"  # noqa: E731
        if len(values) == 1:
            return f"{x(values[0])} {unit} (1 run)"
        return f"{x(_median(values))} {unit} ({x(min(values))}-{x(max(values))}, {len(values)} runs)"

    return f"The default report took {spread(full, 60, 'minutes', 1)}, `--quick` took {spread(quick, 1, 's', 0)}."


def findings() -> str:
    """The headline result of each analysis on the testbed, from the notebooks' JSON in figures/."""
    m, g, h = _figures("01_memorization"), _figures("02_gradients"), _figures("03_heads")
    p, u, r, a = _figures("04_perturbation"), _figures("05_unlearning"), _figures("06_restoration"), _figures("07_audit")
    rows = {row["label"]: row for row in u["rows"]}
    top, spec = h["top_head"], h["mem_specific_head"]
    cal = rows["unlearn top-0.1%"]["calibration"]

    def run(label: str) -> str:
        row = rows[label]
        return (
            f"{label} (lr {row['config']['lr']:.2g}): other MEM EM {row['after']['other_mem_em']:.1f}, "
            f"held-out perplexity {row['after']['heldout_ppl']:.1f}"
        )

    krs = {
        select: max(v for row in res["krs"] for v in row if v is not None) for select, res in r.items() if res["krs"]
    }
    return "\n".join(
        [
            f"- **Memorization**: {m['n_mem']} of {m['n_paragraphs']:,} paragraphs are MEM, {m['n_nmem']:,} NMEM.",
            f"- **Gradients**: share of the gradient in the lower half of the layers, MEM "
            f"{g['lower_half_share']['mem']:.3f} vs NMEM {g['lower_half_share']['nmem']:.3f} (the paper's direction).",
            f"- **Heads**: the locator's top head is L{top[0]}H{top[1]} (ordered by {', '.join(h['rank_by'])}); "
            f"the most MEM-specific rare-token head, chosen on half the paragraphs and tested on the other, is "
            f"L{spec['layer']}H{spec['head']} (excess tau {spec['mem_excess']:+.2f} on MEM vs "
            f"{spec['nmem_excess']:+.2f} on NMEM, p = {spec['p']:.3f}).",
            f"- **Perturbation**: one changed prefix token costs MEM {p['mean_em_drop_mem']:.2f} EM and NMEM "
            f"{p['mean_em_drop_nmem']:.2f} (the paper: 12.19 vs 33.12).",
            f"- **Unlearning** at matched forgetting ({cal['criterion']}'s EM <= {cal['level']:g}): "
            f"{run('unlearn top-0.1%')}; {run('unlearn all')} (the original: other MEM "
            f"{u['before']['other_mem_em']:.1f}, perplexity {u['before']['heldout_ppl']:.1f}).",
            "- **Restoration**: the best KRS recovered by one layer of the original is "
            + ", ".join(f"{v:.2f} ({select} weights unlearned)" for select, v in krs.items())
            + ".",
            f"- **Audit** of {len(a['targets'])} planted paragraphs the retrained reference never saw: median "
            "residual (the share of the forgotten text the attacks bring back, on EM / on log10 p) per method: "
            + ", ".join(
                f"{method} {v:.2f} / {a['median_residual_log10p'][method]:.2f}"
                for method, v in a["median_residual"].items()
            )
            + ".",
        ]
    )


def injection_heldout() -> str:
    """The injection benchmark on fresh seeds 3-5 (heads, then neurons)."""
    data = _json("docs/injection_heldout_seeds.json")
    return "\n\n".join(
        [injection_tables.injection_table(data), injection_tables.head_table(data), injection_tables.neuron_table(data)]
    )


def injection_with_mlp() -> str:
    """The head-and-its-MLP injection on seeds 3-5: rank of the injected head per method."""
    return injection_tables.head_table(_json("docs/injection_with_mlp_seeds.json"))


def _step_rows(path: str) -> dict[str, dict]:
    return {row["step"]: row for row in _json(path)["rows"] if row["gflop"]}


def bench_report() -> str:
    """The report per step: the default report and `--quick`, from bench_report's JSON."""
    full, quick = _json("benchmarks/report_default.json"), _json("benchmarks/report_quick.json")
    f_rows, q_rows = _step_rows("benchmarks/report_default.json"), _step_rows("benchmarks/report_quick.json")
    lines = [
        f"| step | default report: median s (range), {_runs(len(full['total_s']))} | GFLOP | % of peak | s at peak "
        f"| `--quick`: median s (range), {_runs(len(quick['total_s']))} | % of peak | s at peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step, row in f_rows.items():
        q = q_rows.get(step)
        quick_cells = (
            f"{q['median_s']:.1f} ({q['range_s'][0]:.1f}-{q['range_s'][1]:.1f}) | {q['fraction_of_peak']:.0%} | "
            f"{q['seconds_at_peak']:.1f}"
            if q
            else "off | - | -"
        )
        lines.append(
            f"| {step} | {row['median_s']:.1f} ({row['range_s'][0]:.1f}-{row['range_s'][1]:.1f}) | {row['gflop']:,.0f} | "
            f"{row['fraction_of_peak']:.0%} | {row['seconds_at_peak']:.1f} | {quick_cells} |"
        )
    lines.append(
        f"| **whole report** | **{_median(full['total_s']):.0f} ({min(full['total_s']):.0f}-{max(full['total_s']):.0f})** "
        f"| {sum(r['gflop'] for r in f_rows.values()):,.0f} | | **{sum(r['seconds_at_peak'] for r in f_rows.values()):.0f}** "
        f"| **{_median(quick['total_s']):.0f} ({min(quick['total_s']):.0f}-{max(quick['total_s']):.0f})** | | "
        f"**{sum(r['seconds_at_peak'] for r in q_rows.values()):.0f}** |"
    )
    return "\n".join(lines)


def bench_report_125m() -> str:
    """`--quick` at GPT-Neo-125M's shape, per step."""
    data = _json("benchmarks/report_quick_125m.json")
    rows = _step_rows("benchmarks/report_quick_125m.json")
    lines = [
        f"| step, `--quick`, 125M shape | median s (range), {_runs(len(data['total_s']))} | fwd / bwd block-positions "
        "| GFLOP | % of peak | s at peak |",
        "|---|---|---|---|---|---|",
    ]
    for step, row in rows.items():
        lines.append(
            f"| {step} | {row['median_s']:.1f} ({row['range_s'][0]:.1f}-{row['range_s'][1]:.1f}) | "
            f"{row['forward_block_positions']:,} / {row['backward_block_positions']:,} | {row['gflop']:,.0f} | "
            f"{row['fraction_of_peak']:.0%} | {row['seconds_at_peak']:.1f} |"
        )
    lines.append(
        f"| **whole report** | **{_median(data['total_s']):.0f} ({min(data['total_s']):.0f}-{max(data['total_s']):.0f})** "
        f"| | {sum(r['gflop'] for r in rows.values()):,.0f} | | **{sum(r['seconds_at_peak'] for r in rows.values()):.0f}** |"
    )
    return "\n".join(lines)


def bench_run_all() -> str:
    """The table `python benchmarks/run_all.py` printed, as benchmarks/results.json keeps it."""
    data = _json("benchmarks/results.json")
    return "\n".join([f"{data['note']}.", "", "```", *data["table"], "```"])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


BLOCKS = {
    "report-time": report_time,
    "testbed-memorization": testbed_memorization,
    "findings": findings,
    "injection-heldout": injection_heldout,
    "injection-with-mlp": injection_with_mlp,
    "bench-report": bench_report,
    "bench-report-125m": bench_report_125m,
    "bench-run-all": bench_run_all,
}


def render(text: str) -> str:
    """`text` with every generated block's body regenerated from its source."""

    def body(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown generated block {name!r}: one of {', '.join(BLOCKS)}")
        return f"{match[1]}{BLOCKS[name]()}\n{match[4]}"

    return BLOCK.sub(body, text)


def stale() -> list[str]:
    """The documents whose generated parts differ from their sources (figures/README.md included)."""
    out = [str(p.relative_to(ROOT)) for p in DOCUMENTS if render(p.read_text()) != p.read_text()]
    if (ROOT / "figures" / "README.md").read_text() != make_figures.readme():
        out.append("figures/README.md")
    return out


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        for path in DOCUMENTS:
            path.write_text(render(path.read_text()))
        (ROOT / "figures" / "README.md").write_text(make_figures.readme())
        return 0
    drifted = stale()
    for name in drifted:
        print(f"{name}: quoted numbers differ from their JSON (python -m analyses.quoted_numbers --write)")
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
