"""Shared set-up for the analyses notebooks: quick mode, where figures go, the testbed subset.

QUICK=1 (the test suite sets it) runs every notebook on a small paragraph subset in seconds;
paths are relative to this file, so a notebook runs from any folder (`python /path/to/analyses/01_memorization.py`);
INTERP_FIGURES overrides the output folder (default: analyses/out/, ignored by git, so running a
notebook never dirties the repository; `make_figures.py` sets it to figures/).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

QUICK = os.environ.get("QUICK", "") not in ("", "0")
ROOT = Path(__file__).resolve().parent.parent  # the repository, wherever the notebook is run from
FIGURES = Path(os.environ.get("INTERP_FIGURES", ROOT / "analyses" / "out"))
FORMATS = ("svg",) if QUICK else ("png", "svg")
torch.manual_seed(0)


def testbed_subset(paragraphs, n_once: int, n_heldout: int = 0, seed: int = 0):
    """Every planted paragraph plus seeded samples of the seen-once and held-out ones."""
    split = paragraphs.meta["split"]
    gen = torch.Generator().manual_seed(seed)
    keep = [i for i, s in enumerate(split) if s == "planted"]
    for name, n in (("once", n_once), ("heldout", n_heldout)):
        pool = torch.tensor([i for i, s in enumerate(split) if s == name])
        keep += pool[torch.randperm(len(pool), generator=gen)[:n]].tolist()
    return paragraphs.select(sorted(keep))


def save(figures: dict, numbers: dict, name: str) -> None:
    """Write the figures (PNG / SVG) and the notebook's key numbers (JSON) into FIGURES."""
    from interp.io import write_json
    from interp.views.export import save_figures

    save_figures(figures, FIGURES, formats=FORMATS)
    write_json(FIGURES / f"{name}.json", numbers)
    print(f"wrote {len(figures)} figure(s) and {name}.json to {FIGURES}")
