"""Command lines that worked before the flags were generated from the config dataclasses build the same configs.

The expected values are written out by hand from the hand-written flags' old defaults.
"""

import argparse
import sys
import warnings

import pytest

import interp.models
from interp.audit import AuditConfig
from interp.cli import build_parser, main
from interp.commands import audit, common, scan, unlearn
from interp.data import BOILERPLATE_PATTERNS
from interp.scan import ScanConfig
from interp.unlearning import MatchedForgetting, RelearnConfig, UnlearnConfig
from interp.unlearning.proxy import ProxyConfig
from interp.unlearning.reft import ReftConfig


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
        weight_decay=0.0,  # the toolkit's; --paper restores the authors' 1.0
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
        ("--layers 0,1 --paper", [weights(layers=(0, 1), decay_outside_mask=True, weight_decay=1.0)]),
        (
            "--select reft --method npo --steps 30 --reft-layer 1 --reft-rank 2 --seed 5",
            [reft(method="npo", layer=1, rank=2, steps=30, seed=5)],
        ),
        ("--select reft --lr 0.01 --weight-decay 0.1", [reft(lr=0.01, weight_decay=0.1)]),
        (
            "--table --paper --fraction 0.01 --seed 2 --scope component --method ga",
            [
                weights(method=m, select=s, fraction=0.01, decay_outside_mask=True, weight_decay=1.0)
                for m in ("unlearn", "edit")
                for s in ("all", "topk", "random")
            ]
            + [
                weights(method=m, fraction=0.01, seed=2, decay_outside_mask=True, weight_decay=1.0)
                for m in ("ga", "graddiff", "npo")
            ]
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
    monkeypatch.setattr(interp.models, "load_model", lambda spec, **kw: testbed)  # imported inside unlearn._proxy
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
        (  # the curves need the probes scored at every rate tried
            "--calibrate --curves c.html",
            dict(runs=1, retain=10, probe=50, nmem_max=10, perturb_samples=4),
            dict(level=None, tolerance=0.4, probe_points="every"),
        ),
        (
            "--calibrate --curves c.html --probe-points bracket",
            dict(runs=1, retain=10, probe=50, nmem_max=10, perturb_samples=4),
            dict(level=None, tolerance=0.4, probe_points="bracket"),
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
    err = capsys.readouterr().err
    assert "interp: error: --runs, --retain, --probe and --perturb-samples must be at least 1\n" in err


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
                    "int4_g128",
                    "int4_asym",
                    "nf4",
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
                related_limit=8,
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
            "--width 3 --restore-experiments attention,both --perturb-k 8 --shifts 1,3 --seed 2 --batch-size 8",
            AuditConfig(
                attacks=("int4", "relearn_retain"),
                group_size=64,
                relearn_steps=3,
                relearn_lr=1e-3,
                related_limit=4,
                related_ngram=8,
                width=3,
                restore_experiments=("attention", "both"),
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


class _Called(Exception):
    pass


def _call_of(line: str, module, function: str, monkeypatch) -> dict:
    """The arguments (defaults filled in) that `interp LINE` passes to `function`, without a model."""
    monkeypatch.setattr(_home(module, "shipped_unigram_counts"), "shipped_unigram_counts", lambda model: "COUNTS")
    seen = _calls_of(line, module, {}, function, monkeypatch)[function]
    for name in ("log", "unigram_counts"):
        seen.pop(name, None)
    return seen


def _locate(**changes) -> dict:
    values = dict(
        mem=None,
        nmem=None,
        reference=None,
        methods=("rare_token", "gradient", "attribution", "patching", "ablation"),
        rank_by=None,
        validation=None,
        candidates=8,
        exact_all=False,
        set_size=16,
        mem_min=None,
        nmem_max=None,  # a fifth of the continuation: 10 of 50 on the testbed, as before
        corrupt_fraction=0.5,
        method_options={"rare_token": {"null": "pair_paragraphs"}},
        seed=0,
        batch_size=64,
        progress=False,
        max_paragraphs=None,
    )
    return values | changes


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", _locate()),
        (
            "--methods patching ablation zero_out --rank-by ablation --candidates 3 --exact-all --set-size 5 "
            "--nmem-max 4 --rare-token-null shuffle_positions --corrupt-fraction 0.25 --seed 7 --batch-size 9",
            _locate(
                methods=("patching", "ablation", "zero_out"),
                rank_by=("ablation",),
                candidates=3,
                exact_all=True,
                set_size=5,
                nmem_max=4,
                method_options={"rare_token": {"null": "shuffle_positions"}},
                corrupt_fraction=0.25,
                seed=7,
                batch_size=9,
            ),
        ),
    ],
)
def test_locate_head_old_command_lines(flags, expected, monkeypatch):
    from interp.commands import locate_head

    call = _call_of(f"locate-head --model testbed {flags}", locate_head, "locate_memorization_head", monkeypatch)
    assert call == expected


def _validate(**changes) -> dict:
    values = dict(
        heads=None,
        neurons=False,
        methods=(
            "rare_token",
            "gradient",
            "attribution",
            "patching",
            "gradient_l2",
            "grad_x_weight",
            "fisher",
            "perturbed_gradient",
            "ablation",
            "zero_out",
            "integrated_gradients",
            "hard_concrete",
            "slimming",
        ),
        neuron_methods=("activation", "zero_out", "integrated_gradients", "hard_concrete", "slimming"),
        n_inject=4,
        n_inject_neurons=2,
        neuron_fraction=0.005,
        set_size=8,
        candidates=8,
        nmem_max=10,
        kl_weight=1.0,
        head_lr=3e-3,
        neuron_lr=1e-2,
        max_steps=400,
        schedule="constant",
        with_mlp=False,
        escalate=True,
        method_options=None,
        seed=0,
        seeds=None,
        batch_size=64,
        max_paragraphs=None,
    )
    return values | changes


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("", _validate()),
        (
            "--heads 1.2 0.3 --neurons --methods patching ablation --neuron-methods slimming zero_out --n-inject 2 "
            "--neuron-fraction 0.01 --set-size 4 --candidates 2 --max-steps 50 --lr auto --schedule cosine "
            "--with-mlp --seed 3 --seeds 3 4 5 --batch-size 16",
            _validate(
                heads=[(1, 2), (0, 3)],
                neurons=True,
                methods=("patching", "ablation"),
                neuron_methods=("slimming", "zero_out"),
                n_inject=2,
                neuron_fraction=0.01,
                set_size=4,
                candidates=2,
                max_steps=50,
                head_lr="auto",
                schedule="cosine",
                with_mlp=True,
                seed=3,
                seeds=(3, 4, 5),
                batch_size=16,
            ),
        ),
        ("--lr 0.01", _validate(head_lr=0.01)),
    ],
)
def test_validate_locator_old_command_lines(flags, expected, monkeypatch):
    from interp.commands import validate_locator

    call = _call_of(f"validate-locator --model testbed {flags}", validate_locator, "validate_locator", monkeypatch)
    assert call == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ("locate-head --model testbed --methods vibes", "invalid choice: 'vibes'"),
        ("validate-locator --model testbed --lr fast", "'fast' must be a number or 'auto'"),
        ("validate-locator --model testbed --schedule linear", "invalid choice: 'linear'"),
    ],
)
def test_locator_flags_reject_bad_values(line, message, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(line.split())
    assert message in capsys.readouterr().err


def test_validate_locator_rejects_empty_injection(capsys):
    assert main("validate-locator --model testbed --n-inject 0".split()) == 2
    assert "--n-inject and --max-steps must be at least 1" in capsys.readouterr().err


def test_list_flags_take_items_space_or_comma_separated():
    from interp.commands.options_cli import given_options
    from interp.locator.options import LocateOptions

    spaced = given_options(parse("locate-head --model testbed --methods patching ablation"), LocateOptions)
    commas = given_options(parse("locate-head --model testbed --methods patching,ablation"), LocateOptions)
    assert spaced == commas == {"methods": ("patching", "ablation")}
    assert given_options(parse("locate-head --model testbed --rank-by none"), LocateOptions) == {"rank_by": None}


class _Paragraphs:
    prefix_len = continuation_len = 50

    def select(self, index):
        return self

    def __len__(self) -> int:
        return 0


LIBRARY = {
    "model_name": "interp.models",
    "shipped_unigram_counts": "interp.testbed",
    "memorization_split": "interp.memorization",
    "choose_indices": "interp.memorization",
    "choose_sets": "interp.memorization",
    "gradient_map": "interp.gradients",
    "prefix_perturbation": "interp.perturbation",
    "locate_memorization_head": "interp.locator.ranking",
    "validate_locator": "interp.locator.validation",
}
"""Where the commands import these names from: inside `run` (parsing loads no torch), so that is where they are
replaced."""


def _home(module, name: str):
    """The module whose `name` the command `module` calls: the library's for the names it imports inside `run`."""
    import importlib

    return importlib.import_module(LIBRARY[name]) if name in LIBRARY else module


def _expand_options(arguments: dict) -> dict:
    """An options dataclass passed whole (`options=`, locate_memorization_head and validate_locator) as the keyword
    arguments it stands for: its fields under the keywords' names, the rare-token null as that method's option."""
    import dataclasses

    options = arguments.pop("options", None)
    if options is None:
        return arguments
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    if "rare_token_null" in values:
        arguments["method_options"] = {"rare_token": {"null": values.pop("rare_token_null")}}
    renamed = {"lr": "head_lr"}
    return arguments | {renamed.get(k, k): v for k, v in values.items()}


def _calls_of(line: str, module, stubs: dict, last: str, monkeypatch) -> dict:
    """What `interp LINE` passes to each of `stubs` (name -> return value) and to `last`, defaults filled in."""
    import importlib
    import inspect

    seen: dict = {}

    def recorder(name, value):
        target = getattr(_home(module, name), name)

        def record(*args, **kwargs):
            bound = inspect.signature(target).bind(*args, **kwargs)
            bound.apply_defaults()
            seen[name] = {
                k: v
                for k, v in _expand_options(dict(bound.arguments)).items()
                if not isinstance(v, _Paragraphs) and not (isinstance(v, str) and v == "MODEL")
            }
            if name == last:
                raise _Called
            return value

        return record

    for library in {*LIBRARY.values(), "interp.locator.validation"}:  # imported now, they keep no stub after the test
        importlib.import_module(library)
    monkeypatch.setattr(common, "model_from_args", lambda args: "MODEL")  # the commands call common's loaders
    monkeypatch.setattr(common, "paragraphs_from_args", lambda args, model: _Paragraphs())
    monkeypatch.setattr(_home(module, "model_name"), "model_name", lambda model: "MODEL")
    for name, value in {**stubs, last: None}.items():
        home, fake = _home(module, name), recorder(name, value)
        monkeypatch.setattr(home, name, fake)
        for package in [m for key, m in sys.modules.items() if key == "interp" or key.startswith("interp.")]:
            if "__getattr__" in vars(package) and name in getattr(package, "__all__", ()):
                monkeypatch.setitem(vars(package), name, fake)  # a lazy package keeps what it resolved: undone too
    args = parse(line)
    with pytest.raises(_Called):
        args.run(args)
    return seen


@pytest.mark.parametrize(
    "flags, split, sets, grads",
    [
        (
            "",
            dict(batch_size=64, nmem_max=10),
            dict(n_mem=32, n_nmem=32, seed=0),
            dict(objective="nll", reduce="max", include_embeddings=False, batch_size=16),
        ),
        (
            "--objective contrastive --reduce l2 --set-size 5 --nmem-max 3 --include-embeddings --seed 4 "
            "--grad-batch-size 2 --batch-size 8",
            dict(batch_size=8, nmem_max=3),
            dict(n_mem=5, n_nmem=5, seed=4),
            dict(objective="contrastive", reduce="l2", include_embeddings=True, batch_size=2),
        ),
    ],
)
def test_grad_map_old_command_lines(flags, split, sets, grads, monkeypatch):
    from interp.commands import grad_map

    stubs = {"memorization_split": object(), "choose_sets": (_Paragraphs(), _Paragraphs())}
    monkeypatch.setattr(_Paragraphs, "__len__", lambda self: 2, raising=False)
    calls = _calls_of(f"grad-map --model testbed {flags}", grad_map, stubs, "gradient_map", monkeypatch)
    assert {k: calls["memorization_split"][k] for k in split} == split
    assert {k: calls["choose_sets"][k] for k in sets} == sets
    assert {k: calls["gradient_map"][k] for k in grads} == grads


@pytest.mark.parametrize(
    "flags, split, sets, perturb",
    [
        (
            "",
            dict(batch_size=64, nmem_max=10),
            dict(n_mem=32, n_nmem=32, seed=0),
            dict(samples_per_position=4, seed=0, reference="greedy", batch_size=64),
        ),
        (
            "--samples 2 --set-size 3 --nmem-max 1 --reference true --seed 5 --batch-size 100",
            dict(batch_size=100, nmem_max=1),
            dict(n_mem=3, n_nmem=3, seed=5),
            dict(samples_per_position=2, seed=5, reference="true", batch_size=100),
        ),
    ],
)
def test_perturb_old_command_lines(flags, split, sets, perturb, monkeypatch):
    import torch

    from interp.commands import perturb as command

    stubs = {"memorization_split": object(), "choose_indices": (torch.arange(2), torch.arange(2, 3))}
    calls = _calls_of(f"perturb --model testbed {flags}", command, stubs, "prefix_perturbation", monkeypatch)
    assert {k: calls["memorization_split"][k] for k in split} == split
    assert {k: calls["choose_indices"][k] for k in sets} == sets
    assert {k: calls["prefix_perturbation"][k] for k in perturb} == perturb


@pytest.mark.parametrize(
    "line, message",
    [
        ("grad-map --model testbed --set-size 1", "--set-size must be at least 2"),
        ("grad-map --model testbed --grad-batch-size 0", "--grad-batch-size must be at least 1"),
        ("perturb --model testbed --set-size 0", "--set-size must be at least 1"),
    ],
)
def test_set_size_checks_name_their_flag(line, message, capsys):
    assert main(line.split()) == 2
    assert message in capsys.readouterr().err
