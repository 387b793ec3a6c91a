"""Options every command shares (the model spec, device, precision and paragraph file), and the checks every
input passes before any model work: a mistake costs one line and exit code 2, never a computation.

Parsing needs nothing heavy: the library (torch, TransformerLens) is imported inside the functions that
load a model."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from interp.constants import BATCH_SIZE, DEFAULT_CONTINUATION_LEN, DEFAULT_PREFIX_LEN
from interp.errors import UserError

DEVICES = "cpu, cuda or cuda:N"
DTYPES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "float64")
"""What --dtype accepts (interp.models.pick_dtype's names)."""
OUTPUT_FILES = ("json", "html", "curves", "save_targets")
"""Attributes of a command's arguments that name an output file: checked writable before any model work (output
folders, whose flag differs per command, are checked by their command)."""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_args(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    parser.add_argument(
        "--model",
        required=default_model is None,
        default=default_model,
        help="'testbed' (the bundled model), a local Hugging Face checkpoint folder, or a TransformerLens model name"
        + (f" (default: {default_model})" if default_model else " (required)"),
    )
    parser.add_argument("--device", default=None, help=f"{DEVICES} (default: cuda when available, else cpu)")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=DTYPES,
        metavar="DTYPE",
        help=f"weights' precision: one of {', '.join(DTYPES)} (default: float32)",
    )


def add_paragraph_args(parser: argparse.ArgumentParser, *, batch_size: bool = True) -> None:
    """--paragraphs, --prefix-len, --continuation-len and (unless the command's options have it) --batch-size."""
    parser.add_argument(
        "--paragraphs",
        default=None,
        type=Path,
        help="JSONL of paragraphs ({'text': ...} or {'tokens': [...]}) "
        "(default: the set shipped beside the model; the testbed has one)",
    )
    parser.add_argument(
        "--prefix-len",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"prefix tokens (default: what the file's records declare, else {DEFAULT_PREFIX_LEN})",
    )
    parser.add_argument(
        "--continuation-len",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"continuation tokens (default: what the file's records declare, else {DEFAULT_CONTINUATION_LEN})",
    )
    if batch_size:
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=BATCH_SIZE,
            metavar="N",
            help=f"paragraphs per forward pass (default: {BATCH_SIZE})",
        )


def add_output_args(parser: argparse.ArgumentParser, *, json: str, html: str | None = None) -> None:
    """--json FILE and (given `html`) --html FILE, each help saying what is written there."""
    parser.add_argument("--json", default=None, metavar="FILE", help=json)
    if html is not None:
        parser.add_argument("--html", default=None, metavar="FILE", help=html)


def wrote(path: str | Path, write) -> None:
    """`write(path)`, then a line saying so."""
    write(path)
    print(f"wrote {path}")


def write_json_output(path: str | Path, data: dict) -> None:
    """`data` as JSON in `path` (written whole or not at all), then a line saying so."""
    from interp.io import write_json

    wrote(path, lambda p: write_json(p, data))


def write_page(path: str | Path, text: str) -> None:
    """The HTML page `text` in `path` (written whole or not at all), then a line saying so."""
    from interp.io import write_text_atomic

    wrote(path, lambda p: write_text_atomic(p, text))


def write_figure(figure, path: str | Path) -> None:
    """A plotly figure as one offline HTML page in `path`, then a line saying so."""
    wrote(path, lambda p: figure.write_html(p, include_plotlyjs=True, full_html=True))


def ids_in(text: str) -> list[str]:
    """Paragraph ids written comma-separated (an --targets value)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def indices_of(paragraphs, ids: list[str]) -> list[int]:
    """Where each of `ids` stands in `paragraphs`; an id that is not there is a user error."""
    where = {pid: i for i, pid in enumerate(paragraphs.ids)}
    missing = [t for t in ids if t not in where]
    if missing:
        raise UserError(f"target ids {missing[:5]} are not in the paragraph set")
    return [where[t] for t in ids]


def paragraphs_like(path: str | Path, model, like):
    """The paragraph file `path`, tokenized for `model` and cut to the prefix and continuation lengths of `like`."""
    from interp.data import load_paragraphs

    return load_paragraphs(
        path,
        tokenizer=model.tokenizer,
        prefix_len=like.prefix_len,
        continuation_len=like.continuation_len,
        vocab_size=model.cfg.d_vocab,
    )


def add_progress_arg(parser: argparse.ArgumentParser) -> None:
    """`--no-progress` (a command's progress bars go to stderr; this turns them off)."""
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar (default: one on stderr)"
    )


@contextlib.contextmanager
def command_flags(parser: argparse.ArgumentParser, run, *, progress: bool = True) -> Iterator[None]:
    """The flags every analysis command shares, around the command's own (those the `with` body adds, its output
    files last): the model's and the paragraphs' first, then --no-progress (unless `progress` is false); `run` is
    what the command runs."""
    add_model_args(parser)
    add_paragraph_args(parser)
    yield
    if progress:
        add_progress_arg(parser)
    parser.set_defaults(run=run)


@contextlib.contextmanager
def stage(what: str, enabled: bool = True, every: float = 1.0) -> Iterator[None]:
    """A live line on stderr while a step that has no progress bar of its own runs: what it does, counted in what
    the user gave (paragraphs, positions, runs), and the time so far, refreshed every `every` seconds."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    done = threading.Event()
    with tqdm(desc=what, bar_format="{desc}: {elapsed}", file=sys.stderr) as line:

        def tick() -> None:
            while not done.wait(every):
                line.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def scored_split(model, paragraphs, args: argparse.Namespace, nmem_max: int):
    """Every paragraph scored (--batch-size at a time) and split MEM / NMEM (NMEM: EM at most `nmem_max`), with a
    live line on stderr meanwhile (none with --no-progress)."""
    from interp.memorization import memorization_split

    with stage(f"scoring {len(paragraphs)} paragraphs", args.progress):
        return memorization_split(model, paragraphs, batch_size=args.batch_size, nmem_max=nmem_max, n_examples=0)


def check_output_file(path: str | Path, flag: str) -> None:
    """`path` can be written as a file: not a folder, in a folder that exists or can be made, and writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: the file is not writable")
    _check_parent(path, flag)


def check_output_folder(path: str | Path, flag: str) -> None:
    """`path` can be written as a folder: not a file, and it or its nearest existing parent writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} exists and is not a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: the folder is not writable")
    _check_parent(path, flag)


def _check_parent(path: Path, flag: str) -> None:
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {parent}")


def check_outputs(args: argparse.Namespace) -> None:
    """Every output the command was asked to write is writable (checked before any work)."""
    for name in OUTPUT_FILES:
        if getattr(args, name, None):
            check_output_file(getattr(args, name), f"--{name.replace('_', '-')}")


def checkpoint_folder(spec: str, flag: str = "--model") -> Path | None:
    """The local folder a model spec names (None for a TransformerLens name), checked to be a checkpoint of a
    supported architecture without loading it."""
    from interp.models import (
        SPEC_KINDS,
        SUPPORTED_LOCAL,
        TESTBED,
        TESTBED_COMPANION,
        TESTBED_COMPANION_DIR,
        TESTBED_DIR,
        TESTBED_REFERENCE,
        TESTBED_REFERENCE_DIR,
    )

    bundled = {TESTBED: TESTBED_DIR, TESTBED_COMPANION: TESTBED_COMPANION_DIR, TESTBED_REFERENCE: TESTBED_REFERENCE_DIR}
    if spec in bundled:
        return bundled[spec] if (bundled[spec] / "config.json").exists() else None  # the loader says how to build it
    path = Path(spec).expanduser()
    if not path.exists():
        if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.endswith("/"):
            raise UserError(f"{flag} {spec}: no such folder; the model spec may be {SPEC_KINDS}")
        return None
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        raise UserError(f"{flag} {spec}: not a Hugging Face checkpoint folder (no config.json)")
    try:
        arch = (json.loads(config.read_text()).get("architectures") or ["?"])[0]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise UserError(f"{flag} {spec}: config.json is not a Hugging Face model config") from None
    if arch not in SUPPORTED_LOCAL:
        raise UserError(f"{flag} {spec}: architecture {arch} is not supported; supported: {', '.join(SUPPORTED_LOCAL)}")
    return path


def preflight(args: argparse.Namespace) -> None:
    """Every check that needs no model weights: outputs, model spec, device, dtype and the paragraph file (read and
    tokenized with the checkpoint's own tokenizer, when it is a local folder). The paragraphs are kept on `args`
    for `paragraphs_from_args`."""
    from interp.models import pick_device, pick_dtype

    check_outputs(args)
    device = pick_device(args.device)
    if device.type == "cuda" and device.index is not None:
        import torch

        if device.index >= torch.cuda.device_count():
            raise UserError(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    pick_dtype(args.dtype)
    folder = checkpoint_folder(args.model)
    if not hasattr(args, "paragraphs"):
        return
    if args.paragraphs is None:
        if folder is not None and not (folder / "paragraphs.jsonl").exists():
            raise UserError(
                f"model {args.model!r} ships no paragraph set: pass --paragraphs FILE.jsonl (make one with `interp scan`)"
            )
        path = folder / "paragraphs.jsonl" if folder is not None else None
    else:
        path = args.paragraphs
    if path is not None and folder is not None:
        from transformers import AutoTokenizer

        with open(folder / "config.json") as fh:
            config = json.load(fh)
        n_ctx = config.get("n_positions", config.get("max_position_embeddings"))
        _check_context((args.prefix_len or 0) + (args.continuation_len or 0), n_ctx)
        args.preloaded = _load(args, path, AutoTokenizer.from_pretrained(folder), config.get("vocab_size"))
        _check_context(args.preloaded.seq_len, n_ctx)


def model_from_args(args: argparse.Namespace):
    """The model --model names, on --device in --dtype, loaded only once `preflight` passed."""
    from interp.models import load_model

    preflight(args)
    return load_model(args.model, device=args.device, dtype=args.dtype)


def _check_context(seq_len: int, n_ctx: int | None) -> None:
    if n_ctx is not None and seq_len > n_ctx:
        raise UserError(f"prefix + continuation = {seq_len} tokens exceeds the model's context of {n_ctx}")


def _load(args: argparse.Namespace, path: Path, tokenizer, vocab_size: int | None):
    """The paragraph file, with a one-line note when paragraphs were longer than prefix + continuation."""
    from interp.data import ParagraphsCut, load_paragraphs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ParagraphsCut)
        paragraphs = load_paragraphs(
            path,
            tokenizer=tokenizer,
            prefix_len=args.prefix_len,
            continuation_len=args.continuation_len,
            vocab_size=vocab_size,
        )
    for w in caught:
        if issubclass(w.category, ParagraphsCut):
            print(f"interp: note: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return paragraphs


def paragraphs_from_args(args: argparse.Namespace, model):
    """The --paragraphs file, or the set shipped beside the model's checkpoint folder (read by `preflight` already
    when the model is a local folder).

    Lengths: --prefix-len / --continuation-len when given, else what the file's records declare,
    else 50 + 50 (see `load_paragraphs`)."""
    preloaded = getattr(args, "preloaded", None)
    if preloaded is not None:
        _check_context(preloaded.seq_len, model.cfg.n_ctx)
        return preloaded
    from interp.models import model_source

    source = model_source(model)
    folder = Path(source.path) if source and source.path else None
    path = args.paragraphs
    if path is None:
        if folder is None or not (folder / "paragraphs.jsonl").exists():
            raise UserError(
                f"model {args.model!r} ships no paragraph set: pass --paragraphs FILE.jsonl (make one with `interp scan`)"
            )
        path = folder / "paragraphs.jsonl"
    asked = (args.prefix_len or 0) + (args.continuation_len or 0)
    _check_context(asked, model.cfg.n_ctx)
    paragraphs = _load(args, path, model.tokenizer, model.cfg.d_vocab)
    _check_context(paragraphs.seq_len, model.cfg.n_ctx)
    return paragraphs
