"""One source of configuration: ReportOptions' defaults and validation, the report flags generated
from its fields, --config (JSON, TOML, a results.json) and the round trip through results.json."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch

from interp.cli import build_parser
from interp.commands.report import image_formats, report_options
from interp.conventions import PAPER, TABLE, TOOLKIT, conventions, markdown_table
from interp.data import Paragraphs
from interp.errors import UserError
from interp.report import ReportOptions, Step, run_report
from interp.views.report_html import Section


def parse(*argv: str):
    return report_options(build_parser().parse_args(["report", *argv]))


def test_every_option_has_a_flag_with_its_dataclass_default_in_the_help():
    parser = build_parser()
    report = parser._subparsers._group_actions[0].choices["report"]
    flags = {a.option_strings[0]: a for a in report._actions if a.option_strings}
    for f in fields(ReportOptions):
        assert f"--{f.name.replace('_', '-')}" in flags, f"no flag for ReportOptions.{f.name}"
        assert f.metadata.get("help"), f"ReportOptions.{f.name} has no help"
    assert "(default: 16)" in flags["--n-mem"].help and "(default: unlearn,edit)" in flags["--unlearn-methods"].help


def test_quick_exports_static_images_only_on_request():
    """A full report saves PNG and SVG; --quick saves none unless --formats asks (export is a sixth of its time)."""

    def formats(*argv: str) -> str:
        return image_formats(build_parser().parse_args(["report", *argv]))

    assert formats() == "png,svg" and formats("--paper") == "png,svg"
    assert formats("--quick") == ""
    assert formats("--quick", "--formats", "png,svg") == "png,svg" and formats("--formats", "") == ""


def test_presets_config_and_flags_apply_in_order(tmp_path):
    assert parse() == ReportOptions()
    assert parse("--quick") == ReportOptions.quick()
    assert parse("--paper") == ReportOptions.paper() and parse("--paper").conventions == "paper"
    assert parse("--paper").unlearn_lr == PAPER.unlearn_lr and parse("--paper").unlearn_steps == PAPER.unlearn_steps
    cfg = tmp_path / "opts.json"
    cfg.write_text(json.dumps({"n_mem": 5, "unlearn_methods": ["unlearn"], "unlearn_lr": 0.01}))
    opts = parse("--config", str(cfg), "--n-mem", "7", "--steps", "memorization,heads", "--unlearn-level", "none")
    assert opts.n_mem == 7 and opts.unlearn_methods == ("unlearn",) and opts.unlearn_lr == 0.01
    assert opts.steps == ("memorization", "heads") and opts.unlearn_level is None
    toml = tmp_path / "opts.toml"
    toml.write_text('n_nmem = 20\nreft = false\nrestore_selects = ["topk"]\n')
    opts = parse("--quick", "--config", str(toml))
    assert opts == ReportOptions.quick(n_nmem=20, reft=False, restore_selects=("topk",))
    assert parse("--reft", "false").reft is False and parse("--batch-size", "8").batch_size == 8


def test_an_explicit_flag_beats_the_config_even_at_its_default(tmp_path):
    """--batch-size 64 given is the user's choice, though 64 is the default: it beats the file's 8; the file's 8
    beats the default; the file beats the preset."""
    cfg = tmp_path / "opts.json"
    cfg.write_text(json.dumps({"batch_size": 8, "n_mem": 5}))
    assert parse("--config", str(cfg), "--batch-size", "64").batch_size == 64 == ReportOptions().batch_size
    assert parse("--config", str(cfg)).batch_size == 8 and parse("--quick", "--config", str(cfg)).n_mem == 5
    assert parse("--config", str(cfg), "--n-mem", "16").n_mem == 16


def test_bad_options_name_the_field(tmp_path):
    with pytest.raises(UserError, match=r"n_mem \(--n-mem\) must be at least 1"):
        parse("--n-mem", "0")
    with pytest.raises(UserError, match="unknown report option.*n_men"):
        cfg = tmp_path / "typo.json"
        cfg.write_text('{"n_men": 3}')
        parse("--config", str(cfg))
    with pytest.raises(UserError, match="unknown conventions"):
        ReportOptions(conventions="mine")
    with pytest.raises(UserError, match="unlearn_methods"):
        ReportOptions(unlearn_methods=("forget",))
    with pytest.raises(UserError, match="unlearn_baselines.*ga, graddiff, npo"):
        ReportOptions(unlearn_baselines=("unlearn",))
    with pytest.raises(UserError, match=r"batch_size \(--batch-size\) must be at least 1"):
        parse("--batch-size", "0")
    with pytest.raises(UserError, match="two presets"):
        parse("--quick", "--paper")
    with pytest.raises(SystemExit):  # argparse: a value that is not an integer
        parse("--n-mem", "many")
    with pytest.raises(UserError, match="no such file"):
        parse("--config", str(tmp_path / "missing.json"))


def test_results_json_reruns_with_exactly_its_options(tmp_path, tiny_model):
    """run_report writes its options into results.json; --config results.json reads them back equal."""
    model = tiny_model(n_layers=1, d_vocab=20, n_ctx=16)
    paragraphs = Paragraphs(
        torch.randint(0, 20, (4, 8), generator=torch.Generator().manual_seed(0)), 4, tuple(f"p{i}" for i in range(4))
    )
    step = Step(
        "only",
        lambda inputs: _Value(inputs.options.n_mem),
        lambda result, results: Section(key="only", title="only", text=str(result.value)),
        options=("n_mem",),
    )
    options = ReportOptions.paper(
        n_mem=3, unlearn_methods=("unlearn",), steps=("only",), max_paragraphs=4, progress=False
    )
    run_report(model, paragraphs, tmp_path, options=options, steps=[step], image_formats=())
    again = parse("--config", str(tmp_path / "results.json"))
    assert again == options


class _Value:
    def __init__(self, value: int):
        self.value = value

    def to_json(self) -> dict:
        return {"value": self.value}


def test_conventions_presets_and_table():
    assert conventions("toolkit") is TOOLKIT and conventions("paper") is PAPER
    assert PAPER.decay_outside_mask and not TOOLKIT.decay_outside_mask
    assert PAPER.rare_token_score == "tau" and TOOLKIT.rare_token_score == "excess"
    assert TOOLKIT.unlearn_lr is None and PAPER.restore_width == 5 and TOOLKIT.restore_width is None
    table = markdown_table()
    assert table.count("\n") == len(TABLE) + 1 and all(row[0] in table for row in TABLE)
    with pytest.raises(UserError):
        conventions("nature")


def test_readme_table_is_the_conventions_table():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "README's conventions table differs from interp.conventions.TABLE"
