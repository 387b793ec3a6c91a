"""Scanning a corpus for the paragraphs a model recites: the entry point for a new model.

`scan_corpus(model, resolve_corpus(paths), out, ScanConfig(...))` writes the paragraph file every
other command reads; `merge_scans` combines `--shard K/N` runs. Modules: config (what a scan looks for),
corpus (reading, sharding), windows (screening and exact scoring), engine (the resumable run), merge.
Names are imported on first use: `ScanConfig` alone does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "interp.scan.config": ("ScanConfig",),
    "interp.scan.corpus": ("Corpus", "Document", "parse_shard", "resolve_corpus"),
    "interp.scan.engine": ("OutputPaths", "ScanSummary", "scan_corpus"),
    "interp.scan.merge": ("merge_scans",),
    "interp.scan.windows": ("merge_spans", "score_windows", "screen_windows"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "Corpus",
    "Document",
    "OutputPaths",
    "ScanConfig",
    "ScanSummary",
    "merge_scans",
    "merge_spans",
    "parse_shard",
    "resolve_corpus",
    "scan_corpus",
    "score_windows",
    "screen_windows",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'interp.scan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
