"""Tiny test models built through `interp` (not `transformer_lens`), so that the same test gets a HookedTransformer
under INTERP_BACKEND=hooked and a TransformerBridge under INTERP_BACKEND=bridge.

The model is a random Hugging Face GPT-Neo (seeded), saved once per configuration in a folder with a word-level
tokenizer of its vocabulary and loaded with `interp.load_model`, as any local checkpoint is. Its fields are named
as `conftest.TINY_DEFAULTS` names them (HookedTransformerConfig's names); fields a GPT-Neo cannot have (attention-
only models, RMSNorm, a head width other than d_model / n_heads, attention scaling, soft-capped logits) raise
`NotFaithful`: a test that needs them builds a HookedTransformer itself (conftest.tiny_config).
"""

from __future__ import annotations

import atexit
import json
import math
import shutil
import tempfile
from pathlib import Path

import torch

# fields of TINY_DEFAULTS a GPT-Neo checkpoint has, by their HookedTransformerConfig names
GPT_NEO_FIELDS = {
    "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn", "window_size", "attn_types",
    "initializer_range", "seed", "normalization_type", "use_attn_scale", "original_architecture", "use_local_attn",
}  # fmt: skip


class NotFaithful(ValueError):
    """The asked-for tiny model is not a GPT-Neo checkpoint: build it as a HookedTransformer (conftest.tiny_config)."""


def _settings(**overrides) -> dict:
    from conftest import TINY_DEFAULTS

    cfg = {**TINY_DEFAULTS, **overrides}
    unknown = set(cfg) - GPT_NEO_FIELDS
    if unknown:
        raise NotFaithful(f"a GPT-Neo checkpoint has no {', '.join(sorted(unknown))}")
    if cfg["d_head"] * cfg["n_heads"] != cfg["d_model"]:
        if "d_head" in overrides:
            raise NotFaithful(f"GPT-Neo's heads are d_model / n_heads wide, not d_head={cfg['d_head']}")
        cfg["d_head"] = cfg["d_model"] // cfg["n_heads"]
    if cfg["d_head"] * cfg["n_heads"] != cfg["d_model"]:
        raise NotFaithful(f"d_model={cfg['d_model']} is not a multiple of n_heads={cfg['n_heads']}")
    if cfg["use_attn_scale"]:
        raise NotFaithful("GPT-Neo does not scale its attention scores")
    if cfg["normalization_type"] != "LN":
        raise NotFaithful("GPT-Neo normalizes with LayerNorm")
    if cfg["original_architecture"] != "GPTNeoForCausalLM":
        raise NotFaithful(f"not a GPT-Neo: {cfg['original_architecture']}")
    n = cfg["n_layers"]
    cfg.setdefault("attn_types", ["global", "local"] * (n // 2) + ["global"] * (n % 2))
    if len(cfg["attn_types"]) != n:
        raise NotFaithful(f"{len(cfg['attn_types'])} attention types for {n} layers")
    # HookedTransformer's default initialization (normal, std 0.8 / sqrt(d_model)), so that scores and patterns
    # are as far from uniform as the HookedTransformer tiny models' were
    cfg.setdefault("initializer_range", 0.8 / math.sqrt(cfg["d_model"]))
    return cfg


def tiny_hf(**overrides):
    """A random GPT-Neo (transformers.GPTNeoForCausalLM, seeded by `seed`) of `conftest.TINY_DEFAULTS` with any of its
    fields overridden (HookedTransformerConfig's names); untied embedding and unembedding, as HookedTransformer's."""
    import transformers as tf

    cfg = _settings(**overrides)
    hf_cfg = tf.GPTNeoConfig(
        vocab_size=cfg["d_vocab"],
        max_position_embeddings=cfg["n_ctx"],
        hidden_size=cfg["d_model"],
        num_layers=cfg["n_layers"],
        attention_types=[[[t], 1] for t in cfg["attn_types"]],
        num_heads=cfg["n_heads"],
        intermediate_size=cfg["d_mlp"],
        window_size=cfg["window_size"],
        activation_function=cfg["act_fn"],
        initializer_range=cfg["initializer_range"],
        embed_dropout=0.0,
        attention_dropout=0.0,
        resid_dropout=0.0,
        tie_word_embeddings=False,
        bos_token_id=cfg["d_vocab"] - 1,
        eos_token_id=cfg["d_vocab"] - 1,
    )
    with torch.random.fork_rng(devices=[]):  # the test's own random numbers do not depend on building a model
        torch.manual_seed(cfg["seed"])
        return tf.GPTNeoForCausalLM(hf_cfg).eval()


def save_tokenizer(folder: str | Path, d_vocab: int) -> None:
    """A word-level tokenizer of `d_vocab` tokens ("t0" ... and <|endoftext|> last) saved into `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(d_vocab - 1)} | {"<|endoftext|>": d_vocab - 1}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(folder)


_ROOT: Path | None = None
_FOLDERS: dict[str, Path] = {}


def tiny_folder(tokenizer: str | Path | None = None, **overrides) -> Path:
    """The checkpoint folder of `tiny_hf(**overrides)` with its tokenizer (a word-level one of its vocabulary, or
    the one saved in the folder `tokenizer`), written once per session and configuration."""
    global _ROOT
    cfg = _settings(**overrides)
    key = json.dumps([cfg, str(tokenizer)], sort_keys=True)
    if key not in _FOLDERS:
        if _ROOT is None:
            _ROOT = Path(tempfile.mkdtemp(prefix="interp-tiny-"))
            atexit.register(shutil.rmtree, _ROOT, True)
        folder = _ROOT / f"tiny-neo-{len(_FOLDERS)}"
        tiny_hf(**overrides).save_pretrained(folder)
        if tokenizer is None:
            save_tokenizer(folder, cfg["d_vocab"])
        else:
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
        _FOLDERS[key] = folder
    return _FOLDERS[key]


def tiny_model(tokenizer: str | Path | None = None, dtype: torch.dtype | None = None, **overrides):
    """`interp.load_model` of the tiny GPT-Neo (`tiny_hf`) on the CPU: a HookedTransformer or a TransformerBridge,
    as INTERP_BACKEND says; in eval mode, in `dtype` (float32 unless given). A model built for the test, as one built in memory: without the
    source `load_model` records (its folder is this module's business), so `model_source` gives None."""
    from transformers.utils import logging as hf_logging

    from interp import load_model

    hf_logging.disable_progress_bar()
    model = load_model(str(tiny_folder(tokenizer, **overrides)), device="cpu", dtype=dtype)
    del model.interp_source
    return model


# The unlearning tests' setting (tests/test_unlearn.py, test_reft.py, test_restore.py): paragraphs of
# PREFIX + CONT tokens over VOCAB, a 4-layer model that recites its own greedy continuations.
PREFIX, CONT, VOCAB = 8, 8, 48


def recitation_model(seed: int = 3):
    """A 4-layer tiny GPT-Neo (`tiny_model`) of the unlearning tests' vocabulary and context, widely initialized so
    that its greedy continuations are far from uniform."""
    return tiny_model(
        n_layers=4,
        d_vocab=VOCAB,
        n_ctx=PREFIX + CONT,
        attn_types=["global", "local"] * 2,
        window_size=4,
        seed=seed,
        initializer_range=0.3,
    )


def recited(model, n: int, seed: int, tag: str):
    """Random prefixes followed by the model's OWN greedy continuation: EM = CONT by construction."""
    from interp.data import Paragraphs
    from interp.metrics import greedy_continuations

    prefixes = torch.randint(0, VOCAB, (n, PREFIX), generator=torch.Generator().manual_seed(seed))
    tokens = torch.cat([prefixes, greedy_continuations(model, prefixes, CONT)], 1)
    return Paragraphs(tokens, PREFIX, tuple(f"{tag}{i}" for i in range(n)))


def random_text(n: int, seed: int, tag: str):
    """`n` paragraphs of random tokens."""
    from interp.data import Paragraphs

    tokens = torch.randint(0, VOCAB, (n, PREFIX + CONT), generator=torch.Generator().manual_seed(seed))
    return Paragraphs(tokens, PREFIX, tuple(f"{tag}{i}" for i in range(n)))


def run_once(model):
    """`model` after one forward: a TransformerBridge adds its own norm hooks at its first forward, so a test that
    counts a fresh model's hooks before and after an analysis counts these too."""
    with torch.no_grad():
        model(torch.zeros(1, 1, dtype=torch.long))
    return model
