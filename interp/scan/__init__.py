"""Scanning a corpus for the paragraphs a model recites: the entry point for a new model.

`scan_corpus(model, resolve_corpus(paths), out, ScanConfig(...))` writes the paragraph file every
other command reads; `merge_scans` combines `--shard K/N` runs. Modules: config (what a scan looks for),
corpus (reading, sharding), windows (screening and exact scoring), engine (the resumable run), merge.
Names are imported on first use: `ScanConfig` alone does not load torch.
"""

from __future__ import annotations

from interp._lazy import lazy_names

_SOURCES = {
    "interp.scan.config": ("ScanConfig",),
    "interp.scan.corpus": ("Corpus", "Document", "parse_shard", "resolve_corpus"),
    "interp.scan.engine": ("OutputPaths", "ScanSummary", "scan_corpus"),
    "interp.scan.merge": ("merge_scans",),
    "interp.scan.windows": ("merge_spans", "score_windows", "screen_windows"),
}
__all__ = sorted(name for names in _SOURCES.values() for name in names)

__getattr__, __dir__ = lazy_names(globals(), _SOURCES)
