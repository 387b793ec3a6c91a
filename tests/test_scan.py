"""`interp scan`: screen and exact scans find exactly the windows an independent oracle marks as
memorized; spans, controls, filters, resume, shards + merge, bad input; the testbed's planted text.

The unit model is a tiny GPT-Neo whose layers are all local (window 4) and whose position
embeddings are zero, so its prediction at a position depends only on the few tokens before it.
For such a model the screen (long context) and the exact windows (own prefix) must agree on
every window, and one forward over a whole document is an exact oracle for every window's EM.
Memorized text is made by letting the model continue a random seed greedily.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from interp.cli import main
from interp.data import Paragraphs, load_paragraphs, unique_fraction
from interp.errors import UserError
from interp.metrics import score_paragraphs
from interp.models import load_model
from interp.scan import ScanConfig, engine, merge_spans, resolve_corpus, scan_corpus, screen_windows
from interp.scan import corpus as corpus_mod
from interp.scan.corpus import iter_documents, parse_shard

P, C = 8, 12
W = P + C


def toy_tokenizer(folder: Path):
    """A 400-token byte-level BPE (trained on the scan engine's source), saved in `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([Path(engine.__file__).read_text()], trainer=trainer)
    eos = "<|endoftext|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos, pad_token=eos)
    fast.save_pretrained(folder)
    return fast


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    folder = tmp_path_factory.mktemp("tiny_neo")
    fast = toy_tokenizer(folder)
    torch.manual_seed(0)
    cfg = GPTNeoConfig(
        vocab_size=len(fast),
        max_position_embeddings=256,
        hidden_size=64,
        num_layers=2,
        attention_types=[[["local"], 2]],
        num_heads=4,
        intermediate_size=128,
        window_size=4,
        initializer_range=0.5,
        activation_function="gelu_new",
        resid_dropout=0.0,
        embed_dropout=0.0,
        bos_token_id=0,
        eos_token_id=0,
        attention_dropout=0.0,
    )
    hf = GPTNeoForCausalLM(cfg)
    with torch.no_grad():
        hf.transformer.wpe.weight.zero_()
    hf.save_pretrained(folder)
    return folder, load_model(str(folder), device="cpu")


def _greedy(model, seeds: torch.Tensor, n: int) -> torch.Tensor:
    """The seeds [batch, k] each followed by the model's greedy continuation of n tokens."""
    x = seeds
    with torch.no_grad():
        for _ in range(n):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x


def _docs(model, n_docs: int, seed: int = 0) -> list[list[int]]:
    """Random tokens around a greedily continued seed (memorized by construction), or random only."""
    g = torch.Generator().manual_seed(seed)
    greedy = _greedy(model, torch.randint(0, model.cfg.d_vocab, (n_docs, 8), generator=g), 45).tolist()
    docs = []
    for d in range(n_docs):
        rand = lambda n: torch.randint(0, model.cfg.d_vocab, (n,), generator=g).tolist()  # noqa: E731
        docs.append(rand(150) if d % 3 == 2 else rand(17 + 7 * d) + greedy[d] + rand(40))
    return docs


def _write_jsonl(path: Path, docs: list[list[int]]) -> Path:
    path.write_text("".join(json.dumps({"tokens": d}) + "\n" for d in docs))
    return path


def _oracle(model, doc: list[int]) -> list[int]:
    """Starts of windows whose continuation the model predicts entirely: one forward over the document."""
    x = torch.tensor(doc)
    with torch.no_grad():
        hits = (model(x[None])[0, :-1].argmax(-1) == x[1:]).tolist()
    return [s for s in range(len(doc) - W + 1) if all(hits[s + P - 1 : s + W - 1])]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _mem_starts(records) -> set[tuple[str, int]]:
    return {(r["source"], s) for r in records if r["kind"] == "mem" for a, b in r["mem_runs"] for s in range(a, b + 1)}


@pytest.fixture(scope="module")
def corpus_file(tiny, tmp_path_factory):
    return _write_jsonl(tmp_path_factory.mktemp("corpus") / "docs.jsonl", _docs(tiny[1], 6))


def test_screen_and_exact_find_exactly_the_oracle_windows(tiny, corpus_file, tmp_path):
    model = tiny[1]
    docs = [json.loads(line)["tokens"] for line in corpus_file.read_text().splitlines()]
    expected = {(f"{corpus_file}#{i + 1}", s) for i, d in enumerate(docs) for s in _oracle(model, d)}
    assert len(expected) > 50  # the greedy stretches give whole spans of memorized windows
    corpus = resolve_corpus([corpus_file])
    cfg = ScanConfig(prefix_len=P, continuation_len=C, filters=False, n_controls=5, recall_sample=1.0, group_tokens=300)
    results = {}
    for exact in (False, True):
        out = tmp_path / f"{exact}.jsonl"
        summary = scan_corpus(model, corpus, out, ScanConfig(**{**cfg.__dict__, "exact": exact}), progress=False)
        records = _records(out)
        assert _mem_starts(records) == expected
        assert summary.mem_windows == len(expected)
        # one record per span: the merge of the oracle's windows, per document
        spans = {
            (src, sp.start, sp.end)
            for src in {s for s, _ in expected}
            for sp in merge_spans(
                sorted(o for s, o in expected if s == src), [0.0] * sum(s == src for s, _ in expected), W, 1
            )
        }
        assert {(r["source"], r["span_start"], r["span_end"]) for r in records if r["kind"] == "mem"} == spans
        results[exact] = (summary, records)
    screen, exact = results[False][0], results[True][0]
    assert exact.windows_scored == exact.windows and screen.mode == "screen"
    assert screen.screen_recall["mem"] == len(expected) == screen.screen_recall["found"]
    assert screen.screen_recall["windows"] == screen.windows and screen.recall["measured"]
    # the NMEM controls are the same bottom-k sample whichever way the windows were scored
    controls = [{r["id"] for r in recs if r["kind"] == "nmem"} for _, recs in results.values()]
    assert controls[0] == controls[1] and len(controls[0]) == 5


def test_output_is_a_paragraph_file_with_true_scores(tiny, corpus_file, tmp_path):
    model = tiny[1]
    out = tmp_path / "scan.jsonl"
    scan_corpus(
        model,
        resolve_corpus([corpus_file]),
        out,
        ScanConfig(prefix_len=P, continuation_len=C, n_controls=8, intermediate=True),
        progress=False,
    )
    paragraphs = load_paragraphs(out, model.tokenizer, P, C, model.cfg.d_vocab)
    kinds = paragraphs.meta["kind"]
    assert {"mem", "nmem"} <= set(kinds)
    scores = score_paragraphs(model, paragraphs)
    assert scores.em.tolist() == list(paragraphs.meta["em"])
    assert torch.allclose(scores.nll, torch.tensor(paragraphs.meta["nll"]), atol=1e-4)
    log10_p = torch.tensor(paragraphs.meta["log10_p"], dtype=torch.float64)  # sampling reproduces the continuation
    torch.testing.assert_close(log10_p, scores.log10_p, rtol=0, atol=1e-4 * C)
    for kind, em in zip(kinds, scores.em.tolist()):
        assert (kind == "mem") == (em == C) and (kind != "nmem" or em <= 10) and (kind != "intermediate" or 10 < em < C)
    assert (unique_fraction(paragraphs.tokens) >= 0.5).all()
    summary = json.loads((tmp_path / "scan.summary.json").read_text())
    assert summary["nmem"] == 8 and summary["mem_spans"] == kinds.count("mem")


def test_screen_reads_each_window_after_at_most_step_minus_one_tokens_of_its_document():
    """The screen's verdict on a window equals a forward over the window preceded by the s - c
    document tokens since its chunk start c = step * floor(s / step), computed here window by window;
    with step 1 it is the exact score. A GPT-Neo with global attention and positions, so context counts."""
    from factories import tiny_model

    model = tiny_model(
        n_heads=2, d_head=16, n_ctx=64, d_vocab=50, attn_types=["global", "local"], window_size=6, initializer_range=0.5
    )
    g = torch.Generator().manual_seed(0)
    greedy = _greedy(model, torch.randint(0, 50, (1, P), generator=g), 50)[0].tolist()  # window 0 is MEM
    streams = [
        torch.tensor(greedy + torch.randint(0, 50, (40,), generator=g).tolist()),
        torch.tensor(torch.randint(0, 50, (W + 5,), generator=g).tolist()),
    ]
    for step in (1, 3, 7, W):
        starts = [torch.arange(0, len(x) - W + 1, 2) for x in streams]  # stride 2: not every window is asked about
        res = screen_windows(model, streams, starts, prefix_len=P, window_len=W, step=step, batch_size=3)
        for x, s, misses, lead in zip(streams, starts, res.misses, res.lead):
            seen = []
            for w in s.tolist():
                c = w - w % step
                with torch.no_grad():
                    pred = model(x[None, c : w + W])[0, w - c + P - 1 : -1].argmax(-1)
                hits = (pred == x[w + P : w + W]).long()
                seen.append(((1 - hits).sum().item(), hits.cumprod(0).sum().item()))
            assert list(zip(misses.tolist(), lead.tolist())) == seen
        n_chunks = [len(range(0, len(x) - W + 1, step)) for x in streams]
        assert res.chunks == sum(n_chunks)
        lengths = [min(W + step - 1, len(x) - c) for x, n in zip(streams, n_chunks) for c in range(0, n * step, step)]
        assert res.forward_tokens == sum(
            len(b) * max(b) for b in (lengths[i : i + 3] for i in range(0, len(lengths), 3))
        )
    exact = score_paragraphs(
        model, Paragraphs(streams[0][starts[0][:, None] + torch.arange(W)], P, tuple(map(str, range(len(starts[0])))))
    ).em
    step1 = screen_windows(model, streams[:1], starts[:1], prefix_len=P, window_len=W, step=1)
    assert torch.equal(step1.lead[0], exact) and torch.equal(step1.misses[0] == 0, exact == C)
    assert 0 < (exact == C).sum() < len(exact)  # greedy text and random text: the comparison can fail
    wide = screen_windows(model, streams[:1], starts[:1], prefix_len=P, window_len=W, step=W)
    assert not torch.equal(wide.lead[0], exact)  # the extra context matters for this model


def test_merge_spans_joins_overlapping_and_touching_windows():
    spans = merge_spans([41, 0, 2, 1, 10, 40, 80], [3.0, 2.0, 1.0, 2.5, 0.5, 4.0, 1.0], window_len=20, stride=1)
    assert [(s.start, s.end, s.best, s.n_windows, s.runs) for s in spans] == [
        (0, 30, 10, 4, ((0, 2), (10, 10))),
        (40, 61, 41, 2, ((40, 41),)),
        (80, 100, 80, 1, ((80, 80),)),
    ]
    touching = merge_spans([0, 20], [1.0, 1.0], window_len=20, stride=20)
    assert [(s.start, s.end, s.runs) for s in touching] == [(0, 40, ((0, 20),))]


def test_filters_drop_boilerplate_and_count_it(tiny, corpus_file, tmp_path):
    model = tiny[1]
    corpus = resolve_corpus([corpus_file])
    base = ScanConfig(prefix_len=P, continuation_len=C, n_controls=0, merge=False, recall_sample=0.0)
    scan_corpus(
        model, corpus, tmp_path / "all.jsonl", ScanConfig(**{**base.__dict__, "filters": False}), progress=False
    )
    mem = [r for r in _records(tmp_path / "all.jsonl") if r["kind"] == "mem"]
    low = [r for r in mem if unique_fraction(torch.tensor([r["tokens"]]))[0] < 0.5]
    target = next(r for r in mem if r not in low)
    pattern = re.escape(target["text"][-12:])
    kept = [r for r in mem if r not in low and not re.search(pattern, r["text"])]
    summary = scan_corpus(
        model,
        corpus,
        tmp_path / "f.jsonl",
        ScanConfig(**{**base.__dict__, "boilerplate_patterns": (pattern,)}),
        progress=False,
    )
    assert {r["id"] for r in _records(tmp_path / "f.jsonl")} == {r["id"] for r in kept}
    assert summary.filtered["boilerplate"]["mem"] == len(mem) - len(low) - len(kept) > 0
    assert summary.filtered["low_unique"]["mem"] == len(low)


def test_interrupted_scan_resumes_to_the_same_output(tiny, corpus_file, tmp_path, monkeypatch):
    model = tiny[1]
    corpus = resolve_corpus([corpus_file])
    cfg = ScanConfig(prefix_len=P, continuation_len=C, n_controls=6, group_tokens=100)
    monkeypatch.setattr(engine, "CHECKPOINT_SECONDS", 0.0)
    real, calls = engine._Scan.process, []

    def counted(self, docs):
        calls.append(len(docs))
        real(self, docs)

    def crash_after_writing(self, docs):
        counted(self, docs)  # records of this group reach the partial file, but no checkpoint does
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine._Scan, "process", counted)
    scan_corpus(model, corpus, tmp_path / "ref.jsonl", cfg, progress=False)
    n_groups = len(calls)
    assert n_groups >= 4
    calls.clear()
    monkeypatch.setattr(engine._Scan, "process", crash_after_writing)
    out = tmp_path / "run.jsonl"
    with pytest.raises(KeyboardInterrupt):
        scan_corpus(model, corpus, out, cfg, progress=False)
    assert not out.exists() and (tmp_path / "run.jsonl.scan-state.json").exists()
    with pytest.raises(UserError, match="--resume"):
        scan_corpus(model, corpus, out, cfg, progress=False)
    monkeypatch.setattr(engine._Scan, "process", counted)
    calls.clear()
    summary = scan_corpus(model, corpus, out, cfg, resume=True, progress=False)
    assert len(calls) == n_groups - 2  # it went on from the last checkpoint, after the 2nd group
    assert out.read_text() == (tmp_path / "ref.jsonl").read_text()
    assert summary.documents == 6 and not (tmp_path / "run.jsonl.scan-state.json").exists()
    assert not (tmp_path / "run.jsonl.partial").exists()
    monkeypatch.setattr(engine._Scan, "process", crash_after_writing)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        scan_corpus(model, corpus, tmp_path / "x.jsonl", cfg, progress=False)
    with pytest.raises(UserError, match="config differ"):  # resuming with other options is refused
        scan_corpus(
            model,
            corpus,
            tmp_path / "x.jsonl",
            ScanConfig(**{**cfg.__dict__, "stride": 2}),
            resume=True,
            progress=False,
        )


def test_shards_merge_into_the_unsharded_scan(tiny, tmp_path, capsys):
    corpus_path = _write_jsonl(tmp_path / "c.jsonl", _docs(tiny[1], 9, seed=1))
    assert (
        main(
            [
                "scan",
                "--model",
                str(tiny[0]),
                "--corpus",
                str(corpus_path),
                "--prefix-len",
                str(P),
                "--continuation-len",
                str(C),
                "--nmem",
                "7",
                "--no-progress",
                "--out",
                str(tmp_path / "all.jsonl"),
            ]
        )
        == 0
    )
    assert "MEM:" in capsys.readouterr().out
    corpus, cfg = resolve_corpus([corpus_path]), ScanConfig(prefix_len=P, continuation_len=C, n_controls=7)
    docs = [
        scan_corpus(tiny[1], corpus, tmp_path / f"s{k}.jsonl", cfg, shard=(k, 3), progress=False).documents
        for k in (1, 2, 3)
    ]
    assert sum(docs) == 9 and max(docs) < 9
    shards = [str(tmp_path / f"s{k}.jsonl") for k in (1, 2, 3)]
    assert main(["scan", "merge", *shards[:2], "--out", str(tmp_path / "m.jsonl")]) == 2
    assert "3/3 are missing" in capsys.readouterr().err
    assert main(["scan", "merge", *shards, "--out", str(tmp_path / "m.jsonl")]) == 0
    by_id = lambda p: {r["id"]: r for r in _records(p)}  # noqa: E731
    assert by_id(tmp_path / "m.jsonl") == by_id(tmp_path / "all.jsonl")
    merged = json.loads((tmp_path / "m.summary.json").read_text())
    single = json.loads((tmp_path / "all.summary.json").read_text())
    for key in ("documents", "tokens", "windows", "mem_windows", "mem_spans", "nmem", "screen_recall"):
        assert merged[key] == single[key]
    assert merged["screen_recall"]["windows"] > 0 and merged["recall"]["message"] == single["recall"]["message"]


def test_bad_input_is_one_line_and_exit_2(tiny, corpus_file, tmp_path, capsys):
    base = ["scan", "--model", str(tiny[0]), "--prefix-len", str(P), "--continuation-len", str(C), "--no-progress"]
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01binary")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("x = 1\n")
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me\n")
    cases = [
        (["--corpus", str(tmp_path / "missing.txt")], "does not exist"),
        (["--corpus", str(tmp_path / "bin.dat")], "binary"),
        (["--corpus", str(tmp_path / "empty.txt")], "empty"),
        (["--corpus", str(tmp_path / "short.txt"), "--out", str(tmp_path / "o.jsonl")], "no stretch of 20 tokens"),
        (["--corpus", str(corpus_file), "--shard", "0/2"], "1 <= K <= N"),
        (["--corpus", str(corpus_file), "--shard", "3/2"], "1 <= K <= N"),
        (["--corpus", str(corpus_file), "--shard", "half"], "is not K/N"),
        (["--corpus", str(corpus_file), "--out", str(existing)], "exists"),
        (["--corpus", str(tmp_path), "--glob", "*.nothing"], "no files matching"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert existing.read_text() == "keep me\n"
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"nope": 1}\n')
    assert main(base + ["--corpus", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "b.jsonl")]) == 2
    assert "bad.jsonl, line 2" in capsys.readouterr().err


def test_folders_glob_skip_binary_and_big_files_keep_token_offsets(tiny, tmp_path, monkeypatch):
    tokenizer = tiny[1].tokenizer
    (tmp_path / "sub").mkdir()
    text = "".join(f"def f{i}(x):\n    return x + {i}  # {'é' * (i % 3)}\n\n" for i in range(300))
    (tmp_path / "sub" / "a.py").write_text(text)
    (tmp_path / "b.py").write_text("def f():\n    return 1\n")
    (tmp_path / "c.py").write_bytes(b"\x00" * 10)
    corpus = resolve_corpus([tmp_path], "**/*.py")
    assert [f.source for f in corpus.files] == ["b.py", "sub/a.py"] and corpus.skipped_binary == (
        str(tmp_path / "c.py"),
    )
    monkeypatch.setattr(corpus_mod, "BLOCK_CHARS", 500)
    encode = lambda t: tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
    blocks = list(iter_documents(resolve_corpus([tmp_path / "sub" / "a.py"]), (1, 1), encode))
    assert len(blocks) > 5
    assert [t for d in blocks for t in d.tokens] == encode(text)  # cut where the tokenizer splits anyway
    assert [d.offset_base for d in blocks[1:]] == [b.offset_base + len(b.tokens) for b in blocks[:-1]]
    indented = "    x = 1\n" * 500  # no line starts at column 0: blocks are cut after any newline past 4 x 500
    (tmp_path / "i.txt").write_text(indented)
    pieces = list(corpus_mod._text_blocks(tmp_path / "i.txt"))
    assert "".join(pieces) == indented and len(pieces) > 1 and max(map(len, pieces)) <= 2500
    assert parse_shard("2/5") == (2, 5)


def test_scan_leaves_the_model_as_it_was(tiny, corpus_file, tmp_path):
    model = tiny[1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scan_corpus(
        model,
        resolve_corpus([corpus_file]),
        tmp_path / "s.jsonl",
        ScanConfig(prefix_len=P, continuation_len=C, n_controls=3),
        progress=False,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not h.fwd_hooks and not h.bwd_hooks for h in model.hook_dict.values())
    assert not model.training


def test_testbed_scan_finds_a_planted_paragraph_at_its_file_offset(testbed, tmp_path):
    """A paragraph planted 128 times (at random offsets of training sequences) is in its held-out
    stdlib file once. Cut 200 tokens before it (it starts a screening chunk) or 23 before it (it sits
    mid-chunk), the DEFAULT scan finds the window at its offset, as --exact does: the testbed recites
    by content, wherever the paragraph stands. The MEM record covering that offset holds the window."""
    import sysconfig

    from transformers import AutoTokenizer

    from interp.models import TESTBED_DIR
    from interp.testbed import testbed_paragraphs

    p = testbed_paragraphs()  # read afresh, as is the tokenizer: this test must not depend on what others did
    i = next(j for j, c in enumerate(p.counts) if c == 128 and p.meta["offset"][j] >= 250)
    source, offset = p.meta["source"][i], p.meta["offset"][i]
    text = (Path(sysconfig.get_paths()["stdlib"]) / source).read_text(encoding="utf-8", errors="replace")
    tokens = AutoTokenizer.from_pretrained(TESTBED_DIR).encode(text, add_special_tokens=False)
    assert tokens[offset : offset + 100] == p.tokens[i].tolist()
    for rel in (200, 23):
        path = _write_jsonl(tmp_path / f"slice{rel}.jsonl", [tokens[offset - rel : offset + 150]])
        for exact in (False, True):
            out = tmp_path / f"s{rel}{exact}.jsonl"
            scan_corpus(testbed, resolve_corpus([path]), out, ScanConfig(n_controls=2, exact=exact), progress=False)
            mem = [r for r in _records(out) if r["kind"] == "mem"]
            assert (f"{path}#1", rel) in _mem_starts(mem), (rel, exact)
            assert any(a <= rel <= b for r in mem for a, b in r["mem_runs"])


# ---- a rotary (GPT-NeoX) model that recalls paragraphs by content, wherever they sit ----------------

ROT_CTX, ROT_PARAGRAPHS = 64, 6


def _markov(succ: torch.Tensor, n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """n token sequences from a Markov chain with four successors per token: text a model can
    partly predict, so screened windows have hits and misses."""
    x = torch.empty(n, length, dtype=torch.long)
    x[:, 0] = torch.randint(0, len(succ), (n,), generator=g)
    for t in range(1, length):
        x[:, t] = succ[x[:, t - 1], torch.randint(0, succ.shape[1], (n,), generator=g)]
    return x


def train_rotary(tokenizer) -> tuple:
    """A 2-layer GPT-NeoX-style HookedTransformer (rotary positions) trained to recite 6 paragraphs of
    W tokens, each copy placed at a uniformly random offset of a 64-token Markov sequence, so it
    recalls them by content; returns (model, paragraphs, the Markov successor table). Half of the
    paragraphs share 8 tokens across the prefix / continuation boundary: their continuation needs
    the paragraph's first tokens, which a screen that cuts the prefix lacks."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    vocab = len(tokenizer)
    model = HookedTransformer(
        HookedTransformerConfig(
            n_layers=2,
            d_model=64,
            n_heads=4,
            d_head=16,
            d_mlp=256,
            n_ctx=ROT_CTX,
            d_vocab=vocab,
            act_fn="gelu",
            positional_embedding_type="rotary",
            rotary_dim=16,
            original_architecture="GPTNeoXForCausalLM",
            normalization_type="LN",
            seed=0,
        ),
        tokenizer=tokenizer,
    )
    g = torch.Generator().manual_seed(0)
    succ = torch.randint(0, vocab, (vocab, 4), generator=g)
    paragraphs = torch.randint(0, vocab, (ROT_PARAGRAPHS, W), generator=g)
    paragraphs[: ROT_PARAGRAPHS // 2, P - 2 : P + 6] = torch.randint(0, vocab, (8,), generator=g)
    steps, batch = 150, 16
    rows = _markov(succ, steps * batch, ROT_CTX, g)
    which = torch.randint(0, ROT_PARAGRAPHS, (len(rows),), generator=g)
    at = torch.randint(0, ROT_CTX - W + 1, (len(rows),), generator=g)
    rows.scatter_(1, at[:, None] + torch.arange(W), paragraphs[which])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=steps)
    for b in range(steps):
        loss = model(rows[b * batch : (b + 1) * batch], return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model, paragraphs, succ


def rotary_corpus(succ: torch.Tensor, paragraphs: torch.Tensor, n_docs: int, seed: int) -> tuple[list, list]:
    """Markov documents of 150-400 tokens, document d holding paragraph d mod 6 at a uniformly random
    offset; returns the documents and the offsets."""
    g = torch.Generator().manual_seed(seed)
    docs, planted = [], []
    for d in range(n_docs):
        x = _markov(succ, 1, int(torch.randint(150, 400, (1,), generator=g)), g)[0]
        at = int(torch.randint(0, len(x) - W + 1, (1,), generator=g))
        x[at : at + W] = paragraphs[d % len(paragraphs)]
        docs.append(x.tolist())
        planted.append(at)
    return docs, planted


@pytest.fixture(scope="module")
def rotary(tiny):
    from interp import backend

    if backend.NAME != "hooked":
        pytest.skip("trains a rotary HookedTransformer in place, a class TransformerLens 4 no longer has")
    return train_rotary(tiny[1].tokenizer)


def _stitched_screen(model, x: torch.Tensor) -> set[int]:
    """The screen this project had before: one hit stream stitched from chunks of W tokens every C
    tokens; a window is flagged when its whole continuation is hits. The control the test runs."""
    hits = torch.zeros(len(x), dtype=torch.bool)
    with torch.no_grad():
        for c in range(0, len(x) - P, C):
            seg = x[c : c + W]
            hits[c + P : c + len(seg)] = model(seg[None])[0, P - 1 : -1].argmax(-1) == seg[P:]
    return {s for s in range(len(x) - W + 1) if hits[s + P : s + W].all()}


@pytest.mark.slow
def test_default_scan_finds_what_exact_finds_on_a_rotary_model_at_random_offsets(rotary, tmp_path):
    model, paragraphs, succ = rotary
    em_alone = score_paragraphs(model, Paragraphs(paragraphs, P, tuple(map(str, range(ROT_PARAGRAPHS))))).em
    assert (em_alone == C).all()  # it memorized every paragraph
    docs, planted = rotary_corpus(succ, paragraphs, n_docs=4 * ROT_PARAGRAPHS, seed=1)
    corpus = resolve_corpus([_write_jsonl(tmp_path / "c.jsonl", docs)])
    base = ScanConfig(prefix_len=P, continuation_len=C, n_controls=10)
    runs = {}
    for name, cfg in (("exact", ScanConfig(**{**base.__dict__, "exact": True})), ("default", base)):
        counted = []
        with model.hooks(fwd_hooks=[("hook_embed", lambda x, hook: counted.append(x.shape[0] * x.shape[1]))]):
            summary = scan_corpus(model, corpus, tmp_path / f"{name}.jsonl", cfg, progress=False)
        runs[name] = (summary, _mem_starts(_records(tmp_path / f"{name}.jsonl")))
        # cost accounting: every position the model ran is counted once, under one purpose
        assert sum(summary.forward_tokens.values()) == sum(counted)
        scoring = sum(v for k, v in summary.forward_tokens.items() if k != "screen")
        assert scoring == W * summary.windows_scored
        assert summary.forward_per_token["all"] == pytest.approx(sum(counted) / summary.tokens)
    ex, de = runs["exact"][0], runs["default"][0]
    assert ex.forward_tokens["verify"] == W * ex.windows
    assert ex.forward_per_token["scan"] == pytest.approx(W * ex.windows / ex.tokens)  # every window, W tokens each
    chunk = base.chunk_len / base.screen_step  # forward tokens per corpus token of the screen, end effects aside
    assert 0.8 * chunk < de.forward_per_token["screen"] < 1.3 * chunk
    assert de.forward_per_token["audit"] == pytest.approx(W * de.screen_recall["windows"] / de.tokens, rel=0.2)
    assert de.forward_per_token["scan"] < 10
    exact, default = runs["exact"][1], runs["default"][1]
    sources = [f"{tmp_path / 'c.jsonl'}#{d + 1}" for d in range(len(docs))]
    assert {(src, at) for src, at in zip(sources, planted)} <= exact  # every planted copy is MEM at its offset
    assert default <= exact  # the default verifies exactly: nothing it reports is wrong
    assert len(default) >= 0.9 * len(exact)
    assert sum((src, at) in default for src, at in zip(sources, planted)) >= 0.9 * len(planted)
    # the control: the old stitched screen misses much of it, so this corpus can tell screens apart
    stitched = {(src, s) for src, x in zip(sources, docs) for s in _stitched_screen(model, torch.tensor(x))}
    assert sum((src, at) in stitched for src, at in zip(sources, planted)) < 0.75 * len(planted)


# ---- the recall audit: a number only when it rests on enough MEM windows ----------------------------


def test_recall_is_stated_with_an_interval_only_when_the_audit_holds_enough_mem_windows():
    from scipy.stats import binomtest

    from interp.scan.engine import recall_estimate

    config = {"recall_sample": 0.01, "recall_min_mem": 10, "prefix_len": 50, "continuation_len": 50}
    for found, mem in ((10, 10), (19, 20), (5, 20)):
        est = recall_estimate({"windows": 4000, "mem": mem, "found": found}, "screen", config, mem_windows=300)
        ci = binomtest(found, mem).proportion_ci(0.95, method="exact")
        assert est["measured"] and est["recall"] == found / mem
        assert est["ci95"] == pytest.approx((ci.low, ci.high), abs=1e-9)
        assert f"{found} of the {mem} MEM windows" in est["message"]
        assert ("--exact" in est["message"]) == (found / mem < 0.9)  # a screen that misses is called out
    few = recall_estimate({"windows": 4000, "mem": 3, "found": 3}, "screen", config, mem_windows=300)
    assert not few["measured"] and few["recall"] is None and "NOT MEASURED" in few["message"]
    # the scan found 300 MEM windows: an audit expected to hold twice the 10 needed samples 20 / 300 of them
    assert "--recall-sample 0.067 " in few["message"]
    none = recall_estimate({"windows": 4000, "mem": 0, "found": 0}, "screen", config, mem_windows=0)
    assert "NOT MEASURED" in none["message"] and "--exact" in none["message"]
    rare = recall_estimate({"windows": 4000, "mem": 0, "found": 0}, "screen", config, mem_windows=12)
    assert "too few MEM windows" in rare["message"] and "--exact" in rare["message"]
    assert recall_estimate({"windows": 0, "mem": 0, "found": 0}, "exact", config, 5)["message"].startswith("exact mode")


def test_console_and_summary_say_when_recall_is_unmeasured_and_the_suggested_flag_measures_it(
    tiny, corpus_file, tmp_path, capsys
):
    base = [
        "scan",
        "--model",
        str(tiny[0]),
        "--corpus",
        str(corpus_file),
        "--prefix-len",
        str(P),
        "--continuation-len",
        str(C),
        "--nmem",
        "0",
        "--no-progress",
        "--no-filters",
    ]
    assert main(base + ["--recall-sample", "0.005", "--out", str(tmp_path / "few.jsonl")]) == 0
    console = capsys.readouterr().out
    summary = json.loads((tmp_path / "few.summary.json").read_text())
    assert not summary["recall"]["measured"] and summary["recall"]["mem"] < 10
    assert summary["recall"]["message"] in console and "screen recall NOT MEASURED" in console
    suggested = re.search(r"--recall-sample ([0-9.]+) to measure it", console).group(1)
    assert main(base + ["--recall-sample", suggested, "--out", str(tmp_path / "enough.jsonl")]) == 0
    console = capsys.readouterr().out
    summary = json.loads((tmp_path / "enough.summary.json").read_text())
    assert summary["recall"]["measured"] and summary["recall"]["mem"] >= 10
    # this model sees only a few tokens back, so the screen cannot miss: recall 1 with its interval
    assert summary["recall"]["recall"] == 1.0 and summary["recall"]["ci95"][1] == 1.0
    assert f"screen recall: the screen flagged {summary['recall']['mem']} of the {summary['recall']['mem']}" in console
    assert "forward tokens per corpus token" in console
