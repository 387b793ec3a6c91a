"""The documentation: quoted numbers match the JSON they come from, links resolve, the README stays a
guide, and no document cites what is not in the repository."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyses import quoted_numbers  # noqa: E402

DOCS = [ROOT / "README.md", ROOT / "figures" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_quoted_number_matches_its_json():
    assert quoted_numbers.stale() == [], "run: python -m analyses.quoted_numbers --write"


def test_a_drifted_source_makes_its_block_stale(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    assert "<!-- generated: findings -->" in readme and quoted_numbers.render(readme) == readme
    figures = quoted_numbers._figures

    def drifted(name: str) -> dict:
        data = figures(name)
        if name == "04_perturbation":
            data["mean_em_drop_mem"] += 1.0
        return data

    monkeypatch.setattr(quoted_numbers, "_figures", drifted)
    changed = quoted_numbers.render(readme)
    assert changed != readme
    before = re.search(r"costs MEM ([\d.]+) EM", readme)[1]
    after = re.search(r"costs MEM ([\d.]+) EM", changed)[1]
    assert float(after) == pytest.approx(float(before) + 1.0, abs=0.006)


def test_an_unknown_block_name_is_refused():
    with pytest.raises(KeyError, match="unknown generated block"):
        quoted_numbers.render("<!-- generated: nope -->\n<!-- /generated -->")


def test_readme_is_a_guide_of_at_most_300_lines_with_an_unbroken_command_table():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    start = text.index("| command | what it answers |")
    table = text[start:].split("\n\n")[0].splitlines()
    assert any("`interp audit" in row for row in table) and all(row.startswith("|") for row in table)
    for section in ("### report.html", "### results.json", "### figures/"):
        assert section in text


def test_no_document_cites_issues_people_or_files_outside_the_repository():
    pattern = re.compile(r"(?i:\bissues? \d+|\bthe issue'?s?\b|\bshared/|\breferee\b|\bcoordinator\b)|STACK\.md|PAPERS\.md")
    files = DOCS + [p for d in ("analyses", "interp", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    hits = [f"{p.relative_to(ROOT)}: {m[0]}" for p in files for m in [pattern.search(p.read_text())] if m]
    assert hits == []


def test_machine_names_appear_only_in_the_benchmarks_page():
    names = re.compile(r"\bXeon\b|\bEPYC\b")
    assert [str(p.relative_to(ROOT)) for p in DOCS if names.search(p.read_text())] == ["docs/benchmarks.md"]


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_relative_links_resolve_to_files_and_headings():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", doc.read_text()):
            path, anchor = target
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
                broken.append(f"{doc.relative_to(ROOT)} -> {path}#{anchor}")
    assert broken == []
