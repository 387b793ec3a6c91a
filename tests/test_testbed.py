"""The shipped testbed memorizes what was planted; the build code trains and resumes."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from interp import split_mem_nmem, testbed_metadata
from interp.testbed.build import QUICK, build_testbed


def test_shipped_testbed_memorizes_planted_paragraphs(testbed_scores):
    meta = testbed_metadata()
    p, scores = testbed_scores
    mem, _ = split_mem_nmem(scores.em, p.continuation_len)
    assert len(mem) >= 50
    once = torch.tensor([s == "once" for s in p.meta["split"]])
    assert int((scores.em[once] <= 10).sum()) >= 500
    # Memorization grows with repeat count, as recorded in the metadata.
    counts = torch.tensor(p.counts)
    frac = {c: float((scores.em[counts == c] == p.continuation_len).float().mean()) for c in (128, 4, 1)}
    assert frac[128] > frac[4] >= frac[1]
    assert meta["memorization_by_count"]["128"]["fraction_memorized"] == frac[128]
    planted = {pid for ids in meta["planted"].values() for pid in ids}
    assert {p.ids[i] for i in mem.tolist()} <= planted | set(p.ids)


def test_metadata_has_provenance_and_statistics():
    meta = testbed_metadata()
    assert meta["corpus"]["sha256"] and meta["corpus"]["python_version"]
    assert len(meta["unigram_counts"]) == 4096
    assert meta["config"]["seed"] == 0
    assert set(meta["planted"]) == {"128", "64", "32", "16", "4"}


def test_quick_build_trains_and_resumes(tmp_path):
    cfg = replace(QUICK, planted=((8, 4),), n_once=420, n_eval_once=20, n_heldout=20, max_files=40, checkpoint_every=5)
    out, work = tmp_path / "tb", tmp_path / "work"
    meta = build_testbed(out, cfg, work_dir=work)
    losses = meta["training"]["loss_curve"]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5  # it learned something
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    # Resume: a finished training state is picked up, not redone, and gives the same weights.
    again = build_testbed(out, cfg, work_dir=work)
    assert again["training"]["final_loss"] == meta["training"]["final_loss"]
    assert json.loads((out / "metadata.json").read_text())["n_mem"] == again["n_mem"]
