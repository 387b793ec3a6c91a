"""Every analyses/ notebook runs top to bottom on the testbed in quick mode and writes its figures
and numbers; each is also a valid jupytext percent-format notebook."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from conftest import BROWSER, NO_BROWSER

ANALYSES = Path(__file__).parent.parent / "analyses"
NOTEBOOKS = sorted(ANALYSES.glob("[0-9][0-9]_*.py"))
EXPECTED = {
    "01_memorization": ["em_histogram", "memorization_by_count", "nll_vs_em"],
    "02_gradients": ["gradient_components", "gradient_heads", "gradient_layer_share"],
    "03_heads": ["head_rare_token_tau", "head_method_ranks", "head_ablation", "head_patching"],
    "04_perturbation": ["perturbation_em_drop_by_position"],
    "05_unlearning": ["unlearning_table", "forgetting_curves"],
    "06_restoration": ["restoration_all"],
    "07_audit": ["audit_recovery"],
    "08_scan": ["scan_found_by_count"],
    "09_locator_trust": ["locator_trust_ranks"],
    "10_faithfulness": ["faithfulness_auc"],
}


def test_one_notebook_per_paper_section_the_scan_and_the_injection_benchmark():
    assert [p.stem for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.slow
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch, testbed):
    import jupytext

    notebook = jupytext.read(path)
    assert any(c.cell_type == "markdown" for c in notebook.cells) and any(c.cell_type == "code" for c in notebook.cells)
    monkeypatch.setenv("QUICK", "1")
    monkeypatch.setenv("INTERP_FIGURES", str(tmp_path))
    monkeypatch.syspath_prepend(str(ANALYSES))
    monkeypatch.delitem(__import__("sys").modules, "_common", raising=False)
    runpy.run_path(str(path), run_name="__main__")
    CHECKS[path.stem](json.loads((tmp_path / f"{path.stem}.json").read_text()))
    if BROWSER is None:  # the numbers were checked; the static figures need a browser
        pytest.skip(NO_BROWSER)
    for name in EXPECTED[path.stem]:
        svg = tmp_path / f"{name}.svg"
        assert svg.exists() and svg.stat().st_size > 1000 and svg.read_text().lstrip().startswith("<svg"), name


def _memorization(n: dict) -> None:
    from interp import testbed_metadata

    built = testbed_metadata()["memorization_by_count"]  # measured when the testbed was built
    rows = {r["count"]: r for r in n["by_count"]}
    planted = [c for c, _ in testbed_metadata()["config"]["planted"]]
    assert set(planted) <= set(rows)
    for count in planted:  # the quick subset keeps every planted paragraph
        assert rows[count]["fraction_mem"] == pytest.approx(built[str(count)]["fraction_memorized"]), count
    assert n["n_mem"] == sum(r["n_mem"] for r in n["by_count"])


def _gradients(n: dict) -> None:
    assert sum(layer["mem_share"] for layer in n["layers"]) == pytest.approx(1.0)
    assert 0 <= n["lower_half_share"]["mem"] <= 1 and n["n_mem"] == 4


def _heads(n: dict) -> None:
    assert 0 <= n["top_head"][0] < 4 and 0 <= n["top_head"][1] < 8
    assert -1 <= n["most_rare_token_tau"] <= 1 and len(n["heads"]) == 8


def _perturbation(n: dict) -> None:
    assert 0 <= n["mean_em_drop_mem"] <= 50 and 0 <= n["mean_em_drop_nmem"] <= 50


def _unlearning(n: dict) -> None:
    labels = ["unlearn all", "unlearn top-0.1%", "edit all", "edit top-0.1%", "decay only all (no loss)"]
    assert [r["label"] for r in n["rows"]] == labels
    assert n["before"]["target_em"] == 50 and n["before"]["nmem_em"] == 50  # NMEM probes: the model's own continuation
    *rows, decay = n["rows"]  # weight decay 0: the decay-only row is the original model
    source = next(r for r in rows if r["label"] == n["settings"]["decay_control_of"])
    assert decay["config"]["lr"] == source["config"]["lr"] and decay["after"]["target_em"] == 50
    assert "not_run" in decay["heldout_control"]
    for row in rows:  # each row ran at its calibrated rate; a row that reached the level forgot
        cal = row["calibration"]
        assert row["config"]["lr"] == cal["lr"]
        if cal["reached"]:
            assert row["after"]["target_em"] <= cal["level"]
    assert set(n["relearn_controls"]) == {"original_before", "original_after", "heldout_paragraphs"}
    assert n["relearn_controls"]["heldout_paragraphs"] == 1  # control (b) ran on real held-out text
    assert all("relearned" in row["heldout_control"] for row in rows)


def _restoration(n: dict) -> None:
    assert n["all"]["em_original"] == 50 and len(n["all"]["krs"]) == len(n["all"]["experiments"])


def _audit(n: dict) -> None:
    assert n["calibrations"]["unlearn all"]["reached"]
    assert set(n["median_residual"]) == {"unlearn all", "retrained reference"}  # the reference model ships
    assert all(0 <= v <= 1 for v in n["median_residual"].values())
    rows = n["tables"]["unlearn all"]
    assert rows[0]["attack"] == "none (unlearned)" and rows[0]["original_em"] == 50 and rows[0]["em"] <= 10
    assert {r["attack"] for r in rows[1:]} == set(n["settings"]["attacks"])


def _scan(n: dict) -> None:
    found = {r["count"]: r for r in n["found_by_count"]}
    assert all(found[c]["found"] == found[c]["n"] for c in (1024, 512, 256, 128))  # recited in full: all found
    assert n["mem_spans"] >= sum(found[c]["found"] for c in found) and n["recall"]["measured"]


def _locator_trust(n: dict) -> None:
    (head,) = n["heads"]
    assert (head["layer"], head["head"]) == (0, 4) and set(head["ranks"]) == {"attribution", "patching", "ablation"}
    assert not head["evidence"] or all(1 <= r <= 48 for r in head["ranks"].values() if r is not None)


@pytest.mark.slow
def test_a_notebook_runs_from_any_folder(tmp_path):
    """Run as a script from another working directory: its helpers and outputs are found from its own path."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QUICK": "1", "INTERP_FIGURES": str(tmp_path / "out")}
    subprocess.run([sys.executable, str(ANALYSES / "04_perturbation.py")], cwd=tmp_path, env=env, check=True)
    assert json.loads((tmp_path / "out" / "04_perturbation.json").read_text())["n_mem"] > 0


def _faithfulness(n: dict) -> None:
    assert n["present"] == {"hide-only hook": True, "within int4 rounding": True, "retrained reference": False}
    assert set(n["em_original"]) == {50} and max(n["em_unlearned"]["retrained reference"]) < 50
    assert all(0 <= v <= 1 for v in n["auc_em"].values()) and 0 <= n["auc_residual"] <= 1


CHECKS = {
    "01_memorization": _memorization,
    "02_gradients": _gradients,
    "03_heads": _heads,
    "04_perturbation": _perturbation,
    "05_unlearning": _unlearning,
    "06_restoration": _restoration,
    "07_audit": _audit,
    "08_scan": _scan,
    "09_locator_trust": _locator_trust,
    "10_faithfulness": _faithfulness,
}
