"""Command lines that worked before the flags were generated from the config dataclasses build the same configs.

The expected values are written out by hand from the hand-written flags' old defaults.
"""

import argparse
import warnings

import pytest

from interp.audit import AuditConfig
from interp.cli import build_parser, main
from interp.commands import audit, scan, unlearn
from interp.data import BOILERPLATE_PATTERNS
from interp.reft import ReftConfig
from interp.scan import ScanConfig
from interp.unlearning import MatchedForgetting, RelearnConfig, UnlearnConfig
from interp.unlearning.proxy import ProxyConfig


def parse(line: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return build_parser().parse_args(line.split())


def weights(**changes) -> UnlearnConfig:
    values = dict(
        method="unlearn",
        select="topk",
        fraction=0.001,
        scope="global",
        layers=None,
        components=None,
        head=None,
        lr=1e-5,
        steps=5,
        weight_decay=1.0,
        nll_weight=None,
        retain_weight=1.0,
        npo_beta=0.1,
        seed=0,
        decay_outside_mask=False,
    )
    return UnlearnConfig(**(values | changes))


def reft(**changes) -> ReftConfig:
    values = dict(method="unlearn", layer=None, rank=4, lr=1e-3, steps=20, weight_decay=0.0, seed=0)
    return ReftConfig(**(values | changes))


UNLEARN = "unlearn --model testbed"


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", [weights()]),
        (
            "--method ga --select random --fraction 0.01 --scope component --head 1.2 --components W_V,W_O "
            "--lr 1e-4 --steps 7 --weight-decay 0.5 --seed 3 --decay-outside-mask",
            [
                weights(
                    method="ga",
                    select="random",
                    fraction=0.01,
                    scope="component",
                    layers=(1,),
                    components=("W_V", "W_O"),
                    head=2,
                    lr=1e-4,
                    steps=7,
                    weight_decay=0.5,
                    seed=3,
                    decay_outside_mask=True,
                )
            ],
        ),
        ("--layers 0,1 --paper", [weights(layers=(0, 1), decay_outside_mask=True)]),
        (
            "--select reft --method npo --steps 30 --reft-layer 1 --reft-rank 2 --seed 5",
            [reft(method="npo", layer=1, rank=2, steps=30, seed=5)],
        ),
        ("--select reft --lr 0.01 --weight-decay 0.1", [reft(lr=0.01, weight_decay=0.1)]),
        (
            "--table --paper --fraction 0.01 --seed 2 --scope component --method ga",
            [
                weights(method=m, select=s, fraction=0.01, decay_outside_mask=True)
                for m in ("unlearn", "edit")
                for s in ("all", "topk", "random")
            ]
            + [weights(method=m, fraction=0.01, seed=2, decay_outside_mask=True) for m in ("ga", "graddiff", "npo")]
            + [reft(seed=2)],
        ),
        (
            "--table --steps 3 --lr 1e-3",
            [
                weights(method=m, select=s, steps=3, lr=1e-3)
                for m in ("unlearn", "edit")
                for s in ("all", "topk", "random")
            ]
            + [weights(method=m, steps=3, lr=1e-3) for m in ("ga", "graddiff", "npo")]
            + [reft(steps=3, lr=1e-3)],
        ),
    ],
)
def test_unlearn_configs_as_before(flags, expected):
    assert unlearn._configs(parse(f"{UNLEARN} {flags}")) == expected


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", RelearnConfig(steps=10, lr=1e-4, data="prefix")),
        ("--relearn-steps 3 --relearn-lr 1e-3 --relearn-data retain", RelearnConfig(steps=3, lr=1e-3, data="retain")),
        ("--relearn-steps 0", None),
    ],
)
def test_unlearn_relearning_as_before(flags, expected):
    assert unlearn._relearn(parse(f"{UNLEARN} {flags}")) == expected


@pytest.mark.parametrize(
    "flags, method, steps, lr, weight_decay, seed, alpha",
    [
        ("--proxy small", "unlearn", 10, 1e-3, 0.0, 0, 1.0),
        ("--proxy small --method ga --steps 3 --seed 1 --alpha 0.5 --fraction 0.5", "ga", 3, 1e-3, 0.0, 1, 0.5),
        ("--proxy small --lr 0.01 --weight-decay 0.2", "unlearn", 10, 0.01, 0.2, 0, 1.0),
    ],
)
def test_unlearn_proxy_as_before(monkeypatch, testbed, flags, method, steps, lr, weight_decay, seed, alpha):
    monkeypatch.setattr(unlearn, "load_model", lambda spec, **kw: testbed)
    row = unlearn._proxy(testbed, parse(f"{UNLEARN} {flags}"))
    small = weights(method=method, select="all", lr=lr, steps=steps, weight_decay=weight_decay, seed=seed)
    assert row.config == ProxyConfig(small="small", unlearn=small, alpha=alpha)


@pytest.mark.parametrize(
    "flags, sets, matched",
    [
        ("", dict(runs=1, retain=10, probe=50, nmem_max=10, perturb_samples=4), None),
        (
            "--calibrate",
            dict(runs=1, retain=10, probe=50, nmem_max=10, perturb_samples=4),
            dict(level=None, tolerance=0.4),
        ),
        (
            "--runs 3 --retain 5 --probe 20 --calibrate --level 5 --tolerance 0.1",
            dict(runs=3, retain=5, probe=20, nmem_max=10, perturb_samples=4),
            dict(level=5, tolerance=0.1),
        ),
        (
            "--nmem-max 3 --perturb-samples 2 --level 7 --tolerance 1",
            dict(runs=1, retain=10, probe=50, nmem_max=3, perturb_samples=2),
            None,
        ),
    ],
)
def test_unlearn_sets_and_calibration_as_before(flags, sets, matched):
    args = parse(f"{UNLEARN} {flags}")
    assert unlearn._sets(args) == unlearn.UnlearnSets(**sets)
    assert unlearn._matched(args) == (None if matched is None else MatchedForgetting(**matched))


@pytest.mark.parametrize("flags", ["--runs 0", "--retain 0", "--probe 0", "--runs 2 --probe -1"])
def test_unlearn_sets_must_be_at_least_one(flags, capsys):
    assert main(f"{UNLEARN} {flags}".split()) == 2
    assert "interp: error: --runs, --retain and --probe must be at least 1\n" in capsys.readouterr().err


AUDIT = "audit --model testbed --unlearned folder"


@pytest.mark.parametrize(
    "flags, expected",
    [
        (
            "",
            AuditConfig(
                attacks=(
                    "int8",
                    "int4",
                    "relearn_prefix",
                    "relearn_retain",
                    "relearn_related",
                    "restore",
                    "perturb",
                    "shift",
                ),
                group_size=32,
                relearn_steps=10,
                relearn_lr=1e-4,
                related_limit=16,
                related_ngram=8,
                width=None,
                restore_experiments=("coefficients", "attention", "both"),
                perturb_k=32,
                shifts=(1, 2, 4, 8),
                seed=0,
                batch_size=64,
            ),
        ),
        (
            "--attacks int4,relearn_retain --group-size 64 --relearn-steps 3 --relearn-lr 1e-3 --related-limit 4 "
            "--width 3 --restore-experiments values,both --perturb-k 8 --shifts 1,3 --seed 2 --batch-size 8",
            AuditConfig(
                attacks=("int4", "relearn_retain"),
                group_size=64,
                relearn_steps=3,
                relearn_lr=1e-3,
                related_limit=4,
                related_ngram=8,
                width=3,
                restore_experiments=("values", "both"),
                perturb_k=8,
                shifts=(1, 3),
                seed=2,
                batch_size=8,
            ),
        ),
    ],
)
def test_audit_config_as_before(flags, expected):
    assert audit.audit_config(parse(f"{AUDIT} {flags}")) == expected


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", dict(n_never_known=32, nmem_max=10, retain=10)),
        ("--n-never-known 8 --nmem-max 4 --retain 3", dict(n_never_known=8, nmem_max=4, retain=3)),
    ],
)
def test_audit_sets_as_before(flags, expected):
    assert audit.audit_sets(parse(f"{AUDIT} {flags}")) == audit.AuditSets(**expected)


@pytest.mark.parametrize("flags", ["--retain 0", "--n-never-known 0"])
def test_audit_sets_must_be_at_least_one(flags, capsys):
    assert main(f"{AUDIT} {flags}".split()) == 2
    assert "interp: error: --retain and --n-never-known must be at least 1\n" in capsys.readouterr().err


def scan_defaults(**changes) -> ScanConfig:
    values = dict(
        prefix_len=50,
        continuation_len=50,
        stride=1,
        exact=False,
        screen_step=20,
        screen_tolerance=0,
        nmem_max=10,
        n_controls=1000,
        intermediate=False,
        filters=True,
        min_unique=0.5,
        boilerplate_patterns=BOILERPLATE_PATTERNS,
        merge=True,
        recall_sample=0.01,
        recall_min_mem=10,
        seed=0,
        group_tokens=32768,
    )
    return ScanConfig(**(values | changes))


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", scan_defaults()),
        (
            "--prefix-len 20 --continuation-len 30 --stride 2 --exact --screen-step 5 --screen-tolerance 1 "
            "--nmem-max 5 --nmem 7 --intermediate --no-filters --min-unique 0.2 --boilerplate a,b --boilerplate c "
            "--no-merge --recall-sample 0.1 --recall-min-mem 3 --seed 4 --batch-size 8",
            scan_defaults(
                prefix_len=20,
                continuation_len=30,
                stride=2,
                exact=True,
                screen_step=5,
                screen_tolerance=1,
                nmem_max=5,
                n_controls=7,
                intermediate=True,
                filters=False,
                min_unique=0.2,
                boilerplate_patterns=("a,b", "c"),
                merge=False,
                recall_sample=0.1,
                recall_min_mem=3,
                seed=4,
            ),
        ),
    ],
)
def test_scan_config_as_before(flags, expected):
    assert scan.scan_config(parse(f"scan --model testbed --corpus corpus {flags}")) == expected


@pytest.mark.parametrize(
    "flags, flag",
    [
        ("--lr -1", "--lr"),
        ("--scope layer", "--scope"),
        ("--select reft --reft-rank 0", "--reft-rank"),
        ("--relearn-data all", "--relearn-data"),
        ("--proxy --alpha -1", "--alpha"),
    ],
)
def test_unlearn_bad_value_names_its_flag(flags, flag, capsys):
    assert main(f"{UNLEARN} {flags}".split()) == 2
    assert f"interp: error: {flag}: " in capsys.readouterr().err


def test_unlearn_bool_flags_both_ways():
    assert unlearn._configs(parse(f"{UNLEARN} --decay-outside-mask true"))[0].decay_outside_mask
    assert not unlearn._configs(parse(f"{UNLEARN} --paper --no-decay-outside-mask"))[0].decay_outside_mask


@pytest.mark.parametrize(
    "flags, message", [("--related-limit 0", "--related-limit: "), ("--attacks int2", "(--attacks)")]
)
def test_audit_bad_value_names_its_flag(flags, message, capsys):
    assert main(f"{AUDIT} {flags}".split()) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(f"{AUDIT} --shifts 1,x".split())
    assert "argument --shifts: cannot read '1,x'" in capsys.readouterr().err


def test_scan_old_nmem_spelling_warns(capsys):
    with pytest.warns(DeprecationWarning, match="--nmem is deprecated: use --n-controls"):
        args = build_parser().parse_args("scan --model testbed --corpus corpus --nmem 7".split())
    assert scan.scan_config(args).n_controls == 7
    assert "--nmem is deprecated: use --n-controls" in capsys.readouterr().err
    assert scan.scan_config(parse("scan --model testbed --corpus corpus --n-controls 7")).n_controls == 7


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--n-controls -1", "--n-controls must be 0 or more"),
        ("--continuation-len 5 --screen-tolerance 7", "--screen-tolerance must be between 0 and 4"),
    ],
)
def test_scan_bad_value_names_its_flag(flags, message, tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text("text")
    assert (
        main(f"scan --model testbed --corpus {tmp_path / 'corpus.txt'} --out {tmp_path / 'o.jsonl'} {flags}".split())
        == 2
    )
    assert f"interp: error: {message}" in capsys.readouterr().err


def test_set_size_is_a_cap_on_paragraphs_per_set_everywhere():
    """One name per meaning: --set-size caps each of MEM / NMEM; a chunk size would be --chunk-size."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {name: a.help for name, p in sub.choices.items() for a in p._actions if "--set-size" in a.option_strings}
    assert set(helps) == {"grad-map", "locate-head", "perturb", "validate-locator"}
    assert all(h.startswith("cap on paragraphs per set (MEM / NMEM)") for h in helps.values())
