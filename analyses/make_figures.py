"""Regenerate figures/: run every analyses notebook (full settings) and write figures/README.md.

    python analyses/make_figures.py            # all notebooks, about 20-30 minutes on 2 CPU cores
    python analyses/make_figures.py 01 03      # only these notebooks (README from what is there)
    python analyses/make_figures.py --readme   # no notebook: the README from the JSON files (and benchmarks/results.json)

Each notebook writes its PNG / SVG figures and a JSON of its key numbers into figures/; the
README's testbed numbers are read from those JSON files, so they are always the measured ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ANALYSES = Path(__file__).resolve().parent
FIGURES = Path(os.environ.get("INTERP_FIGURES", ANALYSES.parent / "figures"))


def run_notebooks(prefixes: list[str]) -> None:
    for path in sorted(ANALYSES.glob("[0-9][0-9]_*.py")):
        if prefixes and not any(path.stem.startswith(p) for p in prefixes):
            continue
        start = time.perf_counter()
        print(f"== {path.name}", flush=True)
        subprocess.run(
            [sys.executable, path.name],
            cwd=ANALYSES,
            check=True,
            env={**os.environ, "QUICK": "", "INTERP_FIGURES": str(FIGURES)},
        )
        print(f"== {path.name}: {time.perf_counter() - start:.0f} s", flush=True)


def _load(name: str) -> dict | None:
    path = FIGURES / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def images(*names: str) -> list[str]:
    """The figures, embedded (PNG; the SVG beside each is the vector version)."""
    return [*(f"![{name}]({name}.png)" for name in names), ""]


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def readme() -> str:
    lines = [
        "# figures/",
        "",
        "Paper-style figures of the testbed, produced by the notebooks in `analyses/` and regenerated with",
        "",
        "    python analyses/make_figures.py",
        "",
        "Each figure is a PNG and an SVG; every number below was measured by that command and is also in the",
        "notebook's JSON file here. The papers' numbers are for GPT-Neo 125M (paper A, Stoehr et al. 2024) and",
        "LLaMA2-7B / OLMo-7B (paper B, Hong et al. 2024); the testbed (v2) is a 6-layer GPT-Neo trained on packed",
        "Python standard-library source with paragraphs planted at random offsets, so only the direction of an",
        "effect is comparable. For the interactive versions run `interp report` (one offline report.html).",
        "",
    ]
    m = _load("01_memorization")
    lines += [
        "## 1. Memorization split (`01_memorization.py`)",
        "",
        "- `em_histogram`: paragraphs per exact-match value (log scale); MEM = EM 50 (red), NMEM = EM <= 10 (blue).",
        "- `memorization_by_count`: fraction fully memorized and mean EM by the number of training copies.",
        "- `nll_vs_em`: continuation loss against EM per paragraph.",
        "",
        *images("em_histogram", "memorization_by_count", "nll_vs_em"),
    ]
    if m:
        lines += [
            "| | paper A | testbed |",
            "|---|---|---|",
            f"| MEM paragraphs | 442 | {m['n_mem']} of {m['n_paragraphs']} |",
            f"| NMEM paragraphs | 12,422 | {m['n_nmem']} |",
        ]
        lines += [
            f"| fraction MEM, {r['count']} copies | - | {_fmt(r['fraction_mem'])} (mean EM {_fmt(r['mean_em'], 1)}) |"
            for r in m["by_count"]
        ]
        lines.append("")
    g = _load("02_gradients")
    lines += [
        "## 2. Gradient maps (`02_gradients.py`)",
        "",
        "- `gradient_components`: max |grad| of the continuation NLL per layer x component, MEM, NMEM, MEM - NMEM.",
        "- `gradient_heads`, `gradient_heads_relative`: the same per head for W_Q, W_K, W_V, W_O (relative: each map scaled to sum 1).",
        "- `gradient_layer_share`: each layer's share of the gradient, MEM vs NMEM.",
        "- `gradient_per_paragraph_share`: per-paragraph gradient share per layer with a Mann-Whitney U test.",
        "",
        *images(
            "gradient_components", "gradient_heads", "gradient_heads_relative", "gradient_layer_share",
            "gradient_per_paragraph_share",
        ),
    ]
    if g:
        top = g["most_salient"]["relative_diff"]
        lines += [
            "| | paper A | testbed |",
            "|---|---|---|",
            f"| gradient share in the lower half of the layers, MEM vs NMEM | MEM larger | {_fmt(g['lower_half_share']['mem'], 3)} vs {_fmt(g['lower_half_share']['nmem'], 3)} |",
            f"| most salient head component (MEM relative to NMEM) | layer 1 head 2 W_V | layer {top['layer']} head {top['head']} {top['component']} |",
            f"| paragraphs | - | {g['n_mem']} MEM, {g['n_nmem']} NMEM |",
            "",
        ]
    h = _load("03_heads")
    lines += [
        "## 3. Memorization head and rare tokens (`03_heads.py`)",
        "",
        "- `head_rare_token_tau`: Kendall tau of attention vs token frequency rank per head (negative = prefers rare tokens).",
        "- `head_attention_by_rank`: attention per rarity rank for the top heads.",
        "- `head_method_ranks`, `head_ablation`, `head_patching`, `head_attribution`: the other methods' evidence per head.",
        "",
        *images(
            "head_rare_token_tau", "head_attention_by_rank", "head_method_ranks", "head_ablation", "head_patching",
            "head_attribution",
        ),
    ]
    if h:
        lines += [
            "| | paper A | testbed |",
            "|---|---|---|",
            f"| most rare-token-attending head beyond chance | layer 1 head 2 (tau -0.97, no null) | layer {h['most_rare_token_head'][0]} head {h['most_rare_token_head'][1]} "
            f"(tau {_fmt(h['most_rare_token_tau'])}; uniform attention {_fmt(h.get('uniform_tau'))}; excess {_fmt(h.get('most_rare_token_excess'))}, "
            f"p {_fmt(h.get('most_rare_token_p'), 3)}) |",
            f"| the same head's excess on NMEM paragraphs | - | {_fmt(h.get('most_rare_token_excess_nmem'))} |",
            f"| top head of the locator (ordered by {', '.join(h['rank_by'])}) | - | layer {h['top_head'][0]} head {h['top_head'][1]} |",
            "| agreement between methods (Kendall tau) | methods disagreed | "
            + ", ".join(f"{k} {v:+.2f}" for k, v in h["agreement"].items())
            + " |",
            "",
        ]
    p = _load("04_perturbation")
    lines += [
        "## 4. Prefix perturbation (`04_perturbation.py`)",
        "",
        "- `perturbation_em_drop_by_position`: mean EM lost when one prefix position is replaced, MEM vs NMEM.",
        "",
        *images("perturbation_em_drop_by_position"),
    ]
    if p:
        lines += [
            "| mean EM drop per perturbed token | paper A | testbed |",
            "|---|---|---|",
            f"| MEM | 12.19 | {_fmt(p['mean_em_drop_mem'])} |",
            f"| NMEM | 33.12 | {_fmt(p['mean_em_drop_nmem'])} |",
            f"| paragraphs, samples per position | - | {p['n_mem']} + {p['n_nmem']}, {p['samples_per_position']} |",
            "",
        ]
    u = _load("05_unlearning")
    paper = {"all": ("26.90", "45.11"), "top-0.1%": ("26.75", "45.84"), "random-0.1%": ("49.80", "44.86")}
    lines += [
        "## 5. Unlearning vs baselines (`05_unlearning.py`)",
        "",
        "- `unlearning_table`: mean EM of the target, other MEM paragraphs and NMEM (vs the original's own continuation) after each run.",
        "",
    ]
    if u:
        cal = u["rows"][0]["calibration"]
        lines[-1:] = [
            f"  Each row runs at its calibrated learning rate: the smallest found at which {cal['criterion']}'s EM falls to",
            f"  <= {cal['level']:g} ({u['rows'][0]['config'].get('steps', 10)} Adam steps), so the collateral columns compare methods at",
            "  matched forgetting (the paper used one rate, 1e-5). `forgetting_curves`: collateral damage against target EM",
            "  along each method's calibration trace.",
            "",
            *images("unlearning_table", "forgetting_curves"),
        ]
        lines += [
            "| run | lr | paper A MEM / NMEM EM | testbed target EM | other MEM EM | NMEM EM | held-out ppl | target EM after relearning |",
            "|---|---|---|---|---|---|---|---|",
            f"| original | - | - | {_fmt(u['before']['target_em'])} | {_fmt(u['before']['other_mem_em'])} | {_fmt(u['before']['nmem_em'])} | {_fmt(u['before']['heldout_ppl'])} | - |",
        ]
        for row in u["rows"]:
            what = row["label"].split(" ", 1)[-1]
            ref = " / ".join(paper[what]) if row["label"].startswith("unlearn ") and what in paper else "-"
            a, cal = row["after"], row.get("calibration") or {}
            lr = f"{row['config'].get('lr', float('nan')):.2g}" + ("" if cal.get("reached", True) else " (not reached)")
            rel = _fmt(row["relearned"].get("target_em")) if row.get("relearned") else "-"
            lines.append(
                f"| {row['label']} | {lr} | {ref} | {_fmt(a['target_em'])} | {_fmt(a['other_mem_em'])} | {_fmt(a['nmem_em'])} | "
                f"{_fmt(a['heldout_ppl'])} | {rel} |"
            )
        c = u.get("relearn_controls") or {}
        if c:
            lines += [
                "",
                f"Relearning control (a), the same attack on the original model: a memorized target "
                f"{_fmt(c['original_before'], 1)} -> {_fmt(c['original_after'], 1)}. Control (b), each row's "
                f"unlearn-then-relearn pipeline on {c.get('heldout_paragraphs', 0)} paragraph(s) the model never saw "
                "(EM before -> after unlearning -> after relearning): "
                + "; ".join(
                    f"{row['label']} {_fmt(h['before'], 1)} -> {_fmt(h['unlearned'], 1)} -> {_fmt(h['relearned'], 1)}"
                    for row in u["rows"]
                    if (h := row.get("heldout_control")) and "before" in h
                )
                + ".",
            ]
        lines.append("")
    r = _load("06_restoration")
    lines += [
        "## 6. Restoration (`06_restoration.py`)",
        "",
        "- `restoration_all` (and `restoration_topk` when top-0.1% unlearning forgot anything): fraction of the forgotten",
        "  EM, of the NLL increase and KRS (per paragraph, averaged) recovered by restoring each part of the original model",
        "  for a window around each layer: paper B's 5 of 32 layers scaled to the depth (1 layer of the testbed's 6), so the",
        "  heatmap localizes the forgetting to single layers. Unlearning runs at the calibrated rate.",
        "",
        *images(*(name for name in ("restoration_all", "restoration_topk") if (FIGURES / f"{name}.png").exists())),
    ]
    if r:
        lines += [
            "| unlearning | target EM before -> after | best KRS (experiment, layer) | max KRS of value vectors | paper B |",
            "|---|---|---|---|---|",
        ]
        for select, v in r.items():
            if not v.get("forgotten", True):
                lines.append(
                    f"| {select} weights | {_fmt(v['em_original'], 1)} -> {_fmt(v['em_unlearned'], 1)} | "
                    "nothing forgotten, nothing to restore | - | - |"
                )
                continue
            krs = v["krs"]
            cells = [
                (val, e, l) for e, row in zip(v["experiments"], krs) for l, val in enumerate(row) if val is not None
            ]
            best = max(cells) if cells else (None, "-", "-")
            values = max((val for val, e, _ in cells if e == "values"), default=None)
            lines.append(
                f"| {select} weights | {_fmt(v['em_original'], 1)} -> {_fmt(v['em_unlearned'], 1)} | "
                f"{_fmt(best[0])} ({best[1]}, layer {best[2]}) | {_fmt(values)} | values recover ~nothing; late-layer coefficients most |"
            )
        lines.append("")
    return "\n".join(
        lines + audit_lines(_load("07_audit")) + scan_lines(_load("08_scan")) + trust_lines(_load("09_locator_trust"))
        + faithfulness_lines(_load("10_faithfulness")) + speed_lines()
    )


def scan_lines(s: dict | None) -> list[str]:
    """Section 8: which planted paragraphs `interp scan` found in a corpus built around them."""
    lines = [
        "## 8. Scanning a corpus (`08_scan.py`)",
        "",
        "- `scan_found_by_count`: the fraction of planted paragraphs the scan found, by training copies, in a corpus of",
        "  held-out text with one planted paragraph per document.",
        "",
    ]
    if not s:
        return lines
    return lines + [
        *images("scan_found_by_count"),
        "| copies | " + " | ".join(str(r["count"]) for r in s["found_by_count"]) + " |",
        "|---|" + "---|" * len(s["found_by_count"]),
        "| found | " + " | ".join(f"{r['found']} of {r['n']}" for r in s["found_by_count"]) + " |",
        "",
        f"{s['mem_spans']} memorized spans in {s['documents']} documents ({s['tokens']:,} tokens); "
        f"{s['forward_per_token']:.1f} forward tokens per corpus token; {s['recall']['message']}.",
        "",
    ]


def trust_lines(t: dict | None) -> list[str]:
    """Section 9: each locator method's rank of heads injected into copies of the testbed."""
    lines = [
        "## 9. How far to trust the locator (`09_locator_trust.py`)",
        "",
        "- `locator_trust_ranks`: each method's rank of the head each copy was made to recite through (1 = first).",
        "  More seeds and the neuron benchmark: docs/locator_trust.md.",
        "",
    ]
    if not t:
        return lines
    heads = [f"L{h['layer']}H{h['head']} ({h['recited']} recited)" for h in t["heads"]]
    rows = [
        f"| {m} | " + " | ".join(str(h["ranks"][m]) if h["evidence"] else "n.e." for h in t["heads"]) + " |"
        for m in t["mean_rank"]
    ]
    return lines + [
        *images("locator_trust_ranks"),
        "| method | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(heads),
        *rows,
        "",
    ]


def faithfulness_lines(f: dict | None) -> list[str]:
    """Section 10: the audit's scores on systems known to hold the targets or never to have seen them."""
    lines = [
        "## 10. Is the audit faithful? (`10_faithfulness.py`)",
        "",
        "- `faithfulness_auc`: per attack, the AUC of the attacked EM and log10 p between items that hold the text (a",
        "  hook hiding only the exact prompt; an unlearning kept inside the int4 rounding bins) and items that never",
        "  did (the reference model retrained without the targets; every system on never-known text); then the",
        "  residual's. More: docs/statistics.md.",
        "",
    ]
    if not f:
        return lines
    shown = images("faithfulness_auc") if (FIGURES / "faithfulness_auc.png").exists() else []
    return lines + [
        *shown,
        f"{f['n_present_items']} present vs {f['n_absent_items']} absent items over {len(f['targets'])} targets: "
        f"residual AUC {_fmt(f['auc_residual'])} on EM, {_fmt(f['auc_residual_log10p'])} on log10 p; unattacked EM "
        f"{_fmt(f['auc_unattacked'])} (no separation without the attacks).",
        "",
        "| attack | " + " | ".join(f["auc_em"]) + " |",
        "|---|" + "---|" * len(f["auc_em"]),
        "| AUC on EM | " + " | ".join(_fmt(v) for v in f["auc_em"].values()) + " |",
        "| AUC on log10 p | " + " | ".join(_fmt(v) for v in f["auc_log10p"].values()) + " |",
        "",
    ]


def audit_lines(a: dict | None) -> list[str]:
    """Section 7: the forgetting audit per method (residuals with their nulls and intervals, recovery per attack on
    EM and log10 p, n/a cells, restoration's donor null, control 1), beside the published recoveries."""
    cal = next(iter(a["calibrations"].values())) if a else None
    level = f": {cal['criterion']}'s EM <= {cal['level']:g}" if cal else ""
    lines = [
        "## 7. The forgetting audit (`07_audit.py`)",
        "",
        f"- `audit_recovery`: per method (each calibrated to matched forgetting{level}) and attack, the fraction of the",
        "  forgotten EM that the attack brings back, net of what the same attack gives never-known paragraphs on the",
        "  same unlearned system (control 2; for restoration, at least the donor's gain). Residual score per target =",
        "  the largest recovery over attacks, clipped to [0, 1]; its median per method is below, on EM and on log10 p.",
        "",
        *images("audit_recovery"),
    ]
    if not a:
        return lines
    n = len(a.get("targets", ())) or 1
    lines += [
        f"Targets: {a['target']}; one run per method forgets all of them, so the rates differ from section 5's. "
        f"Never-known controls: {len(a.get('never_known', ()))} held-out paragraphs.",
        "",
    ]
    published = "; ".join(f"{k}: {v}" for k, v in a.get("published", {}).items())
    lines += [
        f"Published recoveries to compare (other models, other measures: only the direction compares): {published}.",
        "",
        "| method | lr | n | target EM after | median residual, EM [95% CI] | on log10 p [95% CI] | controls' 95th pct (EM) "
        "| targets with p <= 0.05 | strongest attack (most targets) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, residual in a["median_residual"].items():
        rows = {r["attack"]: r for r in a["tables"][method]}
        tried = a["calibrations"].get(method, {}).get("tried")
        lr = f"{tried[-1]['lr']:.2g}" if tried else "-"
        ci, ci_p = a["median_residual_ci95"][method], a["median_residual_log10p_ci95"][method]
        attacks = [x for x in a["residual_attack"][method] if x]
        strongest = max(sorted(set(attacks)), key=attacks.count) if attacks else "none"  # ties: alphabetical
        significant = sum(p <= 0.05 for p in a["residual_p"][method])
        lines.append(
            f"| {method} | {lr} | {a['n_targets'][method]} | {_fmt(rows['none (unlearned)']['em'], 1)} | "
            f"{_fmt(residual)} [{_fmt(ci[0])}, {_fmt(ci[1])}] | {_fmt(a['median_residual_log10p'][method])} "
            f"[{_fmt(ci_p[0])}, {_fmt(ci_p[1])}] | {_fmt(a['null_q95'][method])} | {significant} of {n} | {strongest} |"
        )
    never = [m for m, c in a["calibrations"].items() if not c.get("reached", True)]
    if never:
        lines += ["", f"Never reached the level (not audited): {', '.join(never)}."]
    attacks = [r["attack"] for r in next(iter(a["tables"].values()))[1:]]
    lines += [
        "",
        "Recovery per attack (mean over targets, net of control 2; EM / log10 p; n/a where the attack cannot apply):",
        "",
        "| method | " + " | ".join(attacks) + " |",
        "|---|" + "---|" * len(attacks),
    ]
    for method in a["median_residual"]:
        rows = {r["attack"]: r for r in a["tables"][method]}
        cells = [
            f"{_fmt(rows[x].get('recovery'))} / {_fmt(rows[x].get('recovery_log10p'))}" if rows[x].get("applies", True)
            else "n/a"
            for x in attacks
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    first = next(iter(a["tables"].values()))
    controls = ", ".join(
        f"{r['attack']} {_fmt(r['original_em'], 1)}" + (" (breaks it)" if r.get("breaks_original") else "")
        for r in first[1:]
    )
    donor = ", ".join(
        f"{m} {_fmt(v.get('em'))} EM / {_fmt(v.get('log10p'), 1)} log10 p" for m, v in a.get("restore_null", {}).items()
    )
    diagnostic = [m for m, d in a.get("restoration_is_diagnostic", {}).items() if d]
    lines += [
        "",
        f"Control 1, the same attacks on the original model (target EM {_fmt(first[0]['original_em'], 1)} unattacked; an attack "
        f"that lowers it by more than 10% of the continuation breaks it): {controls}.",
        "",
        f"Restoration's donor null (the best window's gain when a copy taught never-known text is restored into a model "
        f"that never held it): {donor}. Restoration is a diagnostic, not evidence, for: "
        f"{', '.join(diagnostic) or 'none'}.",
        "",
    ]
    return lines


def speed_lines() -> list[str]:
    """The speed section: the table of benchmarks/results.json as `python benchmarks/run_all.py` wrote it."""
    path = ANALYSES.parent / "benchmarks" / "results.json"
    lines = [
        "## Speed (`benchmarks/run_all.py`)",
        "",
        "Every speed figure of this project comes from `python benchmarks/run_all.py` (see benchmarks/harness.py): each",
        "benchmark waits for a quiet machine (1-minute load below 0.3) or marks its rows BUSY, runs each method 3 times",
        "interleaved, and prints medians (range), the ratio of medians (range of per-round ratios), the work ratio, and",
        "GFLOP/s as a fraction of a float32 matmul peak measured in the same run.",
        "",
    ]
    data = json.loads(path.read_text()) if path.exists() else None
    if data is None or data.get("quick"):
        return lines + [
            "Not measured here yet (or only with --quick): run `python benchmarks/run_all.py` on a quiet machine, then",
            "`python analyses/make_figures.py --readme`.",
            "",
        ]
    busy = [r["benchmark"] for r in data["results"] if (r.get("machine") or {}).get("busy")]
    note = (
        f"BUSY machine during {', '.join(busy)}: those rows are not quiet-machine figures."
        if busy
        else "Quiet machine for every benchmark."
    )
    if data.get("note"):
        note += f" {data['note']}."
    return lines + [f"{data['cpus']} CPUs, Python {data['python']}. {note}", "", "```", *data["table"], "```", ""]


if __name__ == "__main__":
    if sys.argv[1:] != ["--readme"]:
        run_notebooks(sys.argv[1:])
    (FIGURES / "README.md").write_text(readme())
    print(f"wrote {FIGURES / 'README.md'}")
