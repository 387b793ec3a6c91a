"""Reading a corpus for a scan: text files, folders of them, JSONL with a text (or tokens) field.

Paths are checked before any model work starts (missing, unreadable, binary, empty), so a bad
corpus fails in a second rather than hours in. Documents are then streamed one at a time:
a text file is one document (a very large one is cut at line starts into blocks whose token
offsets continue), a JSONL line is one document. `--shard K/N` keeps the documents whose stable
hash falls in part K, so N shard runs partition the corpus without coordinating.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from interp.errors import UserError

BINARY_SNIFF_BYTES = 8192
BLOCK_CHARS = 4_000_000  # files longer than this are tokenized in blocks cut at line starts


@dataclass(frozen=True)
class CorpusFile:
    """One file of the corpus: where it is, the name outputs give it, and how to read it."""

    path: Path
    source: str
    jsonl: bool
    size: int


@dataclass(frozen=True)
class Corpus:
    """The resolved corpus: its files in a fixed order, and files a folder glob matched but skipped."""

    files: tuple[CorpusFile, ...]
    skipped_binary: tuple[str, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Document:
    """A unit of text to scan. Offsets in outputs are `offset_base` + the token position in it."""

    source: str
    offset_base: int
    nbytes: int
    text: str | None = None
    tokens: tuple[int, ...] | None = None


def parse_shard(spec: str | None) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N -> (K, N); None -> (1, 1)."""
    if spec is None:
        return 1, 1
    parts = spec.split("/")
    try:
        k, n = (int(x) for x in parts)
    except ValueError:
        raise UserError(f"--shard {spec!r} is not K/N (e.g. --shard 3/8 for the 3rd of 8 parts)") from None
    if not 1 <= k <= n:
        raise UserError(f"--shard {spec!r}: need 1 <= K <= N (e.g. --shard 3/8)")
    return k, n


def stable_hash(text: str) -> int:
    """A 64-bit hash of a string that is the same on every machine and Python run."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def in_shard(source: str, shard: tuple[int, int]) -> bool:
    k, n = shard
    return n == 1 or stable_hash(source) % n == k - 1


def _is_binary(path: Path) -> bool:
    with path.open("rb") as fh:
        return b"\0" in fh.read(BINARY_SNIFF_BYTES)


def _check_readable(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            fh.read(1)
        return path.stat().st_size
    except OSError as exc:
        raise UserError(f"corpus file {path} cannot be read ({exc.strerror or exc})") from None


def resolve_corpus(paths: list[str | Path], glob: str = "**/*") -> Corpus:
    """Check every corpus path and list its files: explicit files as given, folders through `glob`.

    A named file that is binary is an error; binary files a folder glob matches are skipped
    and listed. Files ending in .jsonl hold one document per line.
    """
    if not paths:
        raise UserError("no corpus given: pass --corpus with text files, folders of them, or JSONL files")
    files: list[CorpusFile] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise UserError(f"corpus path {raw} does not exist")
        if path.is_dir():
            matched = sorted(p for p in path.glob(glob) if p.is_file())
            if not matched:
                raise UserError(f"corpus folder {raw} has no files matching --glob {glob!r}")
            for p in matched:
                size = _check_readable(p)
                if _is_binary(p):
                    skipped.append(str(p))
                    continue
                files.append(CorpusFile(p, str(p.relative_to(path)), p.suffix == ".jsonl", size))
        else:
            size = _check_readable(path)
            if _is_binary(path):
                raise UserError(f"corpus file {raw} looks binary (it has NUL bytes); pass text or JSONL files")
            files.append(CorpusFile(path, str(raw), path.suffix == ".jsonl", size))
    if len({f.source for f in files}) < len(files):  # the same relative name under two folders
        files = [CorpusFile(f.path, str(f.path), f.jsonl, f.size) for f in files]
    if len({f.path.resolve() for f in files}) < len(files):
        raise UserError("a corpus file is named twice (directly or through two folders); list each once")
    if not files:
        raise UserError("the corpus has no text files (every matched file looked binary)")
    if sum(f.size for f in files) == 0:
        raise UserError("the corpus is empty: every file has zero bytes")
    return Corpus(tuple(files), tuple(skipped))


def _text_blocks(path: Path) -> Iterator[str]:
    """The file's text in blocks of about BLOCK_CHARS or more, each cut just after a newline that is
    followed by a non-space character, where byte-level BPE pre-tokenizers always split (a block
    grows until it has such a newline; past 4 x BLOCK_CHARS it is cut after any newline)."""
    carry = ""
    with path.open(encoding="utf-8", errors="replace") as fh:
        while True:
            more = fh.read(BLOCK_CHARS)
            text = carry + more
            if not more:
                if text:
                    yield text
                return
            i = text.rfind("\n", 0, len(text) - 1)
            while i >= 0 and text[i + 1].isspace() and len(text) <= 4 * BLOCK_CHARS:
                i = text.rfind("\n", 0, i)
            if i < 0 and len(text) <= 4 * BLOCK_CHARS:
                carry = text
                continue
            cut = i + 1 if i >= 0 else len(text)
            yield text[:cut]
            carry = text[cut:]


def _jsonl_documents(f: CorpusFile, shard: tuple[int, int]) -> Iterator[Document]:
    with f.path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            source = f"{f.source}#{lineno}"
            if not in_shard(source, shard):
                continue
            where = f"{f.path}, line {lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
            if isinstance(rec, dict) and isinstance(rec.get("text"), str):
                yield Document(source, 0, len(line), text=rec["text"])
            elif (
                isinstance(rec, dict)
                and isinstance(rec.get("tokens"), list)
                and all(isinstance(t, int) and not isinstance(t, bool) for t in rec["tokens"])
            ):
                yield Document(source, 0, len(line), tokens=tuple(rec["tokens"]))
            else:
                raise UserError(f"{where}: need an object with a string 'text' or an integer list 'tokens'")


def iter_documents(corpus: Corpus, shard: tuple[int, int], tokenize) -> Iterator[Document]:
    """The shard's documents in a fixed order. `tokenize(text) -> list[int]` is only called for
    the blocks of a large file, whose token offsets depend on the blocks before them."""
    for f in corpus.files:
        if f.jsonl:
            yield from _jsonl_documents(f, shard)
            continue
        if not in_shard(f.source, shard):
            continue
        if f.size <= BLOCK_CHARS:
            text = f.path.read_text(encoding="utf-8", errors="replace")
            yield Document(f.source, 0, f.size, text=text)
            continue
        base = 0
        for block in _text_blocks(f.path):
            tokens = tuple(tokenize(block))
            yield Document(f.source, base, len(block.encode()), tokens=tokens)
            base += len(tokens)
