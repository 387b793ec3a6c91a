"""report.html as a person sees it: opened in headless Chromium with every network request
blocked, no script error, every Plotly figure and circuitsvis view rendered, a screenshot that
is not blank, and hostile paragraph text shown as text, never run."""

from __future__ import annotations

import base64
import json

import circuitsvis
import factories
import pytest
import torch
from conftest import BROWSER, SMALL_REPORT, needs_browser

from interp.data import Paragraphs
from interp.report import ReportOptions, Step, default_steps, model_fingerprint, run_report
from interp.views.report_html import Section

pytestmark = pytest.mark.slow  # the whole module: minutes on 2 cores

HOSTILE = "</script><script>window.__pwned=1</script><b id=hostile>bold</b><img src=x onerror=window.__pwned=2> "
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def small_model():
    """A tiny random GPT-Neo with the testbed's tokenizer: every step runs in seconds, and token
    strings come from a real byte-level BPE."""
    from transformers import AutoTokenizer

    from interp.models import TESTBED_DIR

    tokenizer = AutoTokenizer.from_pretrained(TESTBED_DIR)
    return factories.tiny_model(
        TESTBED_DIR, n_ctx=128, d_vocab=len(tokenizer), attn_types=["global", "local"], window_size=16
    )


@pytest.fixture(scope="module")
def small_paragraphs(small_model):
    """20 paragraphs of 50 + 50 tokens: the FIRST is hostile text, 4 continue with the model's own
    greedy continuation (so they are MEM), the rest are random text (NMEM)."""
    hostile = small_model.tokenizer.encode(HOSTILE * 8, add_special_tokens=False)[:100]
    tokens = torch.randint(0, small_model.cfg.d_vocab, (20, 100), generator=torch.Generator().manual_seed(0))
    tokens[0] = torch.tensor(hostile)
    with torch.no_grad():
        for pos in range(50, 100):
            tokens[1:5, pos] = small_model(tokens[1:5, :pos])[:, -1].argmax(-1)
    return Paragraphs(tokens, 50, tuple(f"x{i}" for i in range(20)), counts=(1,) + (9,) * 4 + (1,) * 15)


@pytest.fixture(scope="module")
def report_dir(small_model, small_paragraphs, tmp_path_factory):
    """The whole pipeline on the small model, plus one view that holds the hostile text as ONE token
    (BPE splits it over several tokens in the paragraph views)."""
    whole = Step(
        "whole-token",
        lambda inputs: None,
        lambda result, results: Section(
            key="whole-token",
            title="hostile token",
            views={"one token": circuitsvis.tokens.colored_tokens([HOSTILE, "x"], [1.0, 0.0])},
        ),
    )
    out = tmp_path_factory.mktemp("report")
    before = model_fingerprint(small_model)
    run = run_report(
        small_model, small_paragraphs, out, options=ReportOptions(**SMALL_REPORT), steps=[*default_steps(), whole], image_formats=()
    )
    assert model_fingerprint(small_model) == before
    assert not any(hp._forward_hooks or hp._backward_hooks for hp in small_model.hook_dict.values())
    assert not any(p.grad is not None for p in small_model.parameters())
    return out, run


def test_every_step_runs_and_lands_in_results(report_dir):
    out, run = report_dir
    results = json.loads((out / "results.json").read_text())
    steps = [s.name for s in default_steps()]
    assert list(results["steps"]) == steps + ["whole-token"]
    for name in steps:
        if name == "locator_trust":  # 20 paragraphs are too few to inject into: skipped, saying why
            assert "does not recite" in results["steps"][name]["result"]["skipped"]
            continue
        if name == "audit":  # no 'heldout' split here: the never-known control falls back on unrecited paragraphs
            audit_result = results["steps"][name]["result"]
            assert "skipped" not in audit_result, audit_result.get("skipped")
            assert "no 'heldout' split" in audit_result["never_known_source"]
            continue
        assert "skipped" not in (results["steps"][name]["result"] or {}), name
    assert results["steps"]["memorization"]["result"]["n_mem"] == 4
    assert results["steps"]["memorization"]["result"]["mem_ids"] == ["x1", "x2", "x3", "x4"]
    figures = results["figures"]
    for prefix in ("memorization_", "gradients_", "heads_", "perturbation_", "unlearning_", "restoration_"):
        assert any(f.startswith(prefix) for f in figures), prefix
    rows = results["tables"]["unlearning"][0]["rows"]
    assert [r[0] for r in rows][:4] == ["original model", "unlearn all", "unlearn top-0.1%", "unlearn random-0.1%"]


@needs_browser
def test_report_renders_offline_and_never_runs_paragraph_text(report_dir):
    from playwright.sync_api import sync_playwright

    report_dir, _ = report_dir
    page_errors, console_errors, requests = [], [], []
    with sync_playwright() as p:
        user_dir = report_dir / "chromium-profile"
        browser = p.chromium.launch_persistent_context(
            str(user_dir), executable_path=BROWSER, args=ARGS, headless=True, viewport={"width": 1200, "height": 1600}
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

            def route(r):
                requests.append(r.request.url)
                return r.continue_() if r.request.url.startswith("file://") else r.abort()

            page.route("**/*", route)
            page.goto((report_dir / "report.html").as_uri())
            n_views = page.locator(".cv-view").count()
            page.wait_for_function(
                "[...document.querySelectorAll('.cv-view > div[id]')].every(d => d.childElementCount > 0)"
                " && [...document.querySelectorAll('.js-plotly-plot')].every(d => d.querySelector('svg.main-svg'))",
                timeout=15_000,
            )
            plots = page.evaluate(
                "[...document.querySelectorAll('.figure')].map(f => "
                "[f.dataset.figure, f.querySelectorAll('.js-plotly-plot svg.main-svg .trace, .js-plotly-plot svg.main-svg .hm').length])"
            )
            cv_text = page.evaluate("[...document.querySelectorAll('.cv-view > div[id]')].map(d => d.innerText)")
            pwned = page.evaluate("window.__pwned === undefined ? null : window.__pwned")
            injected = page.evaluate("[...document.querySelectorAll('#hostile, img[src=\"x\"]')].map(e => e.outerHTML)")
            body_text = page.inner_text("body")
            shot = page.screenshot(full_page=False)
            ink = _ink_fraction(browser, shot)
        finally:
            browser.close()

    assert page_errors == [] and console_errors == []
    assert all(url.startswith("file://") for url in requests)  # nothing asked for the network
    names = [name for name, _ in plots]
    assert "memorization_em_histogram" in names and len(plots) >= 15
    assert all(n_plot >= 1 for _, n_plot in plots), plots
    assert n_views >= 5 and all(len(t.strip()) > 20 for t in cv_text)
    assert pwned is None and injected == []
    assert "</script><script>window.__pwned=1</script><b id=hostile>bold</b>" in body_text  # shown as text
    # circuitsvis shows spaces as no-break spaces; the hostile token itself appears as text
    assert any("</script><script>window.__pwned=1</script><b\xa0id=hostile>bold</b><img\xa0src=x" in t for t in cv_text)
    assert 0.02 < ink < 0.9, ink


def _ink_fraction(browser, png: bytes) -> float:
    """Fraction of screenshot pixels that are not near-white, measured by drawing it on a canvas."""
    page = browser.new_page()
    try:
        page.set_content("<canvas id=c></canvas>")
        return page.evaluate(
            """async (src) => {
                const img = new Image(); img.src = src; await img.decode();
                const c = document.getElementById('c'); c.width = img.width; c.height = img.height;
                const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
                const d = ctx.getImageData(0, 0, img.width, img.height).data;
                let ink = 0;
                for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 600) ink++;
                return ink / (d.length / 4);
            }""",
            "data:image/png;base64," + base64.b64encode(png).decode(),
        )
    finally:
        page.close()
