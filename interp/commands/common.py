"""Options every command shares: the model spec, device, precision and paragraph file."""

from __future__ import annotations

import argparse
from pathlib import Path

from transformer_lens import HookedTransformer

from interp.data import DEFAULT_CONTINUATION_LEN, DEFAULT_PREFIX_LEN, Paragraphs, load_paragraphs
from interp.errors import UserError
from interp.models import load_model


def add_model_args(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    parser.add_argument("--model", required=default_model is None, default=default_model,
                        help="'testbed', a local Hugging Face checkpoint folder, or a TransformerLens model name")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--dtype", default=None, help="float32 (default), bfloat16 or float16")


def add_paragraph_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paragraphs", default=None, type=Path,
                        help="JSONL of paragraphs ({'text': ...} or {'tokens': [...]}); "
                             "default: the set shipped beside the model (the testbed has one)")
    parser.add_argument("--prefix-len", type=int, default=None, help=f"prefix tokens (default {DEFAULT_PREFIX_LEN}, or the model's metadata)")
    parser.add_argument("--continuation-len", type=int, default=None, help=f"continuation tokens (default {DEFAULT_CONTINUATION_LEN})")
    parser.add_argument("--batch-size", type=int, default=64, help="paragraphs per forward pass")


def model_from_args(args: argparse.Namespace) -> HookedTransformer:
    return load_model(args.model, device=args.device, dtype=args.dtype)


def _bundled_lengths(folder: Path) -> tuple[int, int] | None:
    import json

    meta = folder / "metadata.json"
    if meta.exists():
        cfg = json.loads(meta.read_text()).get("config", {})
        if "prefix_len" in cfg:
            return cfg["prefix_len"], cfg["continuation_len"]
    return None


def paragraphs_from_args(args: argparse.Namespace, model: HookedTransformer) -> Paragraphs:
    """The --paragraphs file, or the set shipped beside the model's checkpoint folder."""
    source = getattr(model, "interp_source", None)
    folder = Path(source.path) if source and source.path else None
    lengths = _bundled_lengths(folder) if folder else None
    prefix_len = args.prefix_len or (lengths[0] if lengths else DEFAULT_PREFIX_LEN)
    continuation_len = args.continuation_len or (lengths[1] if lengths else DEFAULT_CONTINUATION_LEN)
    path = args.paragraphs
    if path is None:
        if folder is None or not (folder / "paragraphs.jsonl").exists():
            raise UserError(f"model {args.model!r} ships no paragraph set: pass --paragraphs FILE.jsonl (make one with `interp scan`)")
        path = folder / "paragraphs.jsonl"
    if prefix_len < 1 or continuation_len < 1:
        raise UserError("--prefix-len and --continuation-len must be positive")
    if prefix_len + continuation_len > model.cfg.n_ctx:
        raise UserError(f"prefix + continuation = {prefix_len + continuation_len} tokens exceeds the model's context of {model.cfg.n_ctx}")
    return load_paragraphs(path, tokenizer=model.tokenizer, prefix_len=prefix_len,
                           continuation_len=continuation_len, vocab_size=model.cfg.d_vocab)
