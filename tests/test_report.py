"""The report pipeline: step cache and resume, atomic outputs, the HTML assembler's escaping,
the memorization step's numbers, and the `interp report` command."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

import circuitsvis
import plotly.graph_objects as go
import pytest
import torch
from conftest import BROWSER, NO_BROWSER
from factories import tiny_model
from plotly.offline import get_plotlyjs

from interp.backend import weight
from interp.cli import main
from interp.data import Paragraphs
from interp.memorization import choose_sets, memorization_split
from interp.metrics import score_paragraphs
from interp.report import (
    ReportOptions,
    Step,
    model_fingerprint,
    paragraphs_fingerprint,
    run_report,
    weights_fingerprint,
)
from interp.report.runner import fingerprinted_sources
from interp.views.export import FIGURE_HASHES
from interp.views.report_html import Section, Table, parse_circuitsvis, report_html, safe_json

HOSTILE = "</script><script>window.__pwned=1</script><b>bold</b><img src=x onerror=window.__pwned=2>"


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def tiny_paragraphs(tiny) -> Paragraphs:
    """12 random paragraphs of 8 + 8 tokens; the first 3 continue with the model's own greedy
    continuation, so exactly those are memorized (EM = 8)."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50, (12, 16), generator=gen)
    with torch.no_grad():  # greedy decoding by plain forwards (TransformerLens' KV-cache generate
        for pos in range(8, 16):  # disagrees with them on tokenizer-less models)
            tokens[:3, pos] = tiny(tokens[:3, :pos])[:, -1].argmax(-1)
    return Paragraphs(tokens, 8, tuple(f"q{i}" for i in range(12)), counts=(9, 9, 9) + (1,) * 9)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_memorization_split_finds_the_memorized_paragraphs(tiny, tiny_paragraphs):
    before = _state(tiny)
    split = memorization_split(tiny, tiny_paragraphs, batch_size=5, n_examples=2)
    assert split.mem_idx.tolist() == [0, 1, 2]
    assert split.scores.em[:3].tolist() == [8, 8, 8]
    assert split.nmem_max == 2 and set(split.nmem_idx.tolist()) == {i for i in range(12) if split.scores.em[i] <= 2}
    rows = {r["count"]: r for r in split.by_count()}
    assert rows[9]["n"] == 3 and rows[9]["fraction_mem"] == 1.0 and rows[1]["n_mem"] == 0
    assert rows[1]["mean_em"] == pytest.approx(float(split.scores.em[3:].float().mean()))
    # per-token NLL of an example equals the continuation NLL score over its continuation
    ex = split.examples[0]
    assert ex["kind"] == "mem" and len(ex["str_tokens"]) == 16
    assert sum(ex["token_nll"][8:]) / 8 == pytest.approx(float(split.scores.nll[0]), abs=1e-3)
    js = split.to_json()
    assert js["n_mem"] == 3 and js["mem_ids"] == ["q0", "q1", "q2"] and sum(js["em_histogram"]) == 12
    assert all(torch.equal(v, _state(tiny)[k]) for k, v in before.items())
    assert not any(hp._forward_hooks for hp in tiny.hook_dict.values())


def test_choose_sets_is_seeded_and_keeps_heldout_out_of_nmem(tiny, tiny_paragraphs):
    split = memorization_split(tiny, tiny_paragraphs)
    mem, nmem = choose_sets(split, tiny_paragraphs, n_mem=2, n_nmem=4, seed=3)
    again = choose_sets(split, tiny_paragraphs, n_mem=2, n_nmem=4, seed=3)
    assert mem.ids == again[0].ids and nmem.ids == again[1].ids
    assert set(mem.ids) <= {"q0", "q1", "q2"} and len(mem) == 2 and len(nmem) == 4
    labelled = Paragraphs(
        tiny_paragraphs.tokens,
        8,
        tiny_paragraphs.ids,
        meta={"split": ("planted",) * 3 + ("heldout",) * 5 + ("once",) * 4},
    )
    split2 = memorization_split(tiny, labelled)
    _, nmem2 = choose_sets(split2, labelled, n_mem=2, n_nmem=20)
    assert set(nmem2.ids) == {f"q{i}" for i in range(8, 12)}


def test_code_fingerprint_covers_the_analyses_and_not_the_views():
    """Section prose and figures are views: changing them re-renders the report without recomputing."""
    files = {rel.as_posix() for rel in fingerprinted_sources()}
    assert {
        "report/runner.py",
        "report/steps/unlearning.py",
        "report/types.py",
        "report/options.py",
        "memorization.py",
        "gradient_norms.py",
        "unlearning/masked.py",
        "unlearning/training.py",
    } <= files
    assert not [f for f in files if f.startswith(("views/", "commands/", "testbed/"))]


def test_weights_fingerprint_ignores_where_the_model_was_loaded_from(tiny):
    """results.json's weights_sha256: the same weights from another folder hash the same (the cache key,
    which includes the config and so the tokenizer's path, does not); one weight changed hashes apart."""
    moved = copy.deepcopy(tiny)
    moved.cfg.tokenizer_name = "/elsewhere/checkpoint"
    assert weights_fingerprint(moved) == weights_fingerprint(tiny)
    assert model_fingerprint(moved) != model_fingerprint(tiny)
    with torch.no_grad():
        weight(moved, 0, "W_in")[0, 0] += 1e-3
    assert weights_fingerprint(moved) != weights_fingerprint(tiny)


def test_fingerprints_change_with_one_weight_and_one_token(tiny, tiny_paragraphs):
    fp = model_fingerprint(tiny)
    assert model_fingerprint(tiny) == fp
    with torch.no_grad():
        weight(tiny, 1, "W_V")[0, 0, 0] += 1e-3
        changed = model_fingerprint(tiny)
        weight(tiny, 1, "W_V")[0, 0, 0] -= 1e-3
    assert changed != fp
    tokens = tiny_paragraphs.tokens.clone()
    tokens[5, 3] = (tokens[5, 3] + 1) % 50
    other = Paragraphs(tokens, 8, tiny_paragraphs.ids, tiny_paragraphs.counts)
    assert paragraphs_fingerprint(other) != paragraphs_fingerprint(tiny_paragraphs)


# ---- the step cache, resume and atomic outputs ----


@dataclass(frozen=True)
class Number:
    value: float

    def to_json(self) -> dict:
        return {"value": self.value}


def _counting_steps(calls: dict, fail_in: str | None = None) -> list[Step]:
    def first(inputs):
        calls["first"] = calls.get("first", 0) + 1
        return Number(float(inputs.paragraphs.tokens.sum()))

    def second(inputs):
        calls["second"] = calls.get("second", 0) + 1
        if fail_in == "second":
            raise KeyboardInterrupt
        return Number(inputs.results["first"].value * inputs.options.n_mem)

    def section(name):
        def make(result, results):
            fig = go.Figure(go.Bar(x=["a"], y=[result.value]))
            return Section(
                key=name,
                title=name,
                text=f"value {result.value}",
                figures={"bar": fig},
                tables=[Table("t", ["v"], [[result.value]])],
            )

        return make

    return [
        Step("first", first, section("first")),
        Step("second", second, section("second"), options=("n_mem",), depends=("first",)),
    ]


def test_cached_steps_are_reused_and_invalidated_by_their_own_options(tiny, tiny_paragraphs, tmp_path):
    calls: dict = {}
    opts = ReportOptions(n_mem=3, progress=False)
    run = run_report(tiny, tiny_paragraphs, tmp_path, options=opts, steps=_counting_steps(calls), image_formats=())
    assert calls == {"first": 1, "second": 1} and run.cached == {"first": False, "second": False}
    total = float(tiny_paragraphs.tokens.sum())
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"]["second"]["result"]["value"] == total * 3
    assert results["provenance"]["model"]["weights_sha256"] == weights_fingerprint(tiny)
    assert results["provenance"]["model"]["architecture"] == "GPTNeoForCausalLM"  # under either backend
    assert "no static images were asked for" in (tmp_path / "report.html").read_text()  # the intro says none
    run = run_report(tiny, tiny_paragraphs, tmp_path, options=opts, steps=_counting_steps(calls), image_formats=())
    assert calls == {"first": 1, "second": 1} and run.cached == {"first": True, "second": True}
    # n_mem is read by 'second' only: 'first' stays cached
    run = run_report(
        tiny,
        tiny_paragraphs,
        tmp_path,
        options=ReportOptions(n_mem=5, progress=False),
        steps=_counting_steps(calls),
        image_formats=(),
    )
    assert calls == {"first": 1, "second": 2} and run.cached == {"first": True, "second": False}
    assert json.loads((tmp_path / "results.json").read_text())["steps"]["second"]["result"]["value"] == total * 5
    # other paragraphs: everything recomputed
    run_report(
        tiny,
        tiny_paragraphs.select(list(range(6))),
        tmp_path,
        options=opts,
        steps=_counting_steps(calls),
        image_formats=(),
    )
    assert calls == {"first": 2, "second": 3}
    # use_cache=False recomputes even when a result is cached
    run_report(
        tiny, tiny_paragraphs, tmp_path, options=opts, steps=_counting_steps(calls), use_cache=False, image_formats=()
    )
    assert calls == {"first": 3, "second": 4}


def test_interrupted_report_keeps_the_old_one_and_resumes(tiny, tiny_paragraphs, tmp_path):
    calls: dict = {}
    run_report(
        tiny,
        tiny_paragraphs,
        tmp_path,
        options=ReportOptions(n_mem=3, progress=False),
        steps=_counting_steps(calls),
        image_formats=(),
    )
    good_html, good_json = (tmp_path / "report.html").read_bytes(), (tmp_path / "results.json").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        run_report(
            tiny,
            tiny_paragraphs,
            tmp_path,
            options=ReportOptions(n_mem=7, progress=False),
            steps=_counting_steps(calls, fail_in="second"),
            image_formats=(),
        )
    assert (tmp_path / "report.html").read_bytes() == good_html
    assert (tmp_path / "results.json").read_bytes() == good_json
    assert not list(tmp_path.glob(".staging-*"))
    run = run_report(
        tiny,
        tiny_paragraphs,
        tmp_path,
        options=ReportOptions(n_mem=7, progress=False),
        steps=_counting_steps(calls),
        image_formats=(),
    )
    assert run.cached == {"first": True, "second": False} and calls == {"first": 1, "second": 3}
    assert json.loads((tmp_path / "results.json").read_text())["steps"]["second"]["result"]["value"] == 7 * float(
        tiny_paragraphs.tokens.sum()
    )


def test_a_corrupt_cache_entry_is_recomputed(tiny, tiny_paragraphs, tmp_path):
    calls: dict = {}
    run_report(tiny, tiny_paragraphs, tmp_path, steps=_counting_steps(calls)[:1], image_formats=())
    for entry in (tmp_path / ".cache").glob("first-*.pkl"):
        entry.write_bytes(b"torn")
    with pytest.warns(UserWarning, match="unreadable cached result"):
        run = run_report(tiny, tiny_paragraphs, tmp_path, steps=_counting_steps(calls)[:1], image_formats=())
    assert calls == {"first": 2} and run.cached == {"first": False}


def test_unknown_step_is_a_user_error(tiny, tiny_paragraphs, tmp_path):
    from interp.errors import UserError

    with pytest.raises(UserError, match="unknown report step"):
        run_report(
            tiny,
            tiny_paragraphs,
            tmp_path,
            options=ReportOptions(steps=("nope",), progress=False),
            steps=_counting_steps({}),
            image_formats=(),
        )
    calls: dict = {}
    run = run_report(
        tiny,
        tiny_paragraphs,
        tmp_path,
        options=ReportOptions(steps=("second",), progress=False),
        steps=_counting_steps(calls),
        image_formats=(),
    )
    assert list(run.results) == ["first", "second"]  # a chosen step brings what it depends on


# ---- the HTML assembler ----


def test_report_html_embeds_plotly_once_and_escapes_every_text():
    figs = {f"f{i}": go.Figure(go.Bar(x=[HOSTILE, "b"], y=[1, i])) for i in range(3)}
    view = circuitsvis.tokens.colored_tokens(tokens=["ok", HOSTILE, "&amp;"], values=[0.0, 1.0, 0.5])
    section = Section(
        key="s1",
        title=f"title {HOSTILE}",
        text=f"text {HOSTILE}",
        figures=figs,
        views={f"caption {HOSTILE}": view},
        tables=[Table(f"cap {HOSTILE}", ["col"], [[HOSTILE]])],
        notes=[f"note {HOSTILE}"],
    )
    page = report_html("t", {"model": {"spec": HOSTILE}}, [section], intro=HOSTILE)
    marker = get_plotlyjs()[:200]
    assert page.count(marker) == 1
    assert "window.__pwned" in page  # the text is there ...
    assert (
        "<script>window.__pwned" not in page and "<b>bold</b>" not in page and "<img" not in page
    )  # ... never as markup
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1" in page
    # circuitsvis writes tokens with innerHTML: its props carry them HTML-escaped, inside safe JSON
    assert "\\u0026lt;/script\\u0026gt;\\u0026lt;script\\u0026gt;window.__pwned=1" in page
    # script ends: plotly.js, the circuitsvis bundle, one per figure, one per view; none inside them
    assert len(re.findall(r"</script", page, flags=re.IGNORECASE)) == 2 + 3 + 1


def test_circuitsvis_props_round_trip_and_json_is_script_safe():
    tokens, values = ["a", HOSTILE, "c"], [0.25, 0.5, 1.0]
    view = parse_circuitsvis(circuitsvis.tokens.colored_tokens(tokens=tokens, values=values))
    assert view.component == "ColoredTokens"
    assert view.props == {"tokens": tokens, "values": values}
    text = safe_json(view.props)
    assert not re.search(r"[<>&]", text) and json.loads(text) == view.props


# ---- the command ----


def test_report_command_on_the_testbed(testbed, testbed_paragraph_set, tmp_path):
    counts = torch.tensor(testbed_paragraph_set.counts)
    subset = testbed_paragraph_set.select(
        torch.cat([(counts == 128).nonzero().flatten()[:5], (counts == 1).nonzero().flatten()[:15]])
    )
    subset.save_jsonl(tmp_path / "p.jsonl")
    out = tmp_path / "rep"
    assert (
        main(
            [
                "report",
                "--model",
                "testbed",
                "--paragraphs",
                str(tmp_path / "p.jsonl"),
                "--quick",
                "--steps",
                "memorization",
                "--formats",
                "svg",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    mem = results["steps"]["memorization"]["result"]
    scores = score_paragraphs(testbed, subset)
    assert mem["n_mem"] == int((scores.em == 50).sum()) == 5
    assert [p["em"] for p in mem["paragraphs"]] == scores.em.tolist()
    assert "memorization_em_histogram" in results["figures"]
    assert results["provenance"]["model"]["spec"] == "testbed"
    assert results["provenance"]["paragraphs"]["paragraphs"] == 20
    assert "each figure is saved as SVG in figures/" in (out / "report.html").read_text()
    if BROWSER is None:  # everything but the static images was checked
        pytest.skip(NO_BROWSER)
    exported = sorted(p.name for p in (out / "figures").iterdir() if p.name != FIGURE_HASHES)
    assert exported == sorted(f"{f}.svg" for f in results["figures"])
    assert sorted(json.loads((out / "figures" / FIGURE_HASHES).read_text())) == sorted(results["figures"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "nonsense"], "unknown report step"),
        (["--n-mem", "0"], "ReportOptions.n_mem (--n-mem) must be at least 1"),
        (["--formats", "gif"], "unknown image format"),
    ],
)
def test_report_command_bad_input(argv, message, tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "o"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_report_command_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["report", "--steps", "memorization", "--formats", "", "--out", str(target)]) == 2
    assert "is not a folder" in capsys.readouterr().err
