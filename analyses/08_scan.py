# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Finding what a model recites in a corpus (`interp scan`)
#
# A corpus is cut into every 100-token window (50 + 50). The screen runs the model over overlapping
# chunks and keeps the windows whose 50 continuation tokens are all argmax hits; those are scored
# exactly, so nothing reported is wrong, and a seeded sample scored exactly whatever the screen says
# measures what the screen misses. Here the corpus is built so that the truth is known: each document
# is held-out testbed text with one planted paragraph inside, at a known offset.

# %%
import json
import tempfile
from pathlib import Path

import plotly.graph_objects as go
from _common import QUICK, save

from interp import ScanConfig, load_model, scan_corpus, testbed_paragraphs
from interp.scan.corpus import resolve_corpus
from interp.views.export import MEM_COLOR, paper_style

model = load_model("testbed", device="cpu")
planted = testbed_paragraphs(("planted",))
heldout = testbed_paragraphs(("heldout",))
per_count = 2 if QUICK else 8  # planted paragraphs per training repeat count
counts = planted.counts
chosen = [i for c in sorted(set(counts), reverse=True) for i in [j for j, k in enumerate(counts) if k == c][:per_count]]
docs, truth = [], []
for n, i in enumerate(chosen):  # held-out text, the planted paragraph, held-out text
    before, after = heldout.tokens[2 * n].tolist(), heldout.tokens[2 * n + 1].tolist()
    docs.append(before + planted.tokens[i].tolist() + after)
    truth.append({"id": planted.ids[i], "count": counts[i], "offset": len(before)})
work = Path(tempfile.mkdtemp(prefix="interp-scan-"))  # the corpus and the scan's output files
corpus_path = work / "corpus.jsonl"
corpus_path.write_text("".join(json.dumps({"tokens": d}) + "\n" for d in docs))
print(f"{len(docs)} documents, {sum(map(len, docs)):,} tokens, {len(chosen)} planted paragraphs")

# %% [markdown]
# The scan. `n_controls` (the NMEM sample written beside the MEM windows) is sized to this small corpus;
# `recall_sample=0.2` scores a fifth of the windows exactly to measure the screen's recall.

# %%
config = ScanConfig(n_controls=16, recall_sample=0.2, recall_min_mem=1)
summary = scan_corpus(
    model, resolve_corpus([corpus_path]), work / "scan.jsonl", config=config, force=True, progress=False
)
print(
    f"{summary.windows:,} windows, {summary.windows_scored:,} scored exactly, {summary.mem_windows} MEM windows "
    f"in {summary.mem_spans} spans; {summary.forward_per_token['all']:.1f} forward tokens per corpus token"
)
print("screen recall:", summary.recall)

# %% [markdown]
# Which planted paragraphs were found, by how often each was seen in training: a memorized span found in
# document d covers the planted paragraph's first token.

# %%
records = [json.loads(line) for line in (work / "scan.jsonl").read_text().splitlines()]
spans = [(int(r["source"].rsplit("#", 1)[1]) - 1, r["offset"]) for r in records if r["kind"] == "mem"]
for d, t in enumerate(truth):
    t["found"] = any(doc == d and abs(offset - t["offset"]) < 50 for doc, offset in spans)
by_count = {c: [t["found"] for t in truth if t["count"] == c] for c in sorted({t["count"] for t in truth}, reverse=True)}
for c, found in by_count.items():
    print(f"{c:>5} copies: {sum(found)} of {len(found)} found")
fig_found = go.Figure(
    go.Bar(
        x=[str(c) for c in by_count],
        y=[sum(f) / len(f) for f in by_count.values()],
        marker_color=MEM_COLOR,
        hovertemplate="%{x} copies: %{y:.2f} found<extra></extra>",
    )
)
fig_found.update_xaxes(title="copies of the planted paragraph in training", type="category")
fig_found.update_yaxes(title="fraction found by the scan", range=[0, 1.05])
fig_found = paper_style(fig_found, "Planted paragraphs the scan found")
fig_found

# %%
save(
    {"scan_found_by_count": fig_found},
    {
        "documents": summary.documents,
        "tokens": summary.tokens,
        "mem_windows": summary.mem_windows,
        "mem_spans": summary.mem_spans,
        "found_by_count": [{"count": c, "n": len(f), "found": sum(f)} for c, f in by_count.items()],
        "forward_per_token": summary.forward_per_token["all"],
        "recall": summary.recall,
    },
    "08_scan",
)
