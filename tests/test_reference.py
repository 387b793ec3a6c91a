"""The testbed's reference model: the same training with some planted paragraphs left out. The leaving out
touches only their copies, and the shipped reference never saw them while the testbed recites them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from interp.testbed.build import QUICK, REFERENCE_LEFT_OUT, Layout, leave_out


def _layout() -> tuple[Layout, np.ndarray, list[str]]:
    """Two paragraphs of 4 tokens, 3 copies of the first and 2 of the second, in 3 sequences of 12."""
    tokens = torch.arange(36, dtype=torch.int32).reshape(3, 12)
    paragraph = np.array([0, 0, 0, 1, 1])
    seq, off = np.array([0, 1, 2, 0, 2]), np.array([1, 2, 1, 7, 7])
    for s, o, p in zip(seq, off, paragraph):
        tokens[s, o : o + 4] = torch.tensor([100 + p] * 4)
    empty = np.zeros(0, dtype=np.int64)
    layout = Layout(tokens, seq, paragraph, off, empty, empty, empty, empty)
    return layout, np.arange(1000, 1100), ["planted-3x-0", "planted-2x-1"]


def test_leave_out_replaces_only_the_left_out_copies_with_stream_windows():
    layout, stream, ids = _layout()
    before = layout.tokens.clone()
    cfg = replace(QUICK, prefix_len=2, continuation_len=2, dedup_ngram=4, context=12, margin=1, left_out=("planted-2x-1",))
    leave_out(cfg, layout, stream, ids)
    changed = sorted(map(tuple, (layout.tokens != before).nonzero().tolist()))
    assert changed == [(s, c) for s in (0, 2) for c in range(7, 11)]  # the second paragraph's two copies only
    for s, o in ((0, 7), (2, 7)):  # each copy now a window of the stream, not the paragraph
        window = layout.tokens[s, o : o + 4].numpy()
        assert (window >= 1000).all() and np.array_equal(window, np.arange(window[0], window[0] + 4))
    assert (layout.tokens == 100).sum() == 12 and (layout.tokens == 101).sum() == 0
    with pytest.raises(ValueError, match="not planted"):
        leave_out(replace(cfg, left_out=("planted-9x-9",)), layout, stream, ids)


@pytest.mark.slow
def test_the_shipped_reference_never_saw_the_left_out_paragraphs(testbed):
    from interp.metrics import score_paragraphs
    from interp.models import TESTBED_REFERENCE_DIR, load_model
    from interp.testbed import testbed_metadata, testbed_paragraphs

    meta = testbed_metadata(TESTBED_REFERENCE_DIR)
    assert tuple(meta["reference_of"]["left_out"]) == REFERENCE_LEFT_OUT and len(REFERENCE_LEFT_OUT) >= 8
    assert tuple(meta["config"]["left_out"]) == REFERENCE_LEFT_OUT
    shipped = testbed_paragraphs()
    assert torch.equal(testbed_paragraphs(path=TESTBED_REFERENCE_DIR).tokens, shipped.tokens)
    reference = load_model("testbed-reference", device="cpu")
    ids = list(shipped.ids)
    left = shipped.select([ids.index(i) for i in REFERENCE_LEFT_OUT])
    kept = shipped.select([i for i, x in enumerate(ids) if x.startswith("planted-1024x")])
    assert bool((score_paragraphs(testbed, left).em == 50).all())
    assert int(score_paragraphs(reference, left).em.max()) <= 10  # never seen: as unmemorized as held-out text
    assert bool((score_paragraphs(reference, kept).em == 50).all())  # the rest of its training is the testbed's
