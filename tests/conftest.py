"""Shared fixtures: seeding for every test, the bundled testbed loaded once per session, the
browser gate, a tiny-model factory and the check that an analysis left a model untouched."""

from __future__ import annotations

import hashlib
import os
import random

import pytest
import torch

from interp.views.export import chromium_path

# ReportOptions of the whole report on a tiny model, every step at its smallest (test_report_browser, test_architectures);
# a dict, so that conftest imports no more of interp before jaxtyping's import hook
SMALL_REPORT = dict(
    n_mem=2,
    n_nmem=12,
    n_examples=1,
    grad_batch_size=8,
    n_perturb=2,
    perturb_samples=1,
    unlearn_targets=1,
    unlearn_steps=2,
    reft=False,
    relearn_steps=1,
    restore_selects=("all",),
    probe=1,
    progress=False,
)

torch.set_num_threads(2)

BROWSER = chromium_path()
NO_BROWSER = (
    "needs Chromium (PNG/SVG export and the rendered report): install it with "
    "`sudo apt-get install chromium`, as .ci/run does"
)
needs_browser = pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)


def pytest_addoption(parser):
    parser.addoption(
        "--slow", action="store_true", help="also run the tests marked slow (CI and the README run everything)"
    )


def pytest_collection_modifyitems(config, items):
    """A plain run leaves out the tests marked slow (listed as deselected); --slow runs them. CI
    (INTERP_REQUIRE_BROWSER=1) must run the browser tests: no Chromium there is an error, not a skip."""
    if os.environ.get("INTERP_REQUIRE_BROWSER") == "1" and BROWSER is None:
        raise pytest.UsageError(
            "INTERP_REQUIRE_BROWSER=1 but no Chromium was found: the browser tests would be skipped"
        )
    if not config.getoption("--slow"):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run several times faster on one thread than on two contended ones: a module that trains many
    of them asks for this with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def testbed():
    from interp import load_model

    return load_model("testbed", device="cpu")


@pytest.fixture(scope="session")
def testbed_paragraph_set():
    from interp import testbed_paragraphs

    return testbed_paragraphs()


@pytest.fixture(scope="session")
def testbed_scores(testbed, testbed_paragraph_set):
    """Scores of the planted paragraphs and the first 520 seen once (enough to show >= 500 NMEM)."""
    from interp import score_paragraphs

    splits = testbed_paragraph_set.meta["split"]
    once = [i for i, s in enumerate(splits) if s == "once"][:520]
    keep = [i for i, s in enumerate(splits) if s == "planted"] + once
    sub = testbed_paragraph_set.select(keep)
    return sub, score_paragraphs(testbed, sub)


TINY_DEFAULTS = dict(
    n_layers=2,
    d_model=32,
    n_heads=4,
    d_head=8,
    d_mlp=64,
    d_vocab=50,
    n_ctx=32,
    act_fn="gelu_new",
    normalization_type="LN",
    window_size=8,
    use_attn_scale=False,
    original_architecture="GPTNeoForCausalLM",
    seed=0,
)
"""The tiny test model's config: a 2-layer GPT-Neo (global / local layers) of width 32."""


def tiny_config(**overrides):
    """`TINY_DEFAULTS` with any HookedTransformerConfig field overridden; attention types follow n_layers
    (global / local alternating) unless given. For module-scoped fixtures, which cannot use `tiny_model`."""
    from transformer_lens import HookedTransformerConfig

    cfg = {**TINY_DEFAULTS, **overrides}
    n_layers = cfg["n_layers"]
    cfg.setdefault("attn_types", ["global", "local"] * (n_layers // 2) + ["global"] * (n_layers % 2))
    return HookedTransformerConfig(**cfg)


@pytest.fixture
def tiny_model():
    """A factory of small random models of `tiny_config`'s fields, e.g. tiny_model(n_layers=4, d_vocab=48): a GPT-Neo
    built through interp (tests/factories.py), so a HookedTransformer or a TransformerBridge as INTERP_BACKEND says.
    Fields a GPT-Neo cannot have (attn_only, RMSNorm, use_attn_scale, a soft cap, ...), and an initializer_range (a
    test calibrated on the weights HookedTransformer's own seeded initialization gives), give a HookedTransformer of
    `tiny_config` under the hooked backend, and skip the test under the bridge."""
    import factories

    from interp import backend

    def make(**overrides):
        try:
            if "initializer_range" in overrides:
                raise factories.NotFaithful("calibrated on HookedTransformer's seeded initialization")
            return factories.tiny_model(**overrides)
        except factories.NotFaithful as exc:
            if backend.NAME != "hooked":
                pytest.skip(f"needs a HookedTransformer-only tiny model ({exc})")
            from transformer_lens import HookedTransformer

            return HookedTransformer(tiny_config(**overrides)).eval()

    return make


def state_hash(model: torch.nn.Module) -> str:
    """sha256 of every tensor of the state dict, by name."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def hook_count(model: torch.nn.Module) -> int:
    """Forward, forward-pre and backward hooks on any module of the model (HookPoints included)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def model_state(model: torch.nn.Module) -> dict:
    """Everything an analysis must leave as it found it: weights, requires_grad flags, .grad, hooks."""
    return {
        "weights": state_hash(model),
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": [n for n, p in model.named_parameters() if p.grad is not None],
        "hooks": hook_count(model),
    }


@pytest.fixture
def assert_untouched():
    """assert_untouched(model) -> a context manager failing if the block changed the model's weights,
    requires_grad flags or .grad, or left a hook on it (also when the block raised)."""
    from contextlib import contextmanager

    @contextmanager
    def check(model: torch.nn.Module):
        before = model_state(model)
        try:
            yield
        finally:
            after = model_state(model)
            for key in before:
                assert after[key] == before[key], f"the analysis changed the model's {key}"

    return check
