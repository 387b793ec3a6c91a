"""The bundled testbed model: its folder, metadata and evaluation paragraphs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.models import TESTBED_DIR, model_source


def testbed_metadata(path: str | Path = TESTBED_DIR) -> dict:
    """Provenance, training config, planted ids, unigram counts and memorization curve."""
    return json.loads((Path(path) / "metadata.json").read_text())


def testbed_unigram_counts(path: str | Path = TESTBED_DIR) -> torch.Tensor:
    """Corpus unigram token counts of the testbed's training corpus."""
    return torch.tensor(testbed_metadata(path)["unigram_counts"], dtype=torch.long)


def testbed_paragraphs(splits: tuple[str, ...] | None = None, path: str | Path = TESTBED_DIR):
    """The testbed's evaluation paragraphs: 'planted', 'once' (seen once) and 'heldout' (never seen)."""
    from interp.data import load_paragraphs

    cfg = testbed_metadata(path)["config"]
    paragraphs = load_paragraphs(
        Path(path) / "paragraphs.jsonl", prefix_len=cfg["prefix_len"], continuation_len=cfg["continuation_len"]
    )
    if splits is None:
        return paragraphs
    keep = [i for i, s in enumerate(paragraphs.meta["split"]) if s in splits]
    return paragraphs.select(keep)


def shipped_unigram_counts(model) -> torch.Tensor | None:
    """Corpus unigram counts shipped beside a model's checkpoint folder (the testbed's metadata.json), if any."""
    source = model_source(model)
    meta = Path(source.path) / "metadata.json" if source and source.path else None
    if meta is None or not meta.exists():
        return None
    counts = json.loads(meta.read_text()).get("unigram_counts")
    return torch.tensor(counts, dtype=torch.long) if counts else None
