"""Paragraph sets (prefix + continuation token ids), their JSONL form, and token statistics.

A paragraph is a fixed-length token sequence whose first `prefix_len` tokens are the prompt
and whose remaining tokens are the continuation the model may recite (the paper: 50 + 50).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from interp.constants import (  # BATCH_SIZE: re-exported, interp.data.BATCH_SIZE as before
    BATCH_SIZE,  # noqa: F401
    BOILERPLATE_PATTERNS,
    DEFAULT_CONTINUATION_LEN,
    DEFAULT_PREFIX_LEN,
)
from interp.errors import UserError


@dataclass(frozen=True)
class Paragraphs:
    """A batch of equal-length paragraphs, each a prefix followed by a continuation.

    `counts` holds how often each paragraph was seen in training where that is known
    (the testbed's planted repeats), else None. `meta` carries per-paragraph extras
    (source file, offset, text) that loaders found, keyed by field name.
    """

    tokens: Int[Tensor, "n seq"]
    prefix_len: int
    ids: tuple[str, ...]
    counts: tuple[int, ...] | None = None
    meta: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2:
            raise UserError(f"paragraph tokens must be 2-D [n, seq], got shape {tuple(self.tokens.shape)}")
        n, seq = self.tokens.shape
        if not 0 < self.prefix_len < seq:
            raise UserError(f"prefix length {self.prefix_len} must be between 1 and the paragraph length {seq} - 1")
        if len(self.ids) != n:
            raise UserError(f"{len(self.ids)} ids for {n} paragraphs")
        if len(set(self.ids)) != n:
            raise UserError("paragraph ids must be unique")
        if self.counts is not None and len(self.counts) != n:
            raise UserError(f"{len(self.counts)} counts for {n} paragraphs")
        for key, values in self.meta.items():
            if len(values) != n:
                raise UserError(f"meta field {key!r} has {len(values)} values for {n} paragraphs")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_len(self) -> int:
        return self.tokens.shape[1]

    @property
    def continuation_len(self) -> int:
        return self.seq_len - self.prefix_len

    @property
    def prefixes(self) -> Int[Tensor, "n prefix"]:
        return self.tokens[:, : self.prefix_len]

    @property
    def continuations(self) -> Int[Tensor, "n cont"]:
        return self.tokens[:, self.prefix_len :]

    def select(self, index: Sequence[int] | Tensor) -> Paragraphs:
        """The paragraphs at `index` (positions, or a boolean mask), in that order; an empty index, none."""
        idx = torch.as_tensor(index)
        if idx.numel() == 0:
            idx = idx.long()
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        positions = idx.tolist()
        return Paragraphs(
            tokens=self.tokens[idx],
            prefix_len=self.prefix_len,
            ids=tuple(self.ids[i] for i in positions),
            counts=None if self.counts is None else tuple(self.counts[i] for i in positions),
            meta={k: tuple(v[i] for i in positions) for k, v in self.meta.items()},
        )

    def with_continuations(self, continuations: Int[Tensor, "n cont"]) -> Paragraphs:
        """The same prefixes followed by other continuations (e.g. a model's own greedy ones)."""
        if continuations.shape != self.continuations.shape:
            raise ValueError(
                f"continuations of shape {tuple(continuations.shape)}, need {tuple(self.continuations.shape)}"
            )
        tokens = torch.cat([self.prefixes, continuations.to(self.tokens.device)], dim=1)
        return Paragraphs(tokens, self.prefix_len, self.ids, self.counts, dict(self.meta))

    def to(self, device: torch.device | str) -> Paragraphs:
        return Paragraphs(self.tokens.to(device), self.prefix_len, self.ids, self.counts, dict(self.meta))

    def to_records(self, tokenizer=None) -> list[dict]:
        """One JSON-ready dict per paragraph, in the format `load_paragraphs` reads back."""
        records = []
        for i, pid in enumerate(self.ids):
            rec: dict = {
                "id": pid,
                "tokens": self.tokens[i].tolist(),
                "prefix_len": self.prefix_len,
                "continuation_len": self.continuation_len,
            }
            if self.counts is not None:
                rec["count"] = self.counts[i]
            for key, values in self.meta.items():
                rec[key] = values[i]
            if tokenizer is not None and "text" not in rec:
                rec["text"] = tokenizer.decode(rec["tokens"])
            records.append(rec)
        return records

    def save_jsonl(self, path: str | Path, tokenizer=None) -> None:
        """Write one JSON object per line, atomically (a temp file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as fh:
            for rec in self.to_records(tokenizer):
                fh.write(json.dumps(rec) + "\n")
        tmp.replace(path)


class ParagraphsCut(UserWarning):
    """Some paragraphs were longer than prefix + continuation and were cut to that length."""


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; a binary or otherwise undecodable file is a UserError."""
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if "\x00" in line:
                    raise UserError(f"{path}, line {lineno}: a NUL byte: this is a binary file, not JSONL text")
                yield lineno, line
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}): is it a binary file?") from None


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise UserError(f"paragraph file {path} does not exist")
    if not path.is_file():
        raise UserError(f"paragraph file {path} is not a file")
    records = []
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}, line {lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or ("text" not in rec and "tokens" not in rec):
            raise UserError(f"{path}, line {lineno}: need an object with a 'text' or a 'tokens' field")
        rec["_line"] = lineno
        records.append(rec)
    if not records:
        raise UserError(f"paragraph file {path} is empty: it needs one JSON object per line")
    return records


def _declared_length(records: list[dict], key: str, given: int | None, path: Path) -> int | None:
    """The length every record declares under `key` (None when none does); disagreements are errors."""
    declared = {rec[key] for rec in records if key in rec}
    if not declared:
        return given
    if len(declared) > 1 or any(key not in rec for rec in records):
        lines = sorted({rec["_line"] for rec in records if rec.get(key) != records[0].get(key)})[:3]
        raise UserError(
            f"{path}: records disagree on {key!r} (values {sorted(map(str, declared))}, e.g. lines {lines}); "
            "one file holds paragraphs of one shape: split it"
        )
    value = declared.pop()
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{path}: {key!r} must be a positive integer, got {value!r}")
    if given is not None and given != value:
        raise UserError(
            f"{path}: the records declare {key} = {value}, but {given} was asked for; "
            f"drop the {key.replace('_', '-')} option to use the file's value"
        )
    return value


def load_paragraphs(
    path: str | Path,
    tokenizer=None,
    prefix_len: int | None = None,
    continuation_len: int | None = None,
    vocab_size: int | None = None,
) -> Paragraphs:
    """Read paragraphs from JSONL: `{"tokens": [...]}` or `{"text": ...}`, optional "id" and "count".

    Records may declare their own "prefix_len" / "continuation_len" (files written by
    `Paragraphs.save_jsonl` and `interp scan` do): all records must agree, and an explicit argument
    that differs is an error. Otherwise the arguments apply (default 50 + 50). Text is tokenized
    with `tokenizer` (no BOS) and cut to prefix + continuation tokens (a `ParagraphsCut` warning says how
    many were); a paragraph shorter than that is an error, as is a token id outside `vocab_size`, or a file
    that is not UTF-8 text.
    """
    path = Path(path)
    records = _read_jsonl(path)
    prefix_len = _declared_length(records, "prefix_len", prefix_len, path) or DEFAULT_PREFIX_LEN
    continuation_len = _declared_length(records, "continuation_len", continuation_len, path) or DEFAULT_CONTINUATION_LEN
    seq = prefix_len + continuation_len
    rows, ids, counts, cut = [], [], [], 0
    reserved = {"tokens", "id", "count", "prefix_len", "continuation_len", "_line"}
    extra_keys = sorted({k for rec in records for k in rec} - reserved)
    meta: dict[str, list] = {k: [] for k in extra_keys}
    for i, rec in enumerate(records):
        where = f"{path}, line {rec['_line']}"
        if "tokens" in rec:
            toks = rec["tokens"]
            if not isinstance(toks, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in toks):
                raise UserError(f"{where}: 'tokens' must be a list of integers")
        else:
            if tokenizer is None:
                raise UserError(f"{where}: has 'text' but no tokenizer was given to tokenize it")
            if not isinstance(rec["text"], str):
                raise UserError(f"{where}: 'text' must be a string")
            toks = tokenizer.encode(rec["text"], add_special_tokens=False)
        if len(toks) < seq:
            raise UserError(
                f"{where}: {len(toks)} tokens, shorter than prefix + continuation = "
                f"{prefix_len} + {continuation_len}; drop it or pass a shorter --prefix-len/--continuation-len"
            )
        cut += len(toks) > seq
        toks = toks[:seq]
        if vocab_size is not None:
            bad = [t for t in toks if not 0 <= t < vocab_size]
            if bad:
                raise UserError(
                    f"{where}: token id {bad[0]} is outside the model's vocabulary (0..{vocab_size - 1}); "
                    "were these tokens made with another tokenizer?"
                )
        rows.append(toks)
        ids.append(str(rec.get("id", i)))
        counts.append(rec.get("count"))
        for k in extra_keys:
            meta[k].append(rec.get(k))
    if len(set(ids)) != len(ids):
        raise UserError(f"{path}: paragraph ids are not unique")
    if cut:
        warnings.warn(
            f"{path}: {cut} of {len(rows)} paragraphs were longer than prefix + continuation = {seq} tokens; each "
            f"was cut to its first {seq} (prefix: tokens 1-{prefix_len}, continuation: the next {continuation_len})",
            ParagraphsCut,
            stacklevel=2,
        )
    have_counts = all(c is not None for c in counts)
    return Paragraphs(
        tokens=torch.tensor(rows, dtype=torch.long),
        prefix_len=prefix_len,
        ids=tuple(ids),
        counts=tuple(int(c) for c in counts) if have_counts else None,
        meta={k: tuple(v) for k, v in meta.items() if any(x is not None for x in v)},
    )


def unigram_counts(token_streams: Iterable[Sequence[int] | Tensor], vocab_size: int) -> Int[Tensor, "vocab"]:
    """How often each token id occurs over the given token sequences (a corpus, or a paragraph set)."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for stream in token_streams:
        t = torch.as_tensor(stream, dtype=torch.long).flatten()
        counts += torch.bincount(t, minlength=vocab_size)[:vocab_size]
    return counts


def rarity_ranks(tokens: Int[Tensor, "n pos"], counts: Int[Tensor, "vocab"]) -> Int[Tensor, "n pos"]:
    """Dense rank of each token's corpus frequency within its own row: 0 = the rarest token there.

    Tokens with equal frequency share a rank, and ranks have no gaps (dense ranking), as in the
    paper's code.
    """
    freq = counts.to(tokens.device)[tokens]  # [n, pos]
    ranks = torch.empty_like(tokens)
    for i in range(tokens.shape[0]):
        _, inverse = torch.unique(freq[i], sorted=True, return_inverse=True)
        ranks[i] = inverse
    return ranks


def unique_fraction(tokens: Int[Tensor, "n seq"]) -> Tensor:
    """Fraction of distinct token ids in each row (the paper drops rows under 0.5)."""
    sorted_tokens, _ = tokens.sort(dim=1)
    distinct = 1 + (sorted_tokens[:, 1:] != sorted_tokens[:, :-1]).sum(dim=1)
    return distinct.float() / tokens.shape[1]


def is_boilerplate(text: str, patterns: Sequence[str] = BOILERPLATE_PATTERNS) -> bool:
    """True when the text matches any license / copyright pattern."""
    return any(re.search(p, text) for p in patterns)
