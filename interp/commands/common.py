"""Options every command shares: the model spec, device, precision and paragraph file."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.backend import Model
from interp.data import BATCH_SIZE, DEFAULT_CONTINUATION_LEN, DEFAULT_PREFIX_LEN, Paragraphs, load_paragraphs
from interp.errors import UserError
from interp.models import load_model


def add_model_args(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    parser.add_argument(
        "--model",
        required=default_model is None,
        default=default_model,
        help="'testbed', a local Hugging Face checkpoint folder, or a TransformerLens model name",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--dtype", default=None, help="float32 (default), bfloat16 or float16")


def add_paragraph_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--paragraphs",
        default=None,
        type=Path,
        help="JSONL of paragraphs ({'text': ...} or {'tokens': [...]}); "
        "default: the set shipped beside the model (the testbed has one)",
    )
    parser.add_argument(
        "--prefix-len",
        type=int,
        default=None,
        help=f"prefix tokens (default: what the file's records declare, else {DEFAULT_PREFIX_LEN})",
    )
    parser.add_argument(
        "--continuation-len",
        type=int,
        default=None,
        help=f"continuation tokens (default: what the file's records declare, else {DEFAULT_CONTINUATION_LEN})",
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="paragraphs per forward pass")


def model_from_args(args: argparse.Namespace) -> Model:
    return load_model(args.model, device=args.device, dtype=args.dtype)


def paragraphs_from_args(args: argparse.Namespace, model: Model) -> Paragraphs:
    """The --paragraphs file, or the set shipped beside the model's checkpoint folder.

    Lengths: --prefix-len / --continuation-len when given, else what the file's records declare,
    else 50 + 50 (see `load_paragraphs`)."""
    source = getattr(model, "interp_source", None)
    folder = Path(source.path) if source and source.path else None
    path = args.paragraphs
    if path is None:
        if folder is None or not (folder / "paragraphs.jsonl").exists():
            raise UserError(
                f"model {args.model!r} ships no paragraph set: pass --paragraphs FILE.jsonl (make one with `interp scan`)"
            )
        path = folder / "paragraphs.jsonl"
    for name in ("prefix_len", "continuation_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
    asked = (args.prefix_len or 0) + (args.continuation_len or 0)
    if asked > model.cfg.n_ctx:
        raise UserError(f"prefix + continuation = {asked} tokens exceeds the model's context of {model.cfg.n_ctx}")
    paragraphs = load_paragraphs(
        path,
        tokenizer=model.tokenizer,
        prefix_len=args.prefix_len,
        continuation_len=args.continuation_len,
        vocab_size=model.cfg.d_vocab,
    )
    if paragraphs.seq_len > model.cfg.n_ctx:
        raise UserError(
            f"prefix + continuation = {paragraphs.seq_len} tokens exceeds the model's context of {model.cfg.n_ctx}"
        )
    return paragraphs
