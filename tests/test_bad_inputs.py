"""Every kind of bad input: exit code 2, one line on stderr naming what was wrong, no traceback, and found
before any model is loaded (`load_model` is replaced by a function that fails the test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import interp.models
from interp.cli import main
from interp.models import TESTBED_DIR

T = ["--model", "testbed", "--device", "cpu"]


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _tokens(n: int, value: int = 1) -> dict:
    return {"tokens": [value] * n}


def _files(tmp: Path) -> None:
    """The bad files and folders the cases below name."""
    (tmp / "empty_dir").mkdir()
    (tmp / "llama").mkdir()
    (tmp / "llama" / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"], "vocab_size": 10}))
    (tmp / "garbled").mkdir()
    (tmp / "garbled" / "config.json").write_text("{not json")
    (tmp / "a_file").write_text("x")
    (tmp / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (tmp / "nul.jsonl").write_text('{"tokens": [1]}\x00\n')
    (tmp / "empty.jsonl").write_text("\n\n")
    (tmp / "bad_json.jsonl").write_text('{"tokens": [1, 2\n')
    (tmp / "folder.jsonl").mkdir()
    _jsonl(tmp / "no_field.jsonl", [{"words": "hello"}])
    _jsonl(tmp / "short.jsonl", [_tokens(20)])
    _jsonl(tmp / "oov.jsonl", [_tokens(100, 10**7)])
    _jsonl(tmp / "negative.jsonl", [_tokens(100, -3)])
    _jsonl(tmp / "floats.jsonl", [{"tokens": [1.5] * 100}])
    _jsonl(tmp / "dup_ids.jsonl", [{"id": "a", **_tokens(100)}, {"id": "a", **_tokens(100)}])
    _jsonl(tmp / "disagree.jsonl", [{"prefix_len": 50, **_tokens(100)}, {"prefix_len": 40, **_tokens(100)}])
    _jsonl(tmp / "text_not_str.jsonl", [{"text": 5}])
    _jsonl(tmp / "ok.jsonl", [_tokens(100)])


CASES = [
    # kind, argv ({tmp} is the test's folder), what the line says
    ("nonexistent model folder", ["memorized", "--model", "./no/such/model"], "no such folder"),
    ("folder that is no checkpoint", ["memorized", "--model", "{tmp}/empty_dir"], "no config.json"),
    ("model spec that is a file", ["memorized", "--model", "{tmp}/a_file"], "no config.json"),
    ("unsupported architecture", ["memorized", "--model", "{tmp}/llama"], "FooForCausalLM is not supported"),
    ("config.json that is not JSON", ["memorized", "--model", "{tmp}/garbled"], "not a Hugging Face model config"),
    ("missing paragraph file", ["memorized", *T, "--paragraphs", "{tmp}/none.jsonl"], "does not exist"),
    ("paragraph file that is a folder", ["memorized", *T, "--paragraphs", "{tmp}/folder.jsonl"], "is not a file"),
    ("binary paragraph file", ["memorized", *T, "--paragraphs", "{tmp}/binary.jsonl"], "not UTF-8 text"),
    ("paragraph file with NUL bytes", ["memorized", *T, "--paragraphs", "{tmp}/nul.jsonl"], "binary file"),
    ("empty paragraph file", ["memorized", *T, "--paragraphs", "{tmp}/empty.jsonl"], "is empty"),
    ("malformed JSON line", ["memorized", *T, "--paragraphs", "{tmp}/bad_json.jsonl"], "line 1: not valid JSON"),
    ("record without text or tokens", ["memorized", *T, "--paragraphs", "{tmp}/no_field.jsonl"], "'tokens' field"),
    ("too-short paragraph", ["memorized", *T, "--paragraphs", "{tmp}/short.jsonl"], "shorter than prefix"),
    ("out-of-vocabulary token", ["memorized", *T, "--paragraphs", "{tmp}/oov.jsonl"], "outside the model's vocab"),
    ("negative token id", ["memorized", *T, "--paragraphs", "{tmp}/negative.jsonl"], "outside the model's vocab"),
    ("tokens that are not integers", ["memorized", *T, "--paragraphs", "{tmp}/floats.jsonl"], "list of integers"),
    ("text that is not a string", ["memorized", *T, "--paragraphs", "{tmp}/text_not_str.jsonl"], "must be a string"),
    ("duplicate paragraph ids", ["memorized", *T, "--paragraphs", "{tmp}/dup_ids.jsonl"], "not unique"),
    ("records of two shapes", ["memorized", *T, "--paragraphs", "{tmp}/disagree.jsonl"], "disagree"),
    (
        "paragraphs longer than the context",
        ["memorized", *T, "--prefix-len", "5000", "--continuation-len", "50"],
        "exceeds the model's context",
    ),
    ("zero batch size", ["memorized", *T, "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    ("negative batch size", ["memorized", *T, "--batch-size", "-4"], "--batch-size: must be at least 1, got -4"),
    ("batch size that is no number", ["memorized", *T, "--batch-size", "many"], "'many' is not a whole number"),
    ("zero prefix length", ["perturb", *T, "--prefix-len", "0"], "--prefix-len: must be at least 1"),
    ("negative continuation length", ["grad-map", *T, "--continuation-len", "-1"], "--continuation-len: must be"),
    ("zero top-k", ["memorized", *T, "--top-k", "0"], "--top-k: must be at least 1"),
    ("zero set size", ["perturb", *T, "--set-size", "0"], "--set-size must be at least 1"),
    ("zero perturbation samples", ["perturb", *T, "--samples", "0"], "--samples must be at least 1"),
    ("negative --nmem-max", ["memorized", *T, "--nmem-max", "-1"], "--nmem-max must be 0 or more"),
    ("zero unlearning runs", ["unlearn", *T, "--runs", "0"], "--runs, --retain, --probe"),
    ("negative unlearn --nmem-max", ["unlearn", *T, "--nmem-max", "-2"], "--nmem-max must be 0 or more"),
    ("zero shifts", ["audit", *T, "--unlearned", str(TESTBED_DIR), "--shifts", "0"], "--shifts must be positive"),
    ("unknown device", ["memorized", "--model", "testbed", "--device", "tpu"], "unknown device 'tpu'"),
    ("unknown dtype", ["memorized", *T, "--dtype", "float8"], "argument --dtype: invalid choice: 'float8'"),
    ("--json that is a folder", ["memorized", *T, "--json", "{tmp}/empty_dir"], "is a folder: give a file name"),
    ("--json under a file", ["memorized", *T, "--json", "{tmp}/a_file/out.json"], "is a file, not a folder"),
    ("--html that is a folder", ["perturb", *T, "--html", "{tmp}/empty_dir"], "--html"),
    ("--save-targets that is a folder", ["perturb", *T, "--save-targets", "{tmp}/empty_dir"], "--save-targets"),
    ("report --out that is a file", ["report", "--out", "{tmp}/a_file"], "exists and is not a folder"),
    ("unlearn --save that is a file", ["unlearn", *T, "--save", "{tmp}/a_file"], "exists and is not a folder"),
    ("scan --out that is a folder", ["scan", *T, "--corpus", "{tmp}/ok.jsonl", "--out", "{tmp}/empty_dir"], "folder"),
    ("restore without --unlearned", ["restore", *T], "restore needs --unlearned DIR"),
    ("restore --unlearned missing", ["restore", *T, "--unlearned", "{tmp}/nothing"], "not a saved model folder"),
    ("head in neither spelling", ["unlearn", *T, "--head", "L1X2"], "write it as L1H6 or 1.6"),
    ("--head with --select reft", ["unlearn", *T, "--select", "reft", "--head", "L1H2"], "drop --head"),
    ("--head with --table", ["unlearn", *T, "--table", "--head", "1.2"], "drop --head"),
    ("--curves without --calibrate", ["unlearn", *T, "--curves", "{tmp}/c.html"], "add --calibrate"),
    ("--calibrate with --lr", ["unlearn", *T, "--calibrate", "--lr", "0.1"], "drop --lr"),
    ("two report presets", ["report", "--quick", "--paper"], "two presets"),
    ("testbed build over the bundled one", ["testbed", "build"], "holds the bundled checkpoint"),
    ("testbed --reference with --quick", ["testbed", "build", "--reference", "--quick"], "drop --quick"),
    ("unknown command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("unknown flag", ["memorized", *T, "--frob"], "unrecognized arguments: --frob"),
]


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bad")
    _files(tmp)
    return tmp


def run(argv: list[str]) -> int:
    """`interp ARGV`'s exit code, whether main returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def no_model(monkeypatch):
    """Every `load_model` the commands can reach refuses. The command modules are imported first, so that none
    binds the refusing stand-in by its own import (a command imported inside this test would keep it for good)."""
    import importlib
    import sys

    from interp.cli import COMMANDS

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was found")

    for module, _ in COMMANDS.values():
        importlib.import_module(f"interp.commands.{module}")
    real = interp.models.load_model
    for name, module in list(sys.modules.items()):
        if name.startswith("interp") and getattr(module, "load_model", None) is real:
            monkeypatch.setattr(module, "load_model", refuse)


@pytest.mark.parametrize("kind, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2_before_any_model(kind, argv, message, bad, no_model, capsys):
    assert run([a.replace("{tmp}", str(bad)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_at_least_30_kinds():
    assert len({kind for kind, _, _ in CASES}) >= 30


def test_bad_backend_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("INTERP_BACKEND", "foo")
    assert run(["memorized", *T]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "interp: error: INTERP_BACKEND='foo': use one of hooked, bridge (or leave it unset)"


def test_unwritable_output_is_refused_before_work(bad, no_model, monkeypatch, capsys):
    """An output folder the user may not write in (simulated: the tests may run as root, who may write anywhere)."""
    locked = bad / "locked"
    locked.mkdir(exist_ok=True)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
    assert run(["memorized", *T, "--json", str(locked / "r.json")]) == 2
    assert f"cannot write in {locked}" in capsys.readouterr().err


def test_an_output_error_loses_nothing(bad, no_model, capsys):
    """A bad --html is found before the --json that precedes it is touched: an earlier result survives."""
    kept = bad / "kept.json"
    kept.write_text('{"kept": true}')
    assert run(["perturb", *T, "--json", str(kept), "--html", str(bad / "empty_dir")]) == 2
    assert json.loads(kept.read_text()) == {"kept": True}


def test_failed_atomic_write_leaves_no_tmp(bad):
    from interp.io import write_json

    with pytest.raises(OSError):
        write_json(bad / "empty_dir", {"a": 1})
    assert not list(bad.glob(".empty_dir.tmp"))


def test_cut_paragraphs_are_counted_in_one_note(tmp_path, monkeypatch, capsys):
    """Paragraphs longer than prefix + continuation: how many were cut, and to what."""
    from interp.cli import build_parser
    from interp.commands.common import preflight

    f = _jsonl(tmp_path / "long.jsonl", [_tokens(300), _tokens(100), {"id": "x", **_tokens(101)}])
    args = build_parser("memorized", full=False).parse_args(["memorized", *T, "--paragraphs", str(f)])
    preflight(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"interp: note: {f}: 2 of 3 paragraphs were longer than prefix + continuation = 100 tokens; each was cut "
        "to its first 100 (prefix: tokens 1-50, continuation: the next 50)"
    ]
    assert args.preloaded.tokens.shape == (3, 100)
