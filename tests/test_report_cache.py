"""The report's step cache: each step sees only the options and results it declares, and a second report
with one option changed reuses every step that does not read it."""

from __future__ import annotations

import pickle

import factories
import pytest
import torch

from interp.data import Paragraphs
from interp.errors import UserError
from interp.report import ReportOptions, Step, run_report
from interp.report.runner import UndeclaredInput, result_fingerprint
from interp.views.report_html import Section


class Number:
    def __init__(self, value: float):
        self.value = value

    def to_json(self) -> dict:
        return {"value": self.value}


def _section(result, results) -> Section:
    return Section(key="s", title="s")


def _steps(second) -> list[Step]:
    return [
        Step("first", lambda inputs: Number(inputs.options.n_mem), _section, options=("n_mem",)),
        Step("second", second, _section, options=("n_nmem",), depends=("first",)),
    ]


def test_a_step_reading_an_option_it_does_not_declare_fails(tiny_model, tmp_path):
    model = tiny_model()
    paragraphs = Paragraphs(torch.zeros(2, 10, dtype=torch.long), 5, ("a", "b"))
    opts = ReportOptions(progress=False)
    with pytest.raises(UndeclaredInput, match="step 'second' reads option 'n_mem'"):
        run_report(model, paragraphs, tmp_path, options=opts, steps=_steps(lambda i: Number(i.options.n_mem)))
    # what it declares, and the unkeyed progress flag, it may read
    run = run_report(
        model,
        paragraphs,
        tmp_path,
        options=opts,
        steps=_steps(lambda i: Number(i.options.n_nmem + i.results["first"].value + i.options.progress)),
        image_formats=(),
    )
    assert run.results["second"].value == opts.n_nmem + opts.n_mem


def test_a_step_reading_a_result_it_does_not_declare_fails(tiny_model, tmp_path):
    model = tiny_model()
    paragraphs = Paragraphs(torch.zeros(2, 10, dtype=torch.long), 5, ("a", "b"))
    steps = [
        *_steps(lambda i: Number(1.0)),
        Step("third", lambda i: Number(i.results["first"].value), _section, depends=("second",)),
    ]
    with pytest.raises(UndeclaredInput, match="step 'third' reads the result of 'first'"):
        run_report(model, paragraphs, tmp_path, options=ReportOptions(progress=False), steps=steps)


def test_result_fingerprint_follows_values_not_identity():
    a = {"x": torch.arange(4.0), "y": (1, "z")}
    assert result_fingerprint(a) == result_fingerprint({"x": torch.arange(4.0), "y": (1, "z")})
    assert result_fingerprint(a) != result_fingerprint({"x": torch.arange(4.0) + 1e-6, "y": (1, "z")})
    assert result_fingerprint(torch.zeros(2)) != result_fingerprint(torch.zeros(2, dtype=torch.float64))
    shared, text = torch.ones(2), "x" * 50  # one object twice hashes as two equal ones (a cached copy's sharing)
    assert result_fingerprint([shared, shared, text, text]) == result_fingerprint(
        [torch.ones(2), torch.ones(2), "x" * 50, "".join(["x"] * 50)]
    )
    assert result_fingerprint(a) == result_fingerprint(pickle.loads(pickle.dumps(a)))


@pytest.fixture(scope="module")
def small():
    """A tiny random GPT-Neo with the testbed's tokenizer and 30 paragraphs: 4 it recites (their continuation
    is its own greedy one), 26 random ones it does not."""
    from transformers import AutoTokenizer

    from interp.models import TESTBED_DIR

    tokenizer = AutoTokenizer.from_pretrained(TESTBED_DIR)
    model = factories.tiny_model(
        TESTBED_DIR, n_ctx=128, d_vocab=len(tokenizer), attn_types=["global", "local"], window_size=16
    )
    tokens = torch.randint(0, model.cfg.d_vocab, (30, 100), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for pos in range(50, 100):
            tokens[:4, pos] = model(tokens[:4, :pos])[:, -1].argmax(-1)
    return model, Paragraphs(tokens, 50, tuple(f"x{i}" for i in range(30)))


SMALL = ReportOptions(
    n_mem=2,
    n_nmem=20,
    n_examples=1,
    grad_batch_size=8,
    n_perturb=2,
    unlearn_targets=1,
    unlearn_steps=2,
    unlearn_methods=("unlearn",),
    reft=False,
    relearn_steps=1,
    restore_selects=("all",),
    probe=2,
    validate_locator=False,
    progress=False,
)


@pytest.mark.slow
def test_changing_an_unlearning_option_reuses_the_steps_before_it(small, tmp_path):
    """Every default step runs through the guards (so each declares what it reads); the second report, with
    unlearn_steps changed, reuses memorization, gradients, heads and perturbation and reruns the rest."""
    model, paragraphs = small
    first = run_report(model, paragraphs, tmp_path, options=SMALL, image_formats=())
    assert not any(first.cached.values())
    assert not any(isinstance(r, Exception) for r in first.results.values())
    second = run_report(
        model, paragraphs, tmp_path, options=ReportOptions(**{**SMALL.to_dict(), "unlearn_steps": 3}), image_formats=()
    )
    reused = ("memorization", "gradients", "heads", "perturbation", "locator_trust")
    assert {name: second.cached[name] for name in reused} == dict.fromkeys(reused, True)
    assert second.cached["unlearning"] is False and second.cached["restoration"] is False
    for name in reused:
        assert result_fingerprint(second.results[name]) == result_fingerprint(first.results[name])


def test_an_option_naming_a_file_keys_by_its_bytes(tmp_path):
    """A step reading a file through an option (a saved validation, a paragraph file) gets a new cache key when
    the file's content changes, not only when its path does."""
    from interp.report.runner import step_key
    from interp.report.steps.locator_trust import STEP

    path = tmp_path / "v.json"
    path.write_text("{}")
    options = ReportOptions(validation=str(path))
    first = step_key(STEP, {"model": "m"}, options, {})
    assert step_key(STEP, {"model": "m"}, options, {}) == first
    path.write_text('{"heads": []}')
    assert step_key(STEP, {"model": "m"}, options, {}) != first
    with pytest.raises(UserError, match="not a file"):
        ReportOptions(validation=str(tmp_path / "missing.json"))
