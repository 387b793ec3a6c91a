"""Shared fixtures: seeding for every test, and the bundled testbed loaded once per session."""

from __future__ import annotations

import random

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    torch.manual_seed(0)


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
