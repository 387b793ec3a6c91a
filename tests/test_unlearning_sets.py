"""The paragraphs of one unlearning table (`interp.unlearning.sets`), chosen by one rule for `interp unlearn` and
the report: retain sets first, then the probes; never-seen text for perplexity and control (b), unused NMEM text
standing in without it; edit targets reused when given, found by prefix perturbation when an edit row needs them."""

from __future__ import annotations

import pytest
import torch
from factories import random_text, recitation_model, recited

from interp.errors import UserError
from interp.perturbation import prefix_perturbation
from interp.unlearning.sets import unlearning_sets

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model():
    return recitation_model()


@pytest.fixture(scope="module")
def text(model):
    return recited(model, 5, 1, "m"), random_text(40, 2, "n"), random_text(6, 3, "h")


def sets_of(model, targets, mem, nmem, never_seen, **overrides):
    options = dict(
        retain_per_run=3, probe=4, batch_size=8, relearn=True, edit=False, perturb_samples=2, seed=0
    ) | overrides
    return unlearning_sets(model, targets, mem, nmem, never_seen, **options)


def test_retain_sets_come_first_then_the_probes_and_never_seen_text_serves_perplexity_and_control_b(model, text):
    mem, nmem, never_seen = text
    sets = sets_of(model, mem.select([0, 1]), mem.select([2, 3, 4]), nmem, never_seen)
    assert sets.targets.ids == ("m0", "m1")
    assert sets.retain.ids == tuple(f"n{i}" for i in range(6))  # 2 runs x 3, target i with retain[3i:3i+3]
    assert sets.probe.mem.ids == ("m2", "m3", "m4")  # at most `probe` other MEM paragraphs
    assert sets.probe.nmem.ids == ("n6", "n7", "n8", "n9")  # the next `probe` NMEM paragraphs
    assert sets.probe.heldout.ids == ("h0", "h1", "h2", "h3")
    assert sets.never_seen.ids == ("h0", "h1")  # one per target
    assert sets.edit_targets is None and sets.never_seen_edit is None
    arguments = sets.table_arguments()
    assert arguments["heldout"] is sets.never_seen and arguments["retain_per_run"] == 3
    # The NMEM probe's continuations are the model's own greedy decoding (NMEM EM is measured against it).
    assert not torch.equal(sets.probe.nmem.continuations, nmem.select(range(6, 10)).continuations)
    # No attack, no control (b); its never-seen paragraphs still probe perplexity.
    quiet = sets_of(model, mem.select([0, 1]), mem.select([2]), nmem, never_seen, relearn=False)
    assert quiet.never_seen is None and quiet.probe.heldout.ids == ("h0", "h1", "h2", "h3")
    # No other MEM paragraph: the MEM probe is empty, never the targets themselves.
    assert len(sets_of(model, mem.select([0, 1]), mem.select(range(0)), nmem, never_seen).probe.mem) == 0


def test_without_never_seen_text_unused_nmem_paragraphs_stand_in_for_perplexity_and_control_b_has_none(model, text):
    mem, nmem, _ = text
    sets = sets_of(model, mem.select([0]), mem.select([1]), nmem, None)
    assert sets.retain.ids == ("n0", "n1", "n2")
    assert sets.probe.nmem.ids == ("n3", "n4", "n5", "n6")
    assert sets.probe.heldout.ids == ("n7", "n8", "n9", "n10")  # used by nothing else
    assert sets.never_seen is None
    # Every NMEM paragraph already used: the NMEM probe stands in.
    short = sets_of(model, mem.select([0]), mem.select([1]), nmem.select(range(5)), None)
    assert short.probe.nmem.ids == ("n3", "n4") and short.probe.heldout.ids == ("n3", "n4")
    with pytest.raises(UserError, match="need 3 to retain"):
        sets_of(model, mem.select([0]), mem.select([1]), nmem.select(range(3)), None)


def test_edit_targets_are_reused_when_given_and_found_by_prefix_perturbation_when_an_edit_row_needs_them(model, text):
    mem, nmem, never_seen = text
    targets = mem.select([0, 1])
    found = sets_of(model, targets, mem.select([2]), nmem, never_seen, edit=True)
    expected = prefix_perturbation(model, targets, samples_per_position=2, seed=0).editing_targets
    assert torch.equal(found.edit_targets.tokens, expected.tokens)
    assert not torch.equal(found.edit_targets.continuations, targets.continuations)
    control = prefix_perturbation(model, never_seen.select([0, 1]), samples_per_position=2, seed=0).editing_targets
    assert torch.equal(found.never_seen_edit.tokens, control.tokens)
    given = sets_of(model, targets, mem.select([2]), nmem, never_seen, edit_targets=targets)
    assert given.edit_targets is targets and given.never_seen_edit is None  # no edit row: no control (b) edits
