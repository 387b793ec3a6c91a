"""Scanning a corpus for the paragraphs a model recites: the entry point for a new model.

`scan_corpus(model, resolve_corpus(paths), out, ScanConfig(...))` writes the paragraph file every
other command reads; `merge_scans` combines `--shard K/N` runs. Modules: corpus (reading,
sharding), windows (screening and exact scoring), engine (the resumable run), merge.
"""

from interp.scan.corpus import Corpus, Document, parse_shard, resolve_corpus
from interp.scan.engine import OutputPaths, ScanConfig, ScanSummary, scan_corpus
from interp.scan.merge import merge_scans
from interp.scan.windows import merge_spans, score_windows, screen_windows

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
