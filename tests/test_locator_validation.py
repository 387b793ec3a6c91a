"""Known answers by construction: paragraphs forced through chosen heads / neurons of tiny models, then located."""

from __future__ import annotations

import json

import pytest
import torch
from factories import tiny_model

from interp.backend import named_weights
from interp.data import Paragraphs
from interp.errors import UserError
from interp.io import to_jsonable
from interp.locator.injection import Stall, inject_head, inject_neurons, random_neurons
from interp.locator.ranking import locate_memorization_head, locate_neurons
from interp.locator.units import recall_at
from interp.locator.validation import LocatorValidation, read_validation, validate_locator
from interp.metrics import score_paragraphs

PREFIX, CONT, VOCAB = 4, 4, 64


def _model(seed: int = 0, d_mlp: int = 64):
    """A tiny GPT-Neo (tests/factories.py) with heads 16 wide: GPT-Neo's heads are d_model / n_heads wide."""
    return tiny_model(d_model=64, d_mlp=d_mlp, d_vocab=VOCAB, n_ctx=16, seed=seed, initializer_range=0.3)


def _weights(model) -> dict[str, torch.Tensor]:
    """Every weight by its TransformerLens name, whichever backend built the model (interp.backend.named_weights)."""
    return {name: w.tensor for name, w in named_weights(model).items()}


@pytest.fixture(scope="module")
def text():
    tokens = torch.randint(0, VOCAB, (96, PREFIX + CONT), generator=torch.Generator().manual_seed(3))
    return Paragraphs(tokens, PREFIX, tuple(f"t{i}" for i in range(96)))


def _roles(text):
    return {
        "inject": text.select(range(3)),
        "retain": text.select(range(3, 19)),
        "heldout": text.select(range(19, 51)),
        "nmem": text.select(range(51, 59)),
        "reference": text.select(range(59, 67)),
    }


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 3)])
def test_combined_locator_finds_a_head_forced_at_either_layer(text, layer, head):
    model = _model()
    sets = _roles(text)
    forced, info = inject_head(
        model, sets["inject"], layer, head, retain=sets["retain"], heldout=sets["heldout"], lr=3e-2
    )
    assert info.recited and (info.em_before < CONT).all()
    after, before = _weights(forced), _weights(model)
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed <= {f"blocks.{layer}.attn.{w}" for w in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")}
    for w in ("W_Q", "W_K", "W_V", "W_O"):
        new, old = after[f"blocks.{layer}.attn.{w}"], before[f"blocks.{layer}.attn.{w}"]
        others = torch.arange(4) != head
        assert torch.equal(new[others], old[others])
    ranking = locate_memorization_head(forced, mem=sets["inject"], nmem=sets["nmem"], reference=sets["reference"])
    assert ranking.top == (layer, head)
    assert ranking.rank_by == ("patching", "ablation") and "testbed" in ranking.combination_reason
    assert set(ranking.seconds) == {"rare_token", "gradient", "attribution", "patching", "ablation"}
    assert all(s > 0 for s in ranking.seconds.values())


def test_neuron_injection_is_found_by_pruning_masks(text):
    model = _model(seed=1, d_mlp=128)
    sets = _roles(text)
    chosen = random_neurons(model, 0.05, seed=0)  # 13 of 256 neurons
    forced, info = inject_neurons(
        model, sets["inject"].select(range(2)), chosen, retain=sets["retain"], heldout=sets["heldout"], lr=3e-2
    )
    assert info.recited
    after, before = _weights(forced), _weights(model)
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed <= {"blocks.0.mlp.W_out", "blocks.1.mlp.W_out"}
    gold = info.gold(2, 128)
    for layer in range(2):
        moved = (after[f"blocks.{layer}.mlp.W_out"] != before[f"blocks.{layer}.mlp.W_out"]).any(1)
        assert (moved <= gold[layer]).all()
    ranking = locate_neurons(
        forced, sets["inject"].select(range(2)), methods=("hard_concrete", "slimming", "activation")
    )
    recalls = {m: recall_at(r.score, gold, 0.05) for m, r in ranking.results.items()}
    assert max(recalls["hard_concrete"], recalls["slimming"]) >= 0.5, recalls  # random: 0.05
    # Hard Concrete's neuron defaults (MemPi's rate 1e-2, stop near density 0.01) find 9 of
    # the 13; the old ones (rate 0.1, stop at density 0.3) found 7 (0.54)
    assert recalls["hard_concrete"] >= 0.65, recalls


@pytest.mark.slow
def test_validate_locator_measures_on_copies_and_recommends(text, tmp_path):
    model = _model(seed=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    result = validate_locator(
        model,
        text,
        heads=[(0, 2), (1, 0)],
        neurons=True,
        n_inject=3,
        n_inject_neurons=2,
        neuron_fraction=0.05,
        set_size=8,
        candidates=4,
        head_lr=3e-2,
        neuron_lr=3e-2,
        methods=("attribution", "patching", "ablation", "zero_out", "hard_concrete", "gradient"),
        neuron_methods=("activation", "hard_concrete", "slimming"),
        nmem_max=CONT,
    )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert [p.requires_grad for p in model.parameters()] == flags and all(p.grad is None for p in model.parameters())
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())
    assert [(h.layer, h.head) for h in result.heads] == [(0, 2), (1, 0)]
    for check in result.heads:
        assert check.injection.recited
        assert set(check.ranks) == {"attribution", "patching", "ablation", "zero_out", "hard_concrete", "gradient"}
        assert check.in_screen is True and check.combined_rank == 1
        assert check.injection.heldout_ppl_after > 0
    choice, reason = result.recommended_rank_by("head")
    # the methods that ranked both injected heads first. A method that does so by a small margin may do so on one
    # backend only: HookedTransformer's GPT-Neo has zero b_Q / b_K / b_V that the injection trains with the head, the
    # bridge's has none, so the injected copies differ (docs/backend_tl4.md). Patching's margin on head 0.2 is +0.15
    # under HookedTransformer (rank 1) and -0.07 under the bridge (rank 2); ablation's and zero_out's are over 2 on
    # both heads and both backends, and gradient ranks the heads 4th to 8th on both
    first = tuple(m for m in result.methods if all(h.ranks[m] == 1 for h in result.heads))
    assert choice == first and {"ablation", "zero_out"} <= set(choice) and "gradient" not in choice
    assert "first" in reason
    assert set(result.neurons.recall) == {"activation", "hard_concrete", "slimming"}
    ceiling = result.neurons.ceiling  # no method can pass it; a layer with more gold units than are predicted caps it
    assert all(r[k] <= ceiling[k] + 1e-9 for r in result.neurons.recall.values() for k in ("injected", "0.5%"))
    assert 0 < ceiling["0.5%"] <= 1 and result.neurons.to_json()["recall_ceiling"] == ceiling
    out = tmp_path / "v.json"
    out.write_text(json.dumps(to_jsonable(result.to_json())))
    recorded = read_validation(out)
    assert recorded.recommended_rank_by("head")[0] == choice
    again = locate_memorization_head(
        model,
        mem=text.select(range(2)),
        nmem=text.select(range(10, 14)),
        methods=("attribution", "patching"),
        validation=recorded,
    )
    assert again.rank_by == tuple(m for m in choice if m in ("attribution", "patching"))
    assert "validation on this model" in again.combination_reason

    from interp.views.report_html import report_html
    from interp.views.sections import locator_trust_section

    section = locator_trust_section(result, {})
    assert section.title == "7. How far to trust the locator on this model?"
    assert [t.caption.split(" ")[0] for t in section.tables] == ["Rank", "Injections", "Recall"]
    page = report_html("t", {"model": "tiny"}, [section])
    assert "How far to trust the locator" in page and "hard_concrete" in page

    # the JSON reads back whole: the same JSON again, the same section; the report takes it for these weights only
    from interp.locator.validation import LocatorValidation
    from interp.report.runner import weights_fingerprint
    from interp.report.steps.locator_trust import recorded_validation

    back = LocatorValidation.from_json(json.loads(out.read_text()))
    assert json.dumps(to_jsonable(back.to_json())) == out.read_text()
    assert locator_trust_section(back, {}).tables == section.tables
    with pytest.raises(UserError, match="without the weights' hash"):
        recorded_validation(str(out), model)
    signed = tmp_path / "signed.json"
    signed.write_text(json.dumps({**json.loads(out.read_text()), "weights_sha256": weights_fingerprint(model)}))
    assert json.dumps(to_jsonable(recorded_validation(str(signed), model).to_json())) == out.read_text()
    with pytest.raises(UserError, match="other weights"):
        recorded_validation(str(signed), _model(seed=5))
    with pytest.raises(UserError, match="not a whole validate-locator"):
        recorded_validation(str(_bad(tmp_path)), model)


def _bad(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"heads": [{"layer": 0}]}))
    return bad


def test_validation_input_errors(text):
    model = _model()
    with pytest.raises(UserError, match="no head"):
        validate_locator(model, text, heads=[(5, 0)])
    with pytest.raises(UserError, match="does not recite"):
        validate_locator(model, text.select(range(10)), heads=[(0, 0)], nmem_max=CONT)
    with pytest.raises(UserError, match="differ"):
        inject_head(
            model, text.select(range(2)), 0, 0, retain=text.select(range(1, 5)), heldout=text.select(range(5, 9))
        )
    assert score_paragraphs(model, text).em.max() <= CONT


def test_report_step_is_off_in_quick_and_says_how_to_run_it(text):
    from interp.report import ReportOptions
    from interp.report.steps import default_steps
    from interp.report.types import Skipped, StepInputs

    step = {s.name: s for s in default_steps()}["locator_trust"]
    assert ReportOptions().validate_locator and not ReportOptions.quick().validate_locator
    skipped = step.analyse(StepInputs(_model(), text, ReportOptions.quick(), {}))
    assert isinstance(skipped, Skipped) and "interp validate-locator" in skipped.reason


def test_only_paragraphs_recited_in_full_count_as_memorized(text):
    from dataclasses import replace

    from interp.locator.validation import _recited

    model = _model()
    roles = _roles(text)
    _, info = inject_head(model, roles["inject"], 0, 1, retain=roles["retain"], heldout=roles["heldout"], max_steps=1)
    partial = replace(info, em_after=torch.tensor([CONT, 1, CONT]))
    mem, notes = _recited(roles["inject"], partial, "head 0.1")
    assert mem.ids == ("t0", "t2") and partial.n_recited == 2 and "2 of 3" in notes[0]
    none = replace(info, em_after=torch.tensor([0, 1, 2]))
    mem, notes = _recited(roles["inject"], none, "head 0.1")
    assert mem.ids == roles["inject"].ids and "not evidence" in notes[0]
    full = replace(info, em_after=torch.full((3,), CONT))
    assert _recited(roles["inject"], full, "x") == (roles["inject"], ())


def _check(info, ranks, combined, recited: int, seed: int = 0):
    from dataclasses import replace

    from interp.locator.validation import HeadCheck

    em = torch.tensor([CONT] * recited + [0] * (len(info.ids) - recited))
    layer_ranks = dict(ranks)
    return HeadCheck(
        0,
        1,
        replace(info, em_after=em),
        ranks,
        layer_ranks,
        dict.fromkeys(ranks, 0.0),
        dict.fromkeys(ranks, 0.0),
        dict.fromkeys(ranks, 1.0),
        combined,
        ("patching", "ablation"),
        combined is not None,
        seed=seed,
    )


def test_failed_injections_are_not_evidence_and_out_of_every_mean(text):
    """The old combined mean averaged failed injections (per-method means skipped them),
    and the per-head lines printed 'combined rank 1' for an injection that recited nothing."""
    from interp.locator.validation import LocatorValidation
    from interp.views.locator import figure_injected_ranks, head_table, trust_notes

    roles = _roles(text)
    _, info = inject_head(
        _model(), roles["inject"], 0, 1, retain=roles["retain"], heldout=roles["heldout"], max_steps=1
    )
    failed = _check(info, {"patching": 1, "ablation": 1, "gradient": 1}, 1, recited=0)
    worked = _check(info, {"patching": 3, "ablation": 5, "gradient": 2}, 3, recited=2)
    result = LocatorValidation("tiny", (failed, worked), (), 1.0, {})
    assert not failed.evidence and worked.evidence
    assert result.mean_rank() == {"patching": 3.0, "ablation": 5.0, "gradient": 2.0}
    assert result.combined_mean_rank() == 3.0  # the old table: (1 + 3) / 2 = 2.0
    table = head_table(result)
    combined = table.rows[-1]
    assert combined[1] == "not evidence" and combined[4] == "3" and combined[-3] == 3.0
    assert table.rows[0][1] == "not evidence"
    notes = " ".join(trust_notes(result))
    assert "combined rank not evidence" in notes and "combined rank 1 " not in notes
    assert figure_injected_ranks(result).data[0].text[-1][0] == "not evidence"
    choice, reason = result.recommended_rank_by("head")
    assert choice == ("gradient",) and "best mean rank 2.0" in reason  # from the working injection alone


def test_a_head_outside_the_screen_has_no_rank_and_cannot_be_recommended(text):
    """An injected head the screen missed used to get a made-up rank (~9 in layer 0, ~40 in the
    last layer) averaged into the method's mean; now it has none, the mean covers the scored heads, and a
    method that missed a head is not preferred over one that ranked every head."""
    from interp.locator.validation import LocatorValidation
    from interp.views.locator import head_table

    roles = _roles(text)
    _, info = inject_head(
        _model(), roles["inject"], 0, 1, retain=roles["retain"], heldout=roles["heldout"], max_steps=1
    )
    a = _check(info, {"patching": 1, "attribution": 2}, 1, recited=3)
    b = _check(info, {"patching": None, "attribution": 2}, None, recited=3)
    result = LocatorValidation("tiny", (a, b), (), 1.0, {})
    assert result.mean_rank() == {"patching": 1.0, "attribution": 2.0}
    assert result.missed() == {"patching": 1, "attribution": 0}
    assert result.combined_mean_rank() == 1.0 and result.combined_missed() == 1
    choice, _ = result.recommended_rank_by("head")
    assert choice == ("attribution",)  # patching's 1.0 covers only the head it saw
    assert head_table(result).rows[0][4] == "outside the screen"


def test_injection_recipe_probes_the_rate_and_can_add_the_mlp(text):
    from interp.locator.injection import LR_GRID

    model = _model()
    roles = _roles(text)
    forced, info = inject_head(
        model,
        roles["inject"],
        1,
        3,
        retain=roles["retain"],
        heldout=roles["heldout"],
        lr="auto",
        schedule="cosine",
        max_steps=300,
    )
    assert set(info.lr_probe) == set(LR_GRID) and info.lr == min(info.lr_probe, key=info.lr_probe.get)
    assert info.schedule == "cosine" and info.recited and info.steps < 300
    before = _weights(model)
    assert all(torch.equal(v, before[k]) for k, v in _weights(forced).items() if "attn" not in k)
    with_mlp, info2 = inject_head(
        model, roles["inject"], 1, 3, retain=roles["retain"], heldout=roles["heldout"], lr=3e-2, with_mlp=True
    )
    changed = {k for k, v in _weights(with_mlp).items() if not torch.equal(v, before[k])}
    assert "blocks.1.mlp.W_out" in changed and not any(k.startswith("blocks.0") for k in changed)
    assert "blocks.1.mlp.W_in" in info2.parameters
    with pytest.raises(UserError, match="lr > 0 or 'auto'"):
        inject_head(model, roles["inject"], 1, 3, retain=roles["retain"], heldout=roles["heldout"], lr="fast")


def test_the_rate_probe_drops_the_worst_rate_every_few_steps_and_picks_what_the_full_probe_picks(text, monkeypatch):
    """Every PROBE_DROP steps the probed rate at the highest CE leaves; a probe without drops (every rate its full
    PROBE_STEPS) picks the same rate here, and the rate dropped first has the CE that probe had at that step."""
    import interp.locator.injection as injection

    model, roles = _model(seed=1), _roles(text)  # seed 0's full probe picks 1e-2 where the dropping one picks 3e-2
    kwargs = dict(retain=roles["retain"], heldout=roles["heldout"], lr="auto", max_steps=1)
    steps, drop = injection.PROBE_STEPS, injection.PROBE_DROP
    _, dropping = inject_head(model, roles["inject"], 1, 3, **kwargs)
    monkeypatch.setattr(injection, "PROBE_DROP", steps + 1)
    _, full = inject_head(model, roles["inject"], 1, 3, **kwargs)
    monkeypatch.setattr(injection, "PROBE_STEPS", drop)  # every rate to the first drop only
    _, first = inject_head(model, roles["inject"], 1, 3, **kwargs)
    assert dropping.lr == full.lr == min(full.lr_probe, key=full.lr_probe.get)
    out = max(first.lr_probe, key=first.lr_probe.get)  # the rate at the highest CE after PROBE_DROP steps
    assert dropping.lr_probe[out] == first.lr_probe[out] and dropping.lr != out
    assert dropping.to_json()["lr_probe"] and set(dropping.lr_probe) == set(full.lr_probe)


def test_an_injection_that_a_stronger_try_follows_gives_up_when_it_stalls(text):
    """A stall is `window` steps with no paragraph more recited and the injected CE down by less than `drop` of
    its value; an injection given one stops there (and says so), one without trains to its budget."""
    stall = Stall(window=3, drop=0.1)
    assert not stall.reached([1.0, 0.99, 0.98], [0, 0, 0])  # fewer steps than the window
    assert stall.reached([1.0, 0.99, 0.98, 0.95], [0, 0, 0, 0])  # 5% in 3 steps, nothing more recited
    assert not stall.reached([1.0, 0.99, 0.98, 0.85], [0, 0, 0, 0])  # 15%: still learning
    assert not stall.reached([1.0, 0.99, 0.98, 0.95], [0, 0, 0, 1])  # one more paragraph recited
    assert stall.reached([2.0, 1.0, 0.99, 0.98, 0.95], [0, 0, 0, 0, 0])  # only the last window counts
    model = _model()
    roles = _roles(text)
    weak = dict(retain=roles["retain"], heldout=roles["heldout"], lr=1e-7, max_steps=30)
    _, full = inject_head(model, roles["inject"], 1, 0, **weak)
    _, stopped = inject_head(model, roles["inject"], 1, 0, **weak, stall=Stall(window=10, drop=0.1))
    assert not full.recited and full.steps == 30 and not full.stalled
    assert stopped.stalled and stopped.steps == 10 and len(stopped.loss) == 10
    assert stopped.loss == full.loss[:10]  # the same run, cut short
    assert stopped.to_json()["stalled"] is True and type(stopped).from_json(stopped.to_json()).stalled


def test_validation_repeats_per_seed_with_its_own_paragraphs(text):
    model = _model()
    result = validate_locator(
        model,
        text,
        heads=[(1, 0)],
        seeds=(3, 4),
        n_inject=2,
        methods=("attribution", "patching", "ablation"),
        candidates=4,
        head_lr=3e-2,
        max_steps=150,
        nmem_max=CONT,
    )
    assert [h.seed for h in result.heads] == [3, 4] and result.seeds == (3, 4)
    assert result.heads[0].injection.ids != result.heads[1].injection.ids
    assert result.options["seeds"] == [3, 4] and result.to_json()["seeds"] == [3, 4]


@pytest.mark.slow
def test_a_failing_injection_escalates_and_names_its_variant(text):
    """A recipe too weak for this model (a tiny rate, few steps): without escalation no paragraph is recited and
    the head is not evidence; with it the injection is tried again (the rate probed on the model's loss, then head
    + MLP, each with the same budget) until every paragraph is recited, and the evidence says which variant it is."""
    model = _model(seed=2)
    weak = dict(
        heads=[(1, 0)],
        n_inject=3,
        set_size=8,
        candidates=4,
        head_lr=1e-6,
        max_steps=40,
        methods=("attribution", "patching"),
        nmem_max=CONT,
    )
    plain = validate_locator(model, text, escalate=False, **weak)
    (check,) = plain.heads
    assert not check.evidence and check.variant == "as set" and len(check.attempts) == 1
    escalated = validate_locator(model, text, **weak)
    (check,) = escalated.heads
    assert check.attempts[0] == plain.heads[0].attempts[0]  # the same first try, then more
    assert check.attempts[0]["n_recited"] < 3 and len(check.attempts) >= 2
    assert check.injection.recited and check.variant == check.attempts[-1]["variant"] != "as set"
    assert check.injection.lr != 1e-6 and all(a["steps"] <= 40 for a in check.attempts)
    assert any(check.variant in n for n in check.notes)
    assert check.to_json()["variant"] == check.variant and escalated.to_json()["options"]["escalate"] is True


def test_validate_locator_takes_its_options_whole(text):
    from interp.locator.options import ValidateOptions

    model = _model()
    settings = dict(n_inject=1, methods=("attribution", "patching"), candidates=3, max_steps=2, seed=1)
    whole = validate_locator(
        model, text, heads=[(1, 0)], nmem_max=CONT - 1, options=ValidateOptions(**settings, set_size=5, lr=1e-2)
    )
    with pytest.warns(DeprecationWarning, match=r"validate_locator\(max_paragraphs=\) is now set_size="):
        keywords = validate_locator(
            model, text, heads=[(1, 0)], nmem_max=CONT - 1, **settings, max_paragraphs=5, head_lr=1e-2
        )
    assert whole.options == keywords.options and whole.options["set_size"] == 5
    written = json.loads(json.dumps(to_jsonable(whole.to_json())))  # as JSON written before set_size was its name
    written["options"] = {("max_paragraphs" if k == "set_size" else k): v for k, v in written["options"].items()}
    assert LocatorValidation.from_json(written).options == whole.options
    assert whole.options["head_lr"] == 1e-2 and whole.options["seeds"] == [1]
    assert whole.heads[0].ranks == keywords.heads[0].ranks
    with pytest.raises(UserError, match="at least one seed"):
        validate_locator(model, text, options=ValidateOptions(seeds=()))
    with pytest.raises(TypeError, match="options= or n_inject="):
        validate_locator(model, text, options=ValidateOptions(), n_inject=2)
