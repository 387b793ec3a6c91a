"""One name per meaning: every renamed flag still works under its old spelling for one release, with a
DeprecationWarning and one note on stderr, printed once; heads are read as L1H6 or 1.6 everywhere."""

from __future__ import annotations

import pytest

from interp.cli import build_parser

T = "--model testbed"

ALIASES = [
    # command, old spelling, new spelling (each given with the same value)
    ("perturb", "--targets out.jsonl", "--save-targets out.jsonl"),
    ("perturb", "--reference true", "--compare-to true"),
    ("restore", "--edited saved", "--unlearned saved"),
    ("scan", "--quiet", "--no-progress"),
    ("scan", "--nmem 7", "--n-controls 7"),
]


def subparser(command: str):
    return build_parser(command, full=False)._subparsers._group_actions[0].choices[command]


def parse(command: str, flags: str):
    return build_parser(command, full=False).parse_args(f"{command} {T} {flags}".split())


@pytest.mark.parametrize("command, old, new", ALIASES, ids=[a[1].split()[0] for a in ALIASES])
def test_old_spelling_sets_what_the_new_one_does_and_warns_once(command, old, new, capsys):
    expected = parse(command, new)
    capsys.readouterr()
    with pytest.warns(DeprecationWarning, match=f"{old.split()[0]} is deprecated"):
        got = parse(command, f"{old} {old}")  # given twice: one note
    assert vars(got) == vars(expected)
    err = capsys.readouterr().err
    assert err.count("is deprecated") == 1 and f"use {new.split()[0]}" in err


@pytest.mark.parametrize("old", ["--targets", "--reference", "--edited", "--quiet", "--nmem"])
def test_old_spellings_are_hidden_from_help(old):
    command = next(c for c, o, _ in ALIASES if o.split()[0] == old)
    words = subparser(command).format_help().split()
    assert not [w for w in words if w.strip("[],") == old]


@pytest.mark.parametrize("spelling", ["L1H2", "l1h2", "1.2"])
def test_heads_in_both_spellings(spelling):
    assert parse("unlearn", f"--head {spelling}").head == (1, 2)
    assert parse("validate-locator", f"--heads {spelling} L0H3").heads == [(1, 2), (0, 3)]


def test_report_and_scan_share_no_progress():
    assert parse("scan", "--no-progress").progress is False and parse("scan", "").progress is True
    assert "--no-progress" in subparser("report").format_help()


def test_restore_and_audit_take_the_unlearned_folder_by_one_name():
    assert str(parse("restore", "--unlearned saved").unlearned) == "saved"
    assert parse("audit", "--unlearned saved").unlearned == ["saved"]
