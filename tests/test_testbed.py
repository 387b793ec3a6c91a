"""The shipped testbed memorizes what was planted, by content, wherever it stands in the context;
the build code lays out its data as designed, trains, and resumes an interrupted run exactly."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from interp import load_model, position_robustness, split_mem_nmem, testbed_metadata, testbed_paragraphs
from interp.testbed import build
from interp.testbed.build import QUICK, build_testbed

# ---- the shipped testbed ----


def test_shipped_memorization_matches_metadata(testbed_scores):
    meta = testbed_metadata()
    p, scores = testbed_scores
    full = p.continuation_len
    mem, _ = split_mem_nmem(scores.em, full)
    assert len(mem) >= 50 and len(mem) == meta["n_mem"]
    counts = torch.tensor(p.counts)
    for c, row in meta["memorization_by_count"].items():
        if int(c) > 1:  # every planted paragraph is scored here; seen once only the first 520
            assert int((scores.em[counts == int(c)] == full).sum()) == row["n_memorized"]
    # The curve rises from none to all with the repeat count.
    frac = {c: float((scores.em[counts == c] == full).float().mean()) for c, _ in meta["config"]["planted"]}
    assert frac[max(frac)] == 1.0 and frac[min(frac)] == 0.0
    once = torch.tensor([s == "once" for s in p.meta["split"]])
    assert float((scores.em[once] <= 10).float().mean()) >= 0.95
    assert meta["fraction_once_em_le_10"] >= 0.95


@pytest.mark.slow
def test_shipped_testbed_recites_at_any_offset(testbed, testbed_paragraph_set):
    """Re-measured on the shipped weights: >= 90% of MEM paragraphs stay at EM 50 after k tokens of
    held-out text, and no worse than the metadata says."""
    meta = testbed_metadata()
    split = testbed_paragraph_set.meta["split"]
    planted = testbed_paragraph_set.select([i for i, s in enumerate(split) if s == "planted"])
    filler = testbed_paragraph_set.select([i for i, s in enumerate(split) if s == "heldout"]).tokens
    ks = tuple(meta["config"]["robustness_ks"])
    result = position_robustness(testbed, planted, filler=filler, ks=ks, seed=meta["config"]["seed"])
    recorded = {row["k"]: row["share_kept"] for row in meta["position_robustness"]["table"]}
    for k in ks:
        assert result.share_kept(k) >= 0.9
        assert result.share_kept(k) >= recorded[k] - 0.02


def test_metadata_has_provenance_and_statistics():
    meta = testbed_metadata()
    cfg = meta["config"]
    assert meta["version"] == 2 and cfg["seed"] == 0
    assert (
        cfg["n_layers"] >= 6
        and cfg["n_heads"] >= 8
        and cfg["context"] >= 256
        and cfg["window_size"] <= cfg["context"] // 2
    )
    assert meta["corpus"]["sha256"] and meta["corpus"]["python_version"]
    assert (
        len(meta["unigram_counts"]) == cfg["vocab_size"]
        and sum(meta["unigram_counts"]) == meta["data"]["stream_tokens"]
    )
    assert set(meta["planted"]) == {str(c) for c, _ in cfg["planted"]}
    offsets = meta["data"]["offsets"]
    assert offsets["range"] == [1, cfg["context"] - 100 - 1] and offsets["min_count_per_offset"] > 0
    assert offsets["chi2_uniform_p"] > 1e-3  # start offsets are uniform
    assert 0 < meta["data"]["planted_share"] < 1
    files = set(meta["corpus"]["heldout_files"])
    paras = testbed_paragraphs()
    for source, s in zip(paras.meta["source"], paras.meta["split"]):
        assert (source in files) == (s != "once")  # planted and held-out text comes from held-out files


def test_shipped_weights_load_as_float32():
    model = load_model("testbed", device="cpu")
    assert model.cfg.n_ctx == testbed_metadata()["config"]["context"]
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ---- the build code, on the quick config ----


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    meta = build_testbed(root / "out", QUICK, work_dir=root / "work")
    return root, meta, torch.load(root / "work" / "data.pt", weights_only=False)


def _occurrences(sequences: torch.Tensor, paragraph: torch.Tensor) -> list[tuple[int, int]]:
    """(sequence, offset) of every place the paragraph occurs in the training sequences."""
    windows = sequences.long().unfold(1, paragraph.numel(), 1)  # [seq, offset, L]
    return [tuple(x) for x in (windows == paragraph).all(-1).nonzero().tolist()]


def test_quick_build_sets_and_offsets_are_as_designed(quick):
    root, meta, data = quick
    layout, cfg = data["layout"], QUICK
    paras = testbed_paragraphs(path=root / "out")
    assert Counter(paras.meta["split"]) == {"planted": 12, "once": cfg.n_eval_once, "heldout": cfg.n_heldout}
    assert layout.tokens.shape[1] == cfg.context
    # Every copy starts inside the uniform range, with real text before and after it.
    lo, hi = cfg.offset_range
    assert lo >= 1 and hi == cfg.context - cfg.seq_len - 1
    assert layout.copy_offset.min() == lo and layout.copy_offset.max() == hi
    assert meta["data"]["offsets"]["chi2_uniform_p"] > 1e-3
    for i in range(len(paras)):
        where = _occurrences(layout.tokens, paras.tokens[i])
        split, count = paras.meta["split"][i], paras.counts[i]
        if split == "planted":  # exactly `count` copies, each at an offset the layout recorded
            assert len(where) == count
            recorded = {(int(s), int(o)) for s, o in zip(layout.copy_seq, layout.copy_offset)}
            assert set(where) <= recorded and all(lo <= o <= hi for _, o in where)
        elif split == "once":  # once, exactly where the metadata says it was seen
            assert where == [(paras.meta["sequence"][i], paras.meta["sequence_offset"][i])]
        else:
            assert where == []
    assert meta["data"]["planted_tokens"] == sum(c * n for c, n in cfg.planted) * cfg.seq_len


@pytest.mark.slow
def test_interrupted_build_resumes_to_the_same_weights(quick, tmp_path, monkeypatch):
    root, meta, _ = quick
    real_tqdm = build.tqdm

    class Interrupted(real_tqdm):  # stops training after 60 steps, past the checkpoint at 50
        def __iter__(self):
            for i, step in enumerate(super().__iter__()):
                if i == 60:
                    raise KeyboardInterrupt
                yield step

    monkeypatch.setattr(build, "tqdm", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_testbed(tmp_path / "out", QUICK, work_dir=tmp_path / "work")
    assert torch.load(tmp_path / "work" / "train_state.pt", weights_only=False)["step"] == 50
    monkeypatch.setattr(build, "tqdm", real_tqdm)
    again = build_testbed(tmp_path / "out", QUICK, work_dir=tmp_path / "work")
    first, second = load_file(root / "out" / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert again["training"]["final_loss"] == meta["training"]["final_loss"]
    losses = meta["training"]["loss_curve"]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5  # it learned something


def test_fused_training_attention_matches_eager():
    """Training runs attention through PyTorch's fused kernel; it must compute what GPT-Neo does."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    cfg = GPTNeoConfig(
        vocab_size=50,
        max_position_embeddings=32,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        window_size=5,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(cfg).eval()
    tokens = torch.randint(0, 50, (3, 32))
    with torch.no_grad():
        eager = model(tokens).logits
        build.use_fused_attention(model)
        fused = model(tokens).logits
    assert torch.allclose(eager, fused, atol=1e-5)
    with torch.no_grad():  # and the window really matters, so the check above is not vacuous
        model.transformer.h[1].attn.attention.bias.fill_(True)
        assert not torch.allclose(fused, model(tokens).logits, atol=1e-3)


# ---- the companion: a small model of the testbed's data for decoding-time unlearning ----


def test_shipped_companion_shares_the_tokenizer_and_matches_its_metadata(testbed, testbed_paragraph_set):
    from interp.metrics import score_paragraphs
    from interp.models import TESTBED_COMPANION_DIR

    small = load_model("testbed-companion", device="cpu")
    meta = testbed_metadata(TESTBED_COMPANION_DIR)
    assert small.tokenizer.get_vocab() == testbed.tokenizer.get_vocab()
    assert small.cfg.d_vocab == testbed.cfg.d_vocab and small.cfg.n_ctx == testbed.cfg.n_ctx
    assert small.cfg.n_layers == meta["shape"]["n_layers"] < testbed.cfg.n_layers
    assert meta["companion_of"]["corpus_sha256"] == testbed_metadata()["corpus"]["sha256"]
    assert meta["training"]["wall_seconds"] > 0 and meta["training"]["steps"] > 0
    assert (TESTBED_COMPANION_DIR / "model.safetensors").stat().st_size < 8 * 2**20
    planted = testbed_paragraph_set.select(
        [i for i, s in enumerate(testbed_paragraph_set.meta["split"]) if s == "planted"]
    )
    em = score_paragraphs(small, planted).em
    assert em.tolist() == [meta["em"][i] for i in planted.ids]


@pytest.mark.slow
def test_companion_build_reuses_the_testbeds_data_and_loop(quick, tmp_path):
    from interp.testbed.build import CompanionShape, build_companion

    root, _, data = quick
    shape = CompanionShape(n_layers=2, d_model=32, n_heads=4, d_mlp=64, share=0.5)
    meta = build_companion(tmp_path / "comp", testbed_dir=root / "out", shape=shape, work_dir=tmp_path / "work")
    n_seq = round(0.5 * len(data["layout"].tokens))
    assert meta["training"]["tokens"] == n_seq * QUICK.context
    assert meta["training"]["steps"] == -(-n_seq // QUICK.batch_size)
    rebuilt = torch.load(tmp_path / "work" / "data.pt", weights_only=False)
    assert torch.equal(rebuilt["layout"].tokens, data["layout"].tokens)  # the testbed's own sequences
    small = load_model(str(tmp_path / "comp"), device="cpu")
    base = load_model(str(root / "out"), device="cpu")
    assert small.tokenizer.get_vocab() == base.tokenizer.get_vocab() and small.cfg.d_model == 32
    assert set(meta["em"]) == set(testbed_paragraphs(path=root / "out").ids)
