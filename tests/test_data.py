"""Paragraph sets, JSONL loading and its errors, unigram counts and rarity ranks."""

from __future__ import annotations

import json

import pytest
import torch

from interp.data import Paragraphs, is_boilerplate, load_paragraphs, rarity_ranks, unigram_counts, unique_fraction
from interp.errors import UserError


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_tokens_with_ids_and_counts(tmp_path):
    rows = [{"id": f"a{i}", "tokens": list(range(i, i + 12)), "count": i + 1, "source": "f.py"} for i in range(3)]
    f = _write(tmp_path / "p.jsonl", [json.dumps(r) for r in rows])
    p = load_paragraphs(f, prefix_len=6, continuation_len=4, vocab_size=100)
    assert p.ids == ("a0", "a1", "a2")
    assert p.counts == (1, 2, 3)
    assert p.tokens.shape == (3, 10)  # cut to prefix + continuation
    assert p.continuations[1].tolist() == [7, 8, 9, 10]
    assert p.meta["source"] == ("f.py",) * 3
    sub = p.select([2, 0])
    assert sub.ids == ("a2", "a0") and sub.counts == (3, 1)
    for nothing in ([], range(0), torch.zeros(3, dtype=torch.bool)):  # an empty selection is an empty set
        empty = p.select(nothing)
        assert len(empty) == 0 and empty.tokens.shape == (0, 10) and empty.meta["source"] == ()


def test_round_trip_through_jsonl(tmp_path):
    p = Paragraphs(torch.arange(20).reshape(2, 10), 4, ("x", "y"), (5, 6), {"split": ("a", "b")})
    p.save_jsonl(tmp_path / "out.jsonl")
    q = load_paragraphs(tmp_path / "out.jsonl", prefix_len=4, continuation_len=6)
    assert torch.equal(p.tokens, q.tokens) and q.ids == p.ids and q.counts == p.counts
    assert q.meta["split"] == ("a", "b")


def test_text_records_are_tokenized(tmp_path, testbed):
    text = "def parse(self, value):\n    return self._cache.get(value, None) or compute(value)\n" * 4
    f = _write(tmp_path / "t.jsonl", [json.dumps({"text": text})])
    p = load_paragraphs(f, tokenizer=testbed.tokenizer, prefix_len=10, continuation_len=10)
    assert p.tokens[0].tolist() == testbed.tokenizer.encode(text, add_special_tokens=False)[:20]


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "empty"),
        (['{"tokens": [1, 2, 3]}', "{not json"], "line 2"),
        (['{"other": 1}'], "'text' or a 'tokens'"),
        (['{"tokens": [1, 2, 3]}'], "shorter than prefix"),
        (['{"tokens": ' + json.dumps(list(range(200, 220))) + "}"], "outside the model's vocabulary"),
        (['{"tokens": ["a", "b"]}'], "list of integers"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, lines, message):
    f = _write(tmp_path / "bad.jsonl", lines) if lines else (tmp_path / "bad.jsonl")
    if not lines:
        f.write_text("")
    with pytest.raises(UserError, match=message):
        load_paragraphs(f, prefix_len=5, continuation_len=5, vocab_size=100)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_paragraphs(tmp_path / "nope.jsonl")


def test_rarity_ranks_are_dense_and_zero_is_rarest():
    counts = torch.tensor([100, 5, 5, 50, 1])
    tokens = torch.tensor([[0, 1, 2, 3, 4, 0], [3, 3, 0, 1, 1, 1]])
    ranks = rarity_ranks(tokens, counts)
    assert ranks[0].tolist() == [3, 1, 1, 2, 0, 3]
    assert ranks[1].tolist() == [1, 1, 2, 0, 0, 0]


def test_unigram_counts_and_unique_fraction():
    c = unigram_counts([[1, 1, 2], torch.tensor([2, 2, 0])], vocab_size=4)
    assert c.tolist() == [1, 2, 3, 0]
    assert unique_fraction(torch.tensor([[1, 1, 1, 1], [1, 2, 3, 4]])).tolist() == [0.25, 1.0]


def test_boilerplate_patterns():
    assert is_boilerplate("# Copyright (c) 2001 Python Software Foundation")
    assert is_boilerplate("Licensed under the Apache License, Version 2.0")
    assert not is_boilerplate("def copy(self): return self.right")


def test_paragraphs_validate_their_shape():
    with pytest.raises(UserError, match="prefix length"):
        Paragraphs(torch.zeros(2, 10, dtype=torch.long), 10, ("a", "b"))
    with pytest.raises(UserError, match="unique"):
        Paragraphs(torch.zeros(2, 10, dtype=torch.long), 5, ("a", "a"))


def test_records_declaring_their_lengths_are_honoured(tmp_path):
    p = Paragraphs(torch.arange(30).reshape(3, 10), 3, ("x", "y", "z"))
    p.save_jsonl(tmp_path / "own.jsonl")
    q = load_paragraphs(tmp_path / "own.jsonl")  # no lengths given: the file's 3 + 7, not 50 + 50
    assert q.prefix_len == 3 and q.continuation_len == 7 and torch.equal(q.tokens, p.tokens)
    assert load_paragraphs(tmp_path / "own.jsonl", prefix_len=3).prefix_len == 3
    with pytest.raises(UserError, match="declare prefix_len = 3"):
        load_paragraphs(tmp_path / "own.jsonl", prefix_len=4)


def test_a_file_whose_records_disagree_is_refused(tmp_path):
    rows = [{"tokens": list(range(10)), "prefix_len": 4}, {"tokens": list(range(10)), "prefix_len": 5}]
    f = _write(tmp_path / "mixed.jsonl", [json.dumps(r) for r in rows])
    with pytest.raises(UserError, match="disagree on 'prefix_len'"):
        load_paragraphs(f, continuation_len=5)
    rows = [{"tokens": list(range(10)), "prefix_len": 4}, {"tokens": list(range(10))}]
    f = _write(tmp_path / "partly.jsonl", [json.dumps(r) for r in rows])
    with pytest.raises(UserError, match="disagree"):
        load_paragraphs(f, continuation_len=5)
