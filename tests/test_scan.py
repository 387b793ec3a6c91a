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
from interp.scan import ScanConfig, merge_spans, resolve_corpus, scan_corpus, screen_hits
from interp.scan import corpus as corpus_mod
from interp.scan import engine
from interp.scan.corpus import iter_documents, parse_shard

P, C = 8, 12
W = P + C


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoConfig, GPTNeoForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_neo")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([Path(engine.__file__).read_text()], trainer=trainer)
    eos = "<|endoftext|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos, pad_token=eos)
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = GPTNeoConfig(vocab_size=len(fast), max_position_embeddings=256, hidden_size=64, num_layers=2,
                       attention_types=[[["local"], 2]], num_heads=4, intermediate_size=128, window_size=4,
                       initializer_range=0.5, activation_function="gelu_new", resid_dropout=0.0, embed_dropout=0.0, bos_token_id=0, eos_token_id=0,
                       attention_dropout=0.0)
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
        spans = {(src, sp.start, sp.end) for src in {s for s, _ in expected}
                 for sp in merge_spans(sorted(o for s, o in expected if s == src), [0.0] * sum(s == src for s, _ in expected), W, 1)}
        assert {(r["source"], r["span_start"], r["span_end"]) for r in records if r["kind"] == "mem"} == spans
        results[exact] = (summary, records)
    screen, exact = results[False][0], results[True][0]
    assert exact.windows_scored == exact.windows and screen.mode == "screen"
    assert screen.screen_recall["exact_mem"] == len(expected) == screen.screen_recall["found"]
    # the NMEM controls are the same bottom-k sample whichever way the windows were scored
    controls = [{r["id"] for r in recs if r["kind"] == "nmem"} for _, recs in results.values()]
    assert controls[0] == controls[1] and len(controls[0]) == 5


def test_output_is_a_paragraph_file_with_true_scores(tiny, corpus_file, tmp_path):
    model = tiny[1]
    out = tmp_path / "scan.jsonl"
    scan_corpus(model, resolve_corpus([corpus_file]), out,
                ScanConfig(prefix_len=P, continuation_len=C, n_controls=8, intermediate=True), progress=False)
    paragraphs = load_paragraphs(out, model.tokenizer, P, C, model.cfg.d_vocab)
    kinds = paragraphs.meta["kind"]
    assert {"mem", "nmem"} <= set(kinds)
    scores = score_paragraphs(model, paragraphs)
    assert scores.em.tolist() == list(paragraphs.meta["em"])
    assert torch.allclose(scores.nll, torch.tensor(paragraphs.meta["nll"]), atol=1e-4)
    for kind, em in zip(kinds, scores.em.tolist()):
        assert (kind == "mem") == (em == C) and (kind != "nmem" or em <= 10) and (kind != "intermediate" or 10 < em < C)
    assert (unique_fraction(paragraphs.tokens) >= 0.5).all()
    summary = json.loads((tmp_path / "scan.summary.json").read_text())
    assert summary["nmem"] == 8 and summary["mem_spans"] == kinds.count("mem")


def test_screen_hits_equal_exact_hits_where_a_window_starts_a_chunk():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64, d_vocab=50, act_fn="gelu_new",
        attn_types=["global", "local"], use_local_attn=True, window_size=6, original_architecture="GPTNeoForCausalLM",
        seed=0, initializer_range=0.5))
    g = torch.Generator().manual_seed(0)
    stream = torch.tensor(_greedy(model, torch.randint(0, 50, (1, 10), generator=g), 50)[0].tolist()
                          + torch.randint(0, 50, (40,), generator=g).tolist())
    for chunk_len in (W, 2 * W):
        hits = screen_hits(model, [stream], P, chunk_len, batch_size=3)[0]
        step = chunk_len - P
        starts = torch.arange(0, len(stream) - W + 1, step)
        windows = stream[starts[:, None] + torch.arange(W)]
        exact = score_paragraphs(model, Paragraphs(windows, P, tuple(map(str, range(len(starts)))))).hits
        screened = torch.stack([hits[s + P : s + W] for s in starts.tolist()])
        assert torch.equal(screened, exact)
        assert 0 < exact.float().mean() < 1  # greedy text and random text: the comparison can fail
        assert not hits[:P].any()


def test_merge_spans_joins_overlapping_and_touching_windows():
    spans = merge_spans([41, 0, 2, 1, 10, 40, 80], [3.0, 2.0, 1.0, 2.5, 0.5, 4.0, 1.0], window_len=20, stride=1)
    assert [(s.start, s.end, s.best, s.n_windows, s.runs) for s in spans] == [
        (0, 30, 10, 4, ((0, 2), (10, 10))), (40, 61, 41, 2, ((40, 41),)), (80, 100, 80, 1, ((80, 80),))]
    touching = merge_spans([0, 20], [1.0, 1.0], window_len=20, stride=20)
    assert [(s.start, s.end, s.runs) for s in touching] == [(0, 40, ((0, 20),))]


def test_filters_drop_boilerplate_and_count_it(tiny, corpus_file, tmp_path):
    model = tiny[1]
    corpus = resolve_corpus([corpus_file])
    base = ScanConfig(prefix_len=P, continuation_len=C, n_controls=0, merge=False, recall_sample=0.0)
    scan_corpus(model, corpus, tmp_path / "all.jsonl", ScanConfig(**{**base.__dict__, "filters": False}), progress=False)
    mem = [r for r in _records(tmp_path / "all.jsonl") if r["kind"] == "mem"]
    low = [r for r in mem if unique_fraction(torch.tensor([r["tokens"]]))[0] < 0.5]
    target = next(r for r in mem if r not in low)
    pattern = re.escape(target["text"][-12:])
    kept = [r for r in mem if r not in low and not re.search(pattern, r["text"])]
    summary = scan_corpus(model, corpus, tmp_path / "f.jsonl",
                          ScanConfig(**{**base.__dict__, "boilerplate_patterns": (pattern,)}), progress=False)
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
        scan_corpus(model, corpus, tmp_path / "x.jsonl", ScanConfig(**{**cfg.__dict__, "stride": 2}), resume=True, progress=False)


def test_shards_merge_into_the_unsharded_scan(tiny, tmp_path, capsys):
    corpus_path = _write_jsonl(tmp_path / "c.jsonl", _docs(tiny[1], 9, seed=1))
    assert main(["scan", "--model", str(tiny[0]), "--corpus", str(corpus_path), "--prefix-len", str(P),
                 "--continuation-len", str(C), "--nmem", "7", "--quiet", "--out", str(tmp_path / "all.jsonl")]) == 0
    assert "MEM:" in capsys.readouterr().out
    corpus, cfg = resolve_corpus([corpus_path]), ScanConfig(prefix_len=P, continuation_len=C, n_controls=7)
    docs = [scan_corpus(tiny[1], corpus, tmp_path / f"s{k}.jsonl", cfg, shard=(k, 3), progress=False).documents
            for k in (1, 2, 3)]
    assert sum(docs) == 9 and max(docs) < 9
    shards = [str(tmp_path / f"s{k}.jsonl") for k in (1, 2, 3)]
    assert main(["scan", "merge", *shards[:2], "--out", str(tmp_path / "m.jsonl")]) == 2
    assert "3/3 are missing" in capsys.readouterr().err
    assert main(["scan", "merge", *shards, "--out", str(tmp_path / "m.jsonl")]) == 0
    by_id = lambda p: {r["id"]: r for r in _records(p)}  # noqa: E731
    assert by_id(tmp_path / "m.jsonl") == by_id(tmp_path / "all.jsonl")
    merged = json.loads((tmp_path / "m.summary.json").read_text())
    single = json.loads((tmp_path / "all.summary.json").read_text())
    for key in ("documents", "tokens", "windows", "mem_windows", "mem_spans", "nmem"):
        assert merged[key] == single[key]


def test_bad_input_is_one_line_and_exit_2(tiny, corpus_file, tmp_path, capsys):
    base = ["scan", "--model", str(tiny[0]), "--prefix-len", str(P), "--continuation-len", str(C), "--quiet"]
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
    assert [f.source for f in corpus.files] == ["b.py", "sub/a.py"] and corpus.skipped_binary == (str(tmp_path / "c.py"),)
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
    scan_corpus(model, resolve_corpus([corpus_file]), tmp_path / "s.jsonl",
                ScanConfig(prefix_len=P, continuation_len=C, n_controls=3), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not h.fwd_hooks and not h.bwd_hooks for h in model.hook_dict.values())
    assert not model.training


def test_testbed_scan_finds_a_planted_paragraph_at_its_file_offset(testbed, testbed_paragraph_set, tmp_path):
    """A paragraph planted 128 times in training is in its stdlib file once. The default screen
    finds it where it starts a screening chunk (in whole files planted offsets are multiples of
    100, chunks start every 50 tokens); --exact finds it at any phase. (The testbed recites it only
    at its own start: the screen misses it mid-chunk, see benchmarks/bench_scan.py speed.)"""
    import sysconfig

    p = testbed_paragraph_set
    i = next(j for j, c in enumerate(p.counts) if c == 128 and p.meta["offset"][j] >= 250)
    source, offset = p.meta["source"][i], p.meta["offset"][i]
    text = (Path(sysconfig.get_paths()["stdlib"]) / source).read_text(encoding="utf-8", errors="replace")
    tokens = testbed.tokenizer.encode(text, add_special_tokens=False)
    assert tokens[offset : offset + 100] == p.tokens[i].tolist()
    for rel, exact in ((200, False), (23, True)):
        path = _write_jsonl(tmp_path / f"slice{rel}.jsonl", [tokens[offset - rel : offset + 150]])
        out = tmp_path / f"s{rel}.jsonl"
        scan_corpus(testbed, resolve_corpus([path]), out, ScanConfig(n_controls=2, exact=exact), progress=False)
        mem = [r for r in _records(out) if r["kind"] == "mem"]
        assert (f"{path}#1", rel) in _mem_starts(mem)
        best = next(r for r in mem if r["span_start"] <= rel < r["span_end"])
        assert best["offset"] == rel and best["tokens"] == p.tokens[i].tolist()
