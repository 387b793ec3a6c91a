"""Where a model came from is read through one typed accessor, `interp.models.model_source`."""

from __future__ import annotations

from pathlib import Path

from interp.models import TESTBED_DIR, ModelSource, model_name, model_source
from interp.testbed import shipped_unigram_counts


def test_a_loaded_model_knows_its_source_and_a_built_one_has_none(testbed, tiny_model):
    source = model_source(testbed)
    assert isinstance(source, ModelSource) and source.spec == "testbed" and model_name(testbed) == "testbed"
    assert Path(source.path) == Path(TESTBED_DIR).resolve() and source.hf_config["vocab_size"] == testbed.cfg.d_vocab
    assert shipped_unigram_counts(testbed).shape == (testbed.cfg.d_vocab,)
    built = tiny_model()
    assert model_source(built) is None and model_name(built) == built.cfg.model_name
    assert shipped_unigram_counts(built) is None
