"""`interp memorized` end to end, and user errors: one line, exit code 2, no traceback."""

from __future__ import annotations

import json

import pytest

from interp.cli import main


def test_memorized_json_on_testbed(tmp_path, capsys, testbed, testbed_paragraph_set):
    from interp import score_paragraphs

    sub = testbed_paragraph_set.select(range(0, len(testbed_paragraph_set), 20))
    f = tmp_path / "p.jsonl"
    sub.save_jsonl(f)
    out = tmp_path / "r.json"
    assert main(["memorized", "--model", "testbed", "--device", "cpu", "--paragraphs", str(f), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "EM histogram" in printed and "repeat count" in printed
    result = json.loads(out.read_text())
    assert set(result) == {
        "model",
        "options",
        "prefix_len",
        "continuation_len",
        "sampling",
        "extraction_by_em_bin",
        "paragraphs",
        "mem_ids",
        "nmem_ids",
    }
    assert "log10 p by EM bin" in printed and sum(r["n"] for r in result["extraction_by_em_bin"]) == len(sub)
    assert result["prefix_len"] == 50 and result["continuation_len"] == 50
    assert result["options"] == {"nmem_max": 10, "top_k": None}
    scores = score_paragraphs(testbed, sub)
    em = scores.em.tolist()
    assert [r["em"] for r in result["paragraphs"]] == em
    assert [r["log10_p"] for r in result["paragraphs"]] == pytest.approx(scores.log10_p.tolist(), abs=1e-9)
    assert [r["count"] for r in result["paragraphs"]] == list(sub.counts)
    assert result["mem_ids"] == [pid for pid, e in zip(sub.ids, em) if e == 50]
    assert result["nmem_ids"] == [pid for pid, e in zip(sub.ids, em) if e <= 10]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["memorized", "--model", "not-a-model-anywhere"], "testbed"),
        (["memorized", "--model", "testbed", "--paragraphs", "/no/file.jsonl"], "does not exist"),
        (["memorized", "--model", "testbed", "--device", "cuda:3"], "CUDA"),
        (["memorized", "--model", "testbed", "--dtype", "float8"], "dtype"),
        (
            [
                "memorized",
                "--model",
                "testbed",
                "--paragraphs",
                "CONTEXT",
                "--prefix-len",
                "200",
                "--continuation-len",
                "100",
            ],
            "context",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys, tmp_path):
    if "CONTEXT" in argv:  # paragraphs longer than the model's context: a text file with no declared lengths
        path = tmp_path / "long.jsonl"
        path.write_text('{"text": "' + "x = 1 " * 400 + '"}\n')
        argv = [str(path) if a == "CONTEXT" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # an argument argparse rejects (--dtype's choices)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_line_is_named(tmp_path, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"tokens": [1]}\n{oops\n')
    assert main(["memorized", "--model", "testbed", "--paragraphs", str(f)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_json_output_not_written_on_error(tmp_path, capsys):
    out = tmp_path / "keep.json"
    out.write_text('{"kept": true}')
    assert (
        main(["memorized", "--model", "testbed", "--paragraphs", str(tmp_path / "none.jsonl"), "--json", str(out)]) == 2
    )
    assert json.loads(out.read_text()) == {"kept": True}


@pytest.mark.parametrize("command", [["grad-map", "--no-per-paragraph"], ["perturb", "--samples", "1"]])
@pytest.mark.slow
def test_commands_draw_nmem_from_trained_text_only(command, tmp_path, testbed_paragraph_set):
    """Every command picks MEM / NMEM with the report's selection: never-trained ('heldout') text is no NMEM."""
    splits = testbed_paragraph_set.meta["split"]
    pick = lambda split, n: [i for i, s in enumerate(splits) if s == split][:n]  # noqa: E731
    sub = testbed_paragraph_set.select(pick("planted", 2) + pick("heldout", 6) + pick("once", 6))
    f = tmp_path / "p.jsonl"
    sub.save_jsonl(f)
    out = tmp_path / "out.json"
    assert main([*command, "--model", "testbed", "--paragraphs", str(f), "--set-size", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    nmem_ids = result["nmem_ids"]
    heldout = {pid for pid, s in zip(sub.ids, sub.meta["split"]) if s == "heldout"}
    assert nmem_ids and not heldout & set(nmem_ids)
    given = {"per_paragraph": False} if command[0] == "grad-map" else {"samples": 1}
    assert result["options"]["set_size"] == 4 and given.items() <= result["options"].items()  # for --config


HEAVY = ("torch", "transformer_lens", "transformers")


LIGHT = [
    ["--help"],
    [],
    ["frobnicate"],
    ["--backend", "nope"],
    ["memorized", "--help"],
    ["memorized", "--model", "testbed", "--batch-size", "0"],
    ["scan", "--help"],
    ["scan", "--corpus", "c.txt", "--shard", "x"],
    ["testbed", "build", "--help"],
    ["report", "--help"],
    ["report", "--batch-size", "0"],
    ["grad-map", "--help"],
    ["grad-map", "--model", "testbed", "--reduce", "median"],
    ["perturb", "--help"],
    ["perturb", "--model", "testbed", "--batch-size", "0"],
    ["locate-head", "--help"],
    ["locate-head", "--model", "testbed", "--methods", "vibes"],
    ["validate-locator", "--help"],
    ["validate-locator", "--model", "testbed", "--lr", "fast"],
    ["unlearn", "--help"],
    ["unlearn", "--model", "testbed", "--frobnicate"],
    ["restore", "--help"],
    ["restore", "--model", "testbed", "--experiments", "nope"],
    ["audit", "--help"],
    ["audit", "--model", "testbed"],
]


@pytest.mark.parametrize("argv", LIGHT, ids=[" ".join(a) or "(none)" for a in LIGHT])
def test_help_and_argument_errors_import_no_torch(argv):
    """`interp --help`, a top-level argument error, and every command's help and argument errors (a bad value, an
    unknown flag, a missing required flag) are answered without importing torch, TransformerLens or transformers:
    each command's options are defined apart from the library (interp.options, interp.constants and the light
    options / config module of each package) and its module imports the library inside `run` (checked in the
    child's sys.modules, not by a clock)."""
    import subprocess
    import sys

    child = (
        "import runpy, sys\n"
        f"sys.argv = ['interp', *{argv!r}]\n"
        "try:\n    runpy.run_module('interp', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], code)\n"
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith(f"HEAVY [] {0 if '--help' in argv else 2}"), out.stdout + out.stderr


def _subparsers():
    import argparse

    from interp.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    nested = {}
    for name, parser in sub.choices.items():
        nested[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                nested |= {f"{name} {n}": p for n, p in action.choices.items()}
    return nested


def test_every_flag_shows_its_default_and_no_internal_names():
    import argparse
    import re

    for name, parser in _subparsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if (
                not action.option_strings
                or action.help == argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction)
            ):
                continue
            shown = formatter._get_help_string(action)
            assert re.search(r"\(default|\(required|same as --", shown), f"interp {name} {action.option_strings}"
        text = parser.format_help()
        internal = re.findall(r"[A-Z]+_OR_[A-Z]+|\((?:\w+Config|\w+Options|MatchedForgetting|\w+Sets)\b", text)
        assert not internal, f"interp {name}: {internal}"


def test_dtype_help_lists_what_the_loader_accepts():
    from interp.commands.common import DTYPES
    from interp.models import pick_dtype

    for dtype in DTYPES:
        pick_dtype(dtype)  # raises on a name the loader does not know
    help = next(a.help for a in _subparsers()["memorized"]._actions if "--dtype" in a.option_strings)
    assert all(d in help for d in DTYPES)


def test_testbed_build_seed_has_help():
    seed = next(a for a in _subparsers()["testbed build"]._actions if "--seed" in a.option_strings)
    assert seed.help and "default" in seed.help


def test_constants_repeated_for_lazy_parsing_agree_with_the_library():
    import interp.backend
    import interp.constants
    import interp.data
    import interp.metrics
    import interp.models
    from interp import cli
    from interp.commands import testbed

    assert (cli.BACKENDS, cli.ENV) == (interp.backend.BACKENDS, interp.backend.ENV)
    assert interp.data.BATCH_SIZE is interp.constants.BATCH_SIZE
    assert interp.metrics.NMEM_MAX_EM is interp.constants.NMEM_MAX_EM
    assert testbed.TESTBED_DIR == interp.models.TESTBED_DIR.resolve()
    assert testbed.TESTBED_REFERENCE_DIR == interp.models.TESTBED_REFERENCE_DIR.resolve()


def test_backward_passes_default_to_one_grad_batch_size():
    """Paragraphs per backward pass default to interp.constants.GRAD_BATCH_SIZE in the library, grad-map and the
    report alike."""
    import inspect

    from interp.constants import GRAD_BATCH_SIZE
    from interp.gradient_norms import per_paragraph_norms
    from interp.gradients import gradient_map, parameter_gradients
    from interp.options import GRAD_MAP
    from interp.report.options import ReportOptions

    defaults = [inspect.signature(f).parameters["batch_size"].default for f in (gradient_map, parameter_gradients)]
    defaults += [inspect.signature(per_paragraph_norms).parameters["batch_size"].default]
    assert defaults + [GRAD_MAP.grad_batch_size, ReportOptions().grad_batch_size] == [GRAD_BATCH_SIZE] * 5


def test_conventions_module_is_not_hidden():
    import interp
    from interp.conventions import PAPER, TOOLKIT

    assert interp.conventions.PAPER is PAPER and interp.conventions.TOOLKIT is TOOLKIT
    with pytest.warns(DeprecationWarning, match="interp.conventions.conventions"):
        assert interp.conventions("paper") is PAPER


@pytest.fixture
def builds(monkeypatch) -> list[tuple[str, object]]:
    """The builds `interp testbed build` asks for, as (kind, folder); nothing is trained."""
    import interp.testbed.build as build

    meta = {
        "n_mem": 1,
        "fraction_once_em_le_10": 1.0,
        "memorization_by_count": {},
        "position_robustness": {"table": []},
        "data": {"planted_share": 0.1},
        "training": {"train_seconds": 1, "wall_seconds": 1},
    }
    seen = []

    def record(kind):
        def call(out, cfg=None):
            seen.append((kind, out))
            return meta

        return call

    monkeypatch.setattr(build, "build_testbed", record("testbed"))
    monkeypatch.setattr(build, "build_reference", record("reference"))
    return seen


@pytest.mark.parametrize("flags, kind", [([], "testbed"), (["--reference"], "reference")])
def test_testbed_build_writes_elsewhere_with_out(flags, kind, tmp_path, builds):
    """`--out DIR` builds there (the testbed or, with --reference, its reference model)."""
    assert main(["testbed", "build", *flags, "--out", str(tmp_path / "b")]) == 0
    assert builds == [(kind, tmp_path / "b")]


def test_testbed_build_force_replaces_the_bundled_checkpoint(builds):
    from interp.commands.testbed import TESTBED_DIR

    assert main(["testbed", "build", "--force"]) == 0
    assert builds == [("testbed", TESTBED_DIR)]


def test_unlearn_warns_when_no_target_was_forgotten():
    from types import SimpleNamespace

    from interp.commands.unlearn import nothing_forgotten
    from interp.unlearning import MatchedForgetting

    table = SimpleNamespace(
        labels=("unlearn top", "unlearn all"),
        configs=({"lr": 1e-5}, {"lr": 1e-5}),
        before={"target_em": 50.0},
        after=({"target_em": 50.0}, {"target_em": 3.0}),
    )
    lines = nothing_forgotten(table, None)
    assert len(lines) == 1 and lines[0].startswith("unlearn top: no target was forgotten") and "--calibrate" in lines[0]
    assert nothing_forgotten(table, MatchedForgetting()) == []


def test_scan_controls_are_sized_to_the_corpus():
    from interp.cli import build_parser
    from interp.commands.scan import BYTES_PER_TOKEN, scan_config

    args = build_parser("scan", full=False).parse_args(["scan", "--model", "testbed", "--corpus", "c.txt"])
    small = 7000  # bytes: about 2,300 tokens, 23 windows of 100
    assert scan_config(args, small).n_controls == small // (BYTES_PER_TOKEN * 100)
    assert scan_config(args, 10**9).n_controls == scan_config(args).n_controls == 1000
    given = build_parser("scan", full=False).parse_args(["scan", "--corpus", "c.txt", "--n-controls", "500"])
    assert scan_config(given, small).n_controls == 500


def test_memorized_progress_counts_paragraphs(capsys, testbed, testbed_paragraph_set):
    from interp import score_paragraphs
    from interp.cli import build_parser
    from interp.commands.memorized import scored_with_progress

    sub = testbed_paragraph_set.select(range(0, 40))
    args = build_parser("memorized", full=False).parse_args(["memorized", "--model", "testbed", "--batch-size", "4"])
    got = scored_with_progress(testbed, sub, args)
    want = score_paragraphs(testbed, sub, batch_size=4)
    assert got.ids == want.ids and torch_equal(got, want)
    err = capsys.readouterr().err
    assert "40/40" in err and "paragraph" in err


def torch_equal(a, b) -> bool:
    import torch

    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("em", "nll", "hits", "log10_p", "token_accuracy"))


def test_stage_shows_what_runs_and_stops_its_ticker(capsys):
    import threading
    import time

    from interp.commands.common import stage

    before = threading.active_count()
    with stage("scoring 12 paragraphs", every=0.01):
        time.sleep(0.05)
    assert threading.active_count() == before
    assert "scoring 12 paragraphs: 00:00" in capsys.readouterr().err
    with stage("silent", enabled=False):
        pass
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "command", ["memorized", "perturb", "grad-map", "locate-head", "unlearn", "restore", "scan", "report"]
)
def test_every_long_command_takes_no_progress(command):
    from interp.cli import build_parser

    args = build_parser(command, full=False).parse_args([command, "--model", "testbed", "--no-progress"])
    given = {k: v for k, v in vars(args).items() if "progress" in k}
    assert list(given.values()) == [False]


def test_third_party_trust_lines_are_silenced(caplog):
    """The `kernels` package logs "Skipping publisher trust check ..." at every offline load; the command turns it
    off so that an error stays one line."""
    import logging

    hf_hub = pytest.importorskip("kernels._internals.hf_hub")
    from interp.cli import _quiet_third_party

    level = logging.getLogger("kernels").level
    try:
        _quiet_third_party()
        with caplog.at_level(logging.WARNING):
            hf_hub.logger.warning("Skipping publisher trust check for 'x' because Hugging Face Hub is in offline mode.")
        assert not caplog.records
    finally:
        logging.getLogger("kernels").setLevel(level)
