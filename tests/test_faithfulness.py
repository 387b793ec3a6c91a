"""The audit's faithfulness on systems whose answer is known by construction: a hook that hides only the
exact prompt, an unlearning kept inside the int4 rounding bins (both still hold the text), and a model that
never saw it; the AUC by hand; no model is changed."""

from __future__ import annotations

import pytest
import torch
from conftest import hook_count, state_hash
from test_audit import CONT, GROUP, random_text, recited, tiny

from interp.audit import AuditConfig, quantized
from interp.audit.faithfulness import (
    HIDDEN,
    RETRAINED,
    ROUNDED,
    auc,
    faithfulness,
    faithfulness_of,
    hide_prefix_hooks,
    rounding_hidden,
    rounding_projection,
)
from interp.backend import hooks_on, named_weights
from interp.errors import UserError
from interp.metrics import score_paragraphs
from interp.unlearning import UnlearnConfig, unlearn

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def sets():
    base, _ = quantized(tiny(), 4, GROUP)  # an int4-grid model: int4 rounding returns it exactly
    targets = recited(base, 4, seed=1, tag="m")
    return base, targets, random_text(8, 2, "k"), random_text(10, 3, "r")


def test_auc_by_hand():
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 3], [2, 2]) == 0.5 and auc([2], [2]) == 0.5
    assert auc([2, 3], [1, 3]) == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert auc([], [1]) != auc([], [1])  # nan


def test_the_hook_hides_only_the_exact_prompt(sets):
    """With the hook, the targets are not recited; a target behind one token of left context, and any other
    paragraph, is scored exactly as without the hook: the weights still hold the text."""
    base, targets, never_known, _ = sets
    hooks, own = hide_prefix_hooks(base, targets), hook_count(base)  # own: 0, or the TransformerBridge's norm hooks
    with hooks_on(base, hooks):
        hidden = score_paragraphs(base, targets).em
        other = score_paragraphs(base, never_known).nll
        shifted = base(torch.cat([never_known.tokens[:, :1][: len(targets)], targets.tokens], 1))
    assert hook_count(base) == own
    assert int(hidden.max()) < CONT and bool((score_paragraphs(base, targets).em == CONT).all())
    assert torch.equal(other, score_paragraphs(base, never_known).nll)
    plain = base(torch.cat([never_known.tokens[:, :1][: len(targets)], targets.tokens], 1))
    assert torch.equal(shifted, plain)


def test_rounding_projection_is_undone_by_int4_exactly(sets):
    """Every step of the shallow unlearning is projected inside the original's int4 bins: the targets are
    forgotten, yet int4 rounding of the unlearned copy is the original's int4 model, weight for weight."""
    base, targets, _, retain = sets
    before = state_hash(base)
    forgot = rounding_hidden(base, targets, retain, UnlearnConfig(method="ga", select="all", lr=3e-2, steps=10))
    assert state_hash(base) == before
    assert float(score_paragraphs(forgot, targets).em.float().mean()) < CONT / 2
    back, _ = quantized(forgot, 4, GROUP)
    original_q, _ = quantized(base, 4, GROUP)
    moved = 0
    pairs = zip(named_weights(back).items(), named_weights(original_q).items(), named_weights(forgot).items())
    for (name, w), (_, w0), (_, wq) in pairs:
        if name.endswith(("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")):
            assert torch.equal(w.tensor, w0.tensor), name
            moved += int((wq.tensor != w0.tensor).sum())
    assert moved > 0
    free = unlearn(base, targets, retain, UnlearnConfig(method="ga", select="all", lr=3e-2, steps=10)).model
    project = rounding_projection(base)
    project(free)  # projecting any copy lands it in the bins too
    free_q = named_weights(quantized(free, 4, GROUP)[0]).items()
    assert all(
        torch.equal(a.tensor, b.tensor)
        for (n, a), (_, b) in zip(free_q, named_weights(original_q).items())
        if n.endswith(("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out"))
    )


def test_faithfulness_separates_present_from_absent(sets):
    """The hook and the rounded unlearning hold the targets, a model that never saw them does not: the int4
    attack returns the rounded system to the original's EM, an edited or shifted prompt passes the hook, the
    residual separates present from absent while the unattacked EM does not, and the AUCs are the Mann-Whitney
    AUCs of the audit's own numbers."""
    base, targets, never_known, retain = sets
    reference = tiny(seed=11)
    config = AuditConfig(attacks=("int4", "restore", "perturb", "shift"), perturb_k=4, shifts=(1, 2))
    hashes, own = (state_hash(base), state_hash(reference)), hook_count(base)  # own: 0, or the bridge's norm hooks
    out = faithfulness(
        base,
        reference,
        targets,
        never_known,
        retain,
        config=config,
        shallow=UnlearnConfig(method="ga", select="all", lr=3e-2, steps=10),
    )
    assert (state_hash(base), state_hash(reference)) == hashes and hook_count(base) == own
    r = out.audit
    m = {name: i for i, name in enumerate(r.methods)}
    a = {name: i for i, name in enumerate(r.attacks)}
    assert torch.equal(r.em_attacked[m[ROUNDED], a["int4"]], r.em_original)
    for attack in ("perturb", "shift"):  # an edited or shifted prompt passes the hook: the original's own scores
        assert torch.equal(r.em_attacked[m[HIDDEN], a[attack]], r.em_original_attacked[a[attack]]), attack
    holds = [HIDDEN, ROUNDED]
    present = torch.cat([r.em_attacked[m[s], a["int4"]] for s in holds]).float().tolist()
    absent = r.em_attacked[m[RETRAINED], a["int4"]].float().tolist()
    absent += r.em_never_known_attacked[:, a["int4"]].float().flatten().tolist()
    assert out.auc_em["int4"] == pytest.approx(auc(present, absent))
    # all appear to forget: unattacked, the hook leaves 1 of 8 tokens on 2 of its 4 targets (0.625), every other item 0
    assert out.auc_em["int4"] > 0.7 and out.auc_residual > 0.9 and out.auc_unattacked < 0.65
    assert out.n_present == 2 * len(targets) and out.n_absent == len(targets) + 3 * len(never_known)
    assert "AUC" in out.format() and out.to_json()["present"] == {HIDDEN: True, ROUNDED: True, RETRAINED: False}
    with pytest.raises(UserError, match="missing"):
        faithfulness_of(r, {HIDDEN: True})
    with pytest.raises(UserError, match="recites"):
        faithfulness(base, base, targets, never_known, retain, config=config)
