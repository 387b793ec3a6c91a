"""The locator finds a head known by construction: memorization forced through ONE head's weights."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_model

from interp.backend import named_weights, param_name
from interp.data import Paragraphs
from interp.errors import UserError
from interp.locator.ranking import combine, locate_memorization_head, method_ranks
from interp.metrics import em_from_hits, score_paragraphs

PREFIX, CONT, VOCAB, N_TARGETS = 4, 4, 48, 2
LAYER, HEAD = 1, 2


@pytest.fixture(scope="module")
def forced():
    """A random model whose head (1, 2) ALONE was fine-tuned (W_Q, W_K, W_V, W_O of that head) to recite new paragraphs."""
    # GPT-Neo heads are d_model / n_heads wide: 128 for heads 32 wide; seed 2's head learns both targets (p0 recited)
    model = tiny_model(d_model=128, d_vocab=VOCAB, n_ctx=16, seed=2, initializer_range=0.3)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (24, PREFIX + CONT), generator=g)
    tokens[:N_TARGETS] = torch.randperm(VOCAB, generator=g)[: N_TARGETS * (PREFIX + CONT)].view(N_TARGETS, -1)
    # the weights by their TransformerLens names (the leaf that holds each, in its layout: interp.backend)
    weights = named_weights(model)
    before = {k: w.tensor.detach().clone() for k, w in weights.items()}
    head = [weights[param_name(LAYER, f"W_{x}")] for x in "QKVO"]
    params = [w.leaf for w in head]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    steps = 120
    opt = torch.optim.Adam(params, lr=3e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    others = torch.arange(model.cfg.n_heads) != HEAD
    for _ in range(steps):
        pred = model(tokens[:N_TARGETS])[:, PREFIX - 1 : -1]
        if (em_from_hits(pred.argmax(-1) == tokens[:N_TARGETS, PREFIX:]) == CONT).all():
            break
        loss = torch.nn.functional.cross_entropy(pred.reshape(-1, VOCAB), tokens[:N_TARGETS, PREFIX:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        for w in head:
            w.to_tl(w.leaf.grad)[others] = 0  # gradient masking: only the chosen head's slice moves
        opt.step()
        sched.step()
    opt.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(True)
    changed = {k for k, w in weights.items() if not torch.equal(w.tensor, before[k])}
    assert changed == {f"blocks.{LAYER}.attn.W_{x}" for x in "QKVO"}
    for x in "QKVO":
        w, w0 = weights[f"blocks.{LAYER}.attn.W_{x}"].tensor, before[f"blocks.{LAYER}.attn.W_{x}"]
        assert torch.equal(w[others], w0[others]) and not torch.equal(w[HEAD], w0[HEAD])
    return model, Paragraphs(tokens, PREFIX, tuple(f"p{i}" for i in range(24)))


def test_locator_ranks_the_forced_head_first(forced):
    model, paragraphs = forced
    em = score_paragraphs(model, paragraphs).em
    assert (em[N_TARGETS:] < CONT).all() and (em[:N_TARGETS] == CONT).sum() >= 1  # something was memorized
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ranking = locate_memorization_head(model, paragraphs, nmem_max=1, set_size=8)
    assert ranking.top == (LAYER, HEAD)
    assert set(ranking.mem_ids) <= {f"p{i}" for i in range(N_TARGETS)}
    assert ranking.ranks["patching"][LAYER, HEAD] == 1
    assert ranking.rank_by == ("patching", "ablation") and ranking.screen["exact_all"]  # 8 heads, 8 candidates
    table = ranking.to_json()["heads"]
    assert (table[0]["layer"], table[0]["head"], table[0]["rank"]) == (LAYER, HEAD, 1)
    assert [row["rank"] for row in table] == list(range(1, 9))
    assert set(table[0]) >= {"rare_token_tau", "gradient_score", "ablation_effect", "patching_effect"}
    assert table[0]["patching_effect"] > 0.5
    assert all(v.equal(model.state_dict()[k]) for k, v in state.items())
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values())
    assert all(p.grad is None for p in model.parameters())


def test_screen_sends_only_candidates_to_the_exact_methods(forced):
    from interp.locator.patching import activation_patching
    from interp.perturbation import corrupt_prefixes

    model, paragraphs = forced
    mem, nmem, reference = (
        paragraphs.select(range(N_TARGETS)),
        paragraphs.select(range(4, 12)),
        paragraphs.select(range(12, 20)),
    )
    ranking = locate_memorization_head(
        model,
        mem=mem,
        nmem=nmem,
        reference=reference,
        candidates=3,
        methods=("attribution", "patching", "ablation", "zero_out"),
    )
    screened = {tuple(c) for c in ranking.results["attribution"].top(3).tolist()}
    assert {tuple(c) for c in ranking.candidates.tolist()} == screened
    for method in ("patching", "ablation", "zero_out"):
        scored = {tuple(c) for c in (~ranking.results[method].score.isnan()).nonzero().tolist()}
        assert scored == screened
    corrupted = corrupt_prefixes(mem, 0.5, VOCAB, seed=0)
    exact = activation_patching(model, mem, corrupted)["head_out"].effect
    for layer, head in screened:
        assert float(ranking.results["patching"].score[layer, head]) == pytest.approx(
            float(exact[layer, head]), abs=1e-5
        )
    assert set(ranking.screen) >= {"candidates", "pearson_on_candidates", "spearman_on_candidates"}
    assert ranking.screen["candidates"] == 3 and not ranking.screen["exact_all"]
    full = locate_memorization_head(
        model, mem=mem, nmem=nmem, reference=reference, exact_all=True, methods=("attribution", "patching")
    )
    assert full.screen["exact_top"] == list(full.results["patching"].top(1)[0].tolist())
    assert full.screen["exact_top_attribution_rank"] == full.results["attribution"].rank_of(*full.screen["exact_top"])


def test_combination_is_mean_rank_with_z_score_tiebreak():
    a = torch.tensor([[3.0, 2.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 5.0], [1.0, 2.0]])
    assert method_ranks(a).tolist() == [[1, 2], [3, 4]]
    ranks, mean_rank, order, agreement = combine({"a": a, "b": b}, ("a", "b"))
    assert mean_rank.tolist() == [[2.5, 1.5], [3.0, 3.0]]
    # (1, 0) and (1, 1) tie on mean rank; (1, 0) has the larger summed z-score (-0.85 vs -1.16).
    assert order.tolist() == [[0, 1], [0, 0], [1, 0], [1, 1]]
    assert agreement["a~b"] == pytest.approx(-1 / 3)
    _, _, order_a, _ = combine({"a": a, "b": b}, ("a",))
    assert order_a[0].tolist() == [0, 0]
    # an unscored unit (NaN) has no rank, comes after every scored one; agreement uses the units both scored
    c = torch.tensor([[float("nan"), 1.0], [3.0, 2.0]])
    ranks, mean_c, order_c, agreement = combine({"a": a, "c": c}, ("c",))
    assert ranks["c"].isnan().tolist() == [[True, False], [False, False]]
    assert ranks["c"].nan_to_num(0).tolist() == [[0, 3], [1, 2]] and order_c[-1].tolist() == [0, 0]
    assert mean_c[0, 0].isnan() and agreement["a~c"] == pytest.approx(-1 / 3)


def test_units_outside_the_screen_get_no_combined_rank_and_follow_the_screens_order():
    """Old behaviour: unscored heads ranked after the scored ones in layer-major order, and that made-up rank
    was averaged with an all-head method's rank (so the order of unscreened heads said where they sit)."""
    nan = float("nan")
    screened = torch.tensor([[nan, 0.9, nan], [nan, nan, 0.1], [0.5, nan, nan]])  # e.g. patching on 3 heads
    every = torch.tensor([[9.0, 1.0, 8.0], [7.0, 6.0, 2.0], [3.0, 5.0, 4.0]])  # e.g. gradient on all heads
    screen = torch.tensor([[0.1, 0.9, 0.3], [0.2, 0.4, 0.8], [0.7, 0.6, 0.5]])  # the attribution that chose them
    ranks, mean_rank, order, _ = combine({"p": screened, "g": every}, ("p", "g"), screen)
    # ranks re-taken among the 3 screened heads: p: (0,1)=1, (2,0)=2, (1,2)=3; g: (2,0)=1, (1,2)=2, (0,1)=3
    assert mean_rank[0, 1] == 2.0 and mean_rank[2, 0] == 1.5 and mean_rank[1, 2] == 2.5
    assert int((~mean_rank.isnan()).sum()) == 3 and ranks["p"][0, 0].isnan()
    assert order[:3].tolist() == [[2, 0], [0, 1], [1, 2]]
    # the rest in the screen's order (0.6, 0.5, 0.4, 0.3, 0.2, 0.1), not layer-major
    assert order[3:].tolist() == [[2, 1], [2, 2], [1, 1], [0, 2], [1, 0], [0, 0]]


def test_head_table_marks_heads_outside_the_screen(forced):
    model, paragraphs = forced
    mem, nmem, reference = (
        paragraphs.select(range(N_TARGETS)),
        paragraphs.select(range(4, 12)),
        paragraphs.select(range(12, 20)),
    )
    ranking = locate_memorization_head(
        model,
        mem=mem,
        nmem=nmem,
        reference=reference,
        candidates=3,
        methods=("attribution", "gradient", "patching", "ablation"),
        rank_by=("patching", "gradient"),
    )
    rows = ranking.head_table()
    assert [r["rank"] for r in rows[:3]] == [1, 2, 3] and all(r["status"] == "ranked" for r in rows[:3])
    outside = rows[3:]
    assert all(r["rank"] is None and r["mean_rank"] is None for r in outside)
    assert all(r["status"] == "outside the screen" and r["method_ranks"]["patching"] is None for r in outside)
    attribution = [ranking.results["attribution"].score[r["layer"], r["head"]].item() for r in outside]
    assert attribution == sorted(attribution, reverse=True)
    layer, head = outside[0]["layer"], outside[0]["head"]
    assert ranking.rank_of(layer, head) is None and ranking.results["patching"].rank_of(layer, head) is None
    assert any("mixes screened methods (patching)" in n and "gradient" in n for n in ranking.notes)


def test_a_20_paragraph_set_carves_the_reference_out_first(forced):
    """4 recited + 16 not, default --set-size 16: the old split left nothing for mean
    ablation's reference and stopped with an error naming an internal field."""
    model, paragraphs = forced
    em = score_paragraphs(model, paragraphs).em
    recited = (em == CONT).nonzero().flatten().tolist()
    others = (em < CONT).nonzero().flatten()[:16].tolist()
    picks = (recited * 4)[:4] + others
    small = Paragraphs(paragraphs.tokens[picks], PREFIX, tuple(f"q{i}" for i in range(len(picks))))
    assert len(small) == 20
    ranking = locate_memorization_head(
        model, small, methods=("attribution", "patching", "ablation"), nmem_max=CONT - 1, set_size=16
    )
    assert (len(ranking.mem_ids), len(ranking.nmem_ids), len(ranking.reference_ids)) == (4, 8, 8)
    assert not set(ranking.reference_ids) & set(ranking.nmem_ids + ranking.mem_ids)
    assert any("small paragraph set (20)" in n and "--reference FILE" in n for n in ranking.notes)
    assert ranking.top == (LAYER, HEAD)
    # with enough spare paragraphs the old split is kept (nothing carved, no note)
    roomy = locate_memorization_head(model, small, methods=("attribution", "ablation"), nmem_max=CONT - 1, set_size=4)
    assert (len(roomy.nmem_ids), len(roomy.reference_ids)) == (4, 8)
    assert not any("small paragraph set" in n for n in roomy.notes)


def test_locator_needs_mem_and_nmem(forced):
    model, paragraphs = forced
    with pytest.raises(UserError, match="NMEM"):
        locate_memorization_head(model, paragraphs.select(torch.tensor([0])), nmem_max=1)
    with pytest.raises(UserError, match="method"):
        locate_memorization_head(model, paragraphs, methods=("vibes",))
    with pytest.raises(UserError, match="rank_by"):
        locate_memorization_head(model, paragraphs, methods=("ablation",), rank_by=("patching",))
    with pytest.raises(UserError, match="mem= and nmem="):
        locate_memorization_head(model, mem=paragraphs.select([0]))
    with pytest.raises(UserError, match=r"--reference FILE.*--methods zero_out"):
        locate_memorization_head(model, mem=paragraphs.select([0]), nmem=paragraphs.select([5]), methods=("ablation",))


def test_views_of_the_ranking_work_offline_and_escape_tokens(forced):
    import json

    from interp.views.heads import attention_view, ranking_figures, ranking_page

    model, paragraphs = forced
    ranking = locate_memorization_head(
        model, paragraphs, methods=("rare_token", "attribution", "patching"), nmem_max=1, set_size=4
    )
    figs = ranking_figures(ranking)
    assert set(figs) == {
        "head_method_ranks",
        "head_rare_token_tau",
        "head_attention_by_rank",
        "head_patching",
        "head_attribution",
    }
    _, cache = model.run_with_cache(paragraphs.tokens[:1])
    patterns = torch.stack([cache["pattern", layer][0] for layer in range(2)])
    tokens = ["</script>", "<!--", 'a"b', "\\"] + [f"t{i}" for i in range(PREFIX + CONT - 4)]
    view = attention_view(tokens, patterns, [ranking.top], rarity=list(range(PREFIX + CONT)))
    page = ranking_page(ranking, [view])
    assert "cdn" not in view.local_src.split("CircuitsVis.render(")[-1]
    props = view.local_src.split("CircuitsVis.AttentionHeads,")[-1].rsplit("</script>", 1)[0]
    assert "</" not in props and "<!--" not in props
    decoded = json.loads(props.strip().rstrip(")").strip().replace("<\\/", "</").replace("<\\!--", "<!--"))
    # circuitsvis sets token labels as HTML, so they arrive HTML-escaped and show as text
    assert decoded["tokens"][:4] == ["&lt;/script&gt;[r0]", "&lt;!--[r1]", 'a"b[r2]', "\\[r3]"]
    assert f"layer {ranking.top[0]}, head {ranking.top[1]}" in page and page.count("<html>") == 1


def test_the_rare_token_null_option_reaches_the_locators_score(forced):
    model, paragraphs = forced
    for null in ("shuffle_positions", "pair_paragraphs"):
        ranking = locate_memorization_head(
            model,
            paragraphs,
            nmem_max=1,
            methods=("rare_token",),
            rank_by=("rare_token",),
            method_options={"rare_token": {"null": null}},
        )
        assert ranking.rare_tokens.null == null
        assert torch.allclose(ranking.results["rare_token"].score, -ranking.rare_tokens.excess.nan_to_num(0.0).float())


def test_a_20_paragraph_set_with_every_default(forced):
    """The same 20 paragraphs with no option changed (every default method, the default NMEM threshold and set
    size): the reference is still carved out, every default method ranks the forced head, and it comes first."""
    from interp.locator.ranking import DEFAULT_METHODS

    model, paragraphs = forced
    em = score_paragraphs(model, paragraphs).em
    picks = ((em == CONT).nonzero().flatten().tolist() * 4)[:4] + (em < CONT).nonzero().flatten()[:16].tolist()
    small = Paragraphs(paragraphs.tokens[picks], PREFIX, tuple(f"q{i}" for i in range(len(picks))))
    ranking = locate_memorization_head(model, small)
    assert tuple(ranking.results) == tuple(DEFAULT_METHODS) and len(ranking.mem_ids) == 4
    assert ranking.reference_ids and not set(ranking.reference_ids) & set(ranking.nmem_ids + ranking.mem_ids)
    assert ranking.top == (LAYER, HEAD)


@pytest.mark.slow
def test_locate_head_cli_on_20_testbed_paragraphs_with_default_flags(tmp_path, testbed_paragraph_set):
    """`interp locate-head` with only --model, --paragraphs and --json: 10 planted paragraphs the testbed
    recites and 10 seen once; the JSON holds every default method's score and rank for all 48 heads (heads
    the attribution screen dropped have no patching / ablation rank), and the sets the defaults chose."""
    import json

    from interp.cli import main
    from interp.locator.ranking import DEFAULT_METHODS

    split = testbed_paragraph_set.meta["split"]
    picks = [i for i, s in enumerate(split) if s == "planted"][:10]
    picks += [i for i, s in enumerate(split) if s == "once"][:10]
    path, out = tmp_path / "p.jsonl", tmp_path / "heads.json"
    testbed_paragraph_set.select(picks).save_jsonl(path)
    assert main(["locate-head", "--model", "testbed", "--paragraphs", str(path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["methods"] == list(DEFAULT_METHODS) and len(result["heads"]) == 48
    assert result["n_mem"] == 10 and all(i.startswith("planted-1024x") for i in result["mem_ids"])
    assert result["n_nmem"] + result["n_reference"] == 10 and all(i.startswith("once") for i in result["nmem_ids"])
    screened = {(h["layer"], h["head"]) for h in result["heads"] if h["method_ranks"].get("patching") is not None}
    assert len(screened) == result["screen"]["candidates"] and 0 < len(screened) < 48
    assert all(h["method_ranks"]["gradient"] is not None for h in result["heads"])


def test_locate_takes_its_options_whole(tiny_model):
    from interp.locator.options import LocateOptions

    model = tiny_model()
    g = torch.Generator().manual_seed(5)
    mem = Paragraphs(torch.randint(0, 50, (4, 8), generator=g), 4, tuple(f"m{i}" for i in range(4)))
    nmem = Paragraphs(torch.randint(0, 50, (4, 8), generator=g), 4, tuple(f"n{i}" for i in range(4)))
    options = LocateOptions(methods=("zero_out", "attribution"), rank_by=("zero_out",), candidates=2, set_size=3)
    whole = locate_memorization_head(model, mem=mem, nmem=nmem, options=options)
    keywords = locate_memorization_head(
        model, mem=mem, nmem=nmem, methods=options.methods, rank_by=("zero_out",), candidates=2, set_size=3
    )
    assert whole.rank_by == ("zero_out",) and len(whole.mem_ids) == 3 and whole.screen["candidates"] == 2
    assert torch.equal(whole.order, keywords.order) and whole.screen == keywords.screen
    with pytest.raises(TypeError, match="options= or candidates="):
        locate_memorization_head(model, mem=mem, nmem=nmem, options=options, candidates=4)
