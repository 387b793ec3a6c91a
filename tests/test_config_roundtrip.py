"""Every command takes --config FILE (its options' fields, as its --json output records them under "options"): the
options a command line builds, written as the command writes them and read back with --config, are the same
options; a flag given beside --config beats the file; a field the command has no option for is refused by name."""

from __future__ import annotations

import json
import warnings

import pytest

from interp.cli import build_parser, main
from interp.commands.options_cli import given_options, options_record, with_options
from interp.errors import UserError


def parse(line: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return build_parser().parse_args(line.split())


def _single(cls, preset):
    """The options of a command with one options class, built as its `run` builds them."""
    return lambda args: with_options(preset, given_options(args, cls))


def _memorized():
    from interp.options import MEMORIZED, MemorizedOptions

    return _single(MemorizedOptions, MEMORIZED)


def _grad_map():
    from interp.options import GRAD_MAP, GradMapOptions

    return _single(GradMapOptions, GRAD_MAP)


def _perturb():
    from interp.options import PERTURB, PerturbOptions

    return _single(PerturbOptions, PERTURB)


def _restore():
    from interp.options import RESTORE, RestoreOptions

    return _single(RestoreOptions, RESTORE)


def _audit():
    from interp.commands.audit import audit_config, audit_sets

    return lambda args: (audit_sets(args), audit_config(args))


def _unlearn():
    from interp.commands.unlearn import unlearn_options

    return unlearn_options


def _report():
    from interp.commands.report import report_options

    return report_options


COMMANDS = {
    "memorized": ("--nmem-max 3 --top-k 5", _memorized),
    "grad-map": ("--objective contrastive --reduce l2 --set-size 5 --no-per-paragraph --grad-batch-size 3", _grad_map),
    "perturb": ("--samples 2 --set-size 3 --compare-to true --seed 5", _perturb),
    "restore": ("--width 3 --experiments values,attention", _restore),
    "audit": ("--retain 4 --attacks int4,shift --shifts 2 3 --width 3 --seed 2", _audit),
    "unlearn": (
        "--paper --runs 2 --fraction 0.01 --layers 0,1 --steps 3 --lr 0.02 --reft-rank 2 --relearn-steps 0 --alpha 0.5 "
        "--level 4",
        _unlearn,
    ),
    "locate-head": ("--methods patching,ablation --candidates 3 --set-size 5 --seed 7", None),
    "validate-locator": ("--set-size 5 --seed 3", None),
}


def _json_of(args, built) -> dict:
    """What the command's --json output records under "options"."""
    if args.command == "unlearn":
        from interp.commands.unlearn import options_json

        return options_json(args)
    return options_record(args, *(built if isinstance(built, tuple) else (built,)))


@pytest.mark.parametrize("command", [c for c, (_, build) in COMMANDS.items() if build is not None])
def test_options_written_and_read_back_with_config_are_the_same(command, tmp_path):
    flags, build = COMMANDS[command]
    build = build()
    required = f"{command} --model testbed" + (" --unlearned x" if command == "audit" else "")
    args = parse(f"{required} {flags}")
    built = build(args)
    assert built != build(parse(required)), "the flags changed nothing"
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"model": "testbed", "options": _json_of(args, built)}))
    assert build(parse(f"{required} --config {out}")) == built


def test_report_options_round_trip_and_the_old_flat_file(tmp_path):
    from dataclasses import asdict

    from interp.commands.report import report_options

    args = parse("report --quick --n-mem 3 --batch-size 8 --steps memorization,heads --reft false")
    built = report_options(args)
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"options": asdict(built)}))
    assert report_options(parse(f"report --config {out}")) == built
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"n_mem": 3}))
    assert report_options(parse(f"report --config {flat}")).n_mem == 3


def test_scan_reads_back_its_summarys_config(tmp_path):
    from interp.commands.scan import scan_config
    from interp.scan.engine import to_config_json

    args = parse("scan --corpus c.txt --stride 2 --exact --n-controls 7 --boilerplate x+ --no-merge --seed 4")
    built = scan_config(args, 10**9)
    summary = tmp_path / "scan.summary.json"
    summary.write_text(json.dumps({"mode": "exact", "config": to_config_json(built)}))
    assert scan_config(parse(f"scan --corpus c.txt --config {summary}"), 10**9) == built


def test_a_flag_beats_the_config_file(tmp_path):
    from interp.commands.unlearn import unlearn_options
    from interp.options import GRAD_MAP, GradMapOptions

    cfg = tmp_path / "grad.json"
    cfg.write_text(json.dumps({"set_size": 5, "grad_batch_size": 3}))
    args = parse(f"grad-map --model testbed --config {cfg} --set-size 32")
    o = with_options(GRAD_MAP, given_options(args, GradMapOptions))
    assert o.set_size == 32 and o.grad_batch_size == 3
    cfg.write_text(json.dumps({"UnlearnConfig": {"lr": 0.5, "steps": 2}, "UnlearnSets": {"runs": 3}}))
    options = unlearn_options(parse(f"unlearn --model testbed --config {cfg} --steps 5"))
    assert (options["UnlearnConfig"].lr, options["UnlearnConfig"].steps, options["UnlearnSets"].runs) == (0.5, 5, 3)


@pytest.mark.parametrize(
    "command, data, message",
    [
        ("grad-map", {"set_sise": 5}, "unknown grad-map option(s) set_sise; the options are"),
        ("unlearn", {"lr": 0.1}, "unknown section(s) lr; the sections are UnlearnSets"),
        ("unlearn", {"UnlearnConfig": {"select": "all"}}, "unknown unlearn UnlearnConfig option(s) select"),
        ("memorized", {"nmem_max": -1}, "--nmem-max must be 0 or more, got -1"),
        ("memorized", {"top_k": "5"}, "top_k must be int or None, got '5'"),
        ("grad-map", {"per_paragraph": 1, "set_size": 4}, "per_paragraph must be bool, got 1"),
        ("unlearn", {"UnlearnConfig": {"layers": ["mlp"]}}, "layers must be a comma-separated list of int or None"),
    ],
)
def test_config_errors_name_the_field(command, data, message, tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(data))
    assert main([command, "--model", "testbed", "--config", str(cfg)]) == 2
    assert message in capsys.readouterr().err


def test_locator_commands_take_config_too(tmp_path):
    from interp.locator.options import LocateOptions

    cfg = tmp_path / "locate.json"
    cfg.write_text(json.dumps({"candidates": 3, "set_size": 5}))
    given = given_options(parse(f"locate-head --model testbed --config {cfg} --candidates 4"), LocateOptions)
    assert given == {"candidates": 4, "set_size": 5}
    with pytest.raises(UserError, match="no such file"):
        given_options(parse(f"locate-head --model testbed --config {tmp_path / 'none.json'}"), LocateOptions)


def test_memorized_records_its_options_and_reruns_them(tmp_path, testbed_paragraph_set):
    """End to end: `interp memorized --json` records its options; --config that file reruns with them."""
    small = tmp_path / "p.jsonl"
    testbed_paragraph_set.select(range(12)).save_jsonl(small)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    common = ["memorized", "--model", "testbed", "--device", "cpu", "--paragraphs", str(small), "--no-progress"]
    assert main([*common, "--top-k", "3", "--nmem-max", "2", "--json", str(first)]) == 0
    assert main([*common, "--config", str(first), "--json", str(second)]) == 0
    one, two = json.loads(first.read_text()), json.loads(second.read_text())
    assert one["options"] == {"nmem_max": 2, "top_k": 3} and one == two
