"""Load any model through one path into a HookedTransformer, and save edited weights back.

Three kinds of spec: "testbed" (the bundled model; "testbed-companion" its small companion), a local Hugging Face checkpoint folder
(loaded with no network), or a TransformerLens official model name (needs the internet).

Weights are loaded AS-IS: no LayerNorm folding, no centering, no value-bias folding. Every
weight a result names (`blocks.1.attn.W_V`, `blocks.3.mlp.W_out`) is then the checkpoint's own
weight, reshaped, so an edit made here is saved back by `save_model` and reloads bit-for-bit.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.backend import (
    LOCAL_ARCHITECTURES,
    TO_HF,
    Model,
    architecture,
    from_hf,
    from_official,
    hf_state,
    official_name,
)
from interp.constants import TESTBED_COMPANION  # a name here as before
from interp.errors import UserError

TESTBED = "testbed"
TESTBED_DIR = Path(__file__).parent / "testbed" / "checkpoint"
TESTBED_COMPANION_DIR = Path(__file__).parent / "testbed" / "companion"
TESTBED_REFERENCE = "testbed-reference"  # the testbed retrained with some planted paragraphs left out
TESTBED_REFERENCE_DIR = Path(__file__).parent / "testbed" / "reference"
SHIPPED = {
    TESTBED: (TESTBED_DIR, ("the bundled testbed", "`interp testbed build`")),
    TESTBED_COMPANION: (TESTBED_COMPANION_DIR, ("the testbed's companion", "interp.testbed.build.build_companion()")),
    TESTBED_REFERENCE: (
        TESTBED_REFERENCE_DIR,
        ("the testbed's reference model", "`interp testbed build --reference --force` (about 35 minutes on 2 cores)"),
    ),
}
"""The models shipped in the package, by spec: their folder, what they are and how to rebuild one that is missing."""
SUPPORTED_LOCAL = LOCAL_ARCHITECTURES  # what the active backend loads from a local folder (docs/architectures.md)
_SHORT = ", ".join(a.removesuffix("ForCausalLM").removesuffix("LMHeadModel") for a in SUPPORTED_LOCAL)
SPEC_KINDS = (
    f"'testbed' (the bundled model), a path to a local Hugging Face checkpoint folder (architectures: {_SHORT}), "
    "or a TransformerLens official name such as 'EleutherAI/gpt-neo-125M' (needs the internet)"
)


@dataclass(frozen=True)
class ModelSource:
    """Where a loaded model came from: kept on the model by `load_model`, read with `model_source(model)`."""

    spec: str
    path: str | None  # local checkpoint folder, if any
    hf_config: dict  # the Hugging Face config, needed to save edited weights back


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but no CUDA device is available here; use --device cpu")
    return dev


def pick_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype or torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float64": torch.float64,
    }
    if dtype not in table:
        raise UserError(f"unknown dtype {dtype!r}: use one of {', '.join(table)}")
    return table[dtype]


def load_model(
    spec: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    n_devices: int = 1,
) -> Model:
    """A HookedTransformer with its tokenizer, in eval mode, on `device` (CUDA when available).

    `n_devices` is TransformerLens' own way to split a model over several GPUs.
    """
    dev, dt = pick_device(device), pick_dtype(dtype)
    if spec in SHIPPED:
        folder, rebuild = SHIPPED[spec]
        if not (folder / "config.json").exists():
            raise UserError(f"{rebuild[0]} is missing from {folder}; rebuild it with {rebuild[1]}")
        with _hub_offline():
            model = _load_local(folder, dev, dt, n_devices, spec=spec)
    elif Path(spec).expanduser().exists():
        with _hub_offline():  # a local folder never needs the network; a missing file fails fast
            model = _load_local(Path(spec).expanduser(), dev, dt, n_devices, spec=spec)
    else:
        model = _load_official(spec, dev, dt, n_devices)
    model.eval()
    return model


def _load_local(path: Path, device, dtype, n_devices: int, spec: str) -> Model:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not path.is_dir() or not (path / "config.json").exists():
        raise UserError(
            f"{path} is not a Hugging Face checkpoint folder (no config.json); the model spec may be {SPEC_KINDS}"
        )
    hf_config = AutoConfig.from_pretrained(path)
    arch = (hf_config.architectures or ["?"])[0]
    if arch not in SUPPORTED_LOCAL:
        raise UserError(
            f"{path}: architecture {arch} is not supported for local folders; supported: {', '.join(SUPPORTED_LOCAL)}"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: no usable tokenizer files ({exc})") from None
    if len(tokenizer) > hf_config.vocab_size:
        raise UserError(
            f"{path}: the tokenizer has {len(tokenizer)} tokens but the model only {hf_config.vocab_size}: "
            "the tokenizer does not belong to this model"
        )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = from_hf(str(path), hf_model, hf_config, tokenizer, device, dtype, n_devices)
    model.interp_source = ModelSource(spec=spec, path=str(path.resolve()), hf_config=hf_config.to_dict())
    return model


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline():
    """Make huggingface_hub refuse network calls (it reads HF_HUB_OFFLINE only at import)."""
    import huggingface_hub

    modules = [huggingface_hub.constants, sys.modules[huggingface_hub.is_offline_mode.__module__]]
    saved = [m.HF_HUB_OFFLINE for m in modules]
    for m in modules:
        m.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for m, v in zip(modules, saved):
            m.HF_HUB_OFFLINE = v


def _load_official(name: str, device, dtype, n_devices: int) -> Model:
    from huggingface_hub import try_to_load_from_cache
    from transformers import AutoConfig

    try:
        official = official_name(name)
    except ValueError:
        raise UserError(
            f"unknown model {name!r}: not a folder and not a TransformerLens model name; the spec may be {SPEC_KINDS}"
        ) from None
    online = _hub_reachable()
    if not online and not isinstance(try_to_load_from_cache(official, "config.json"), str):
        raise UserError(
            f"{name!r} is not in the local Hugging Face cache and the hub cannot be reached (no network); "
            "download it where there is internet, or pass a local checkpoint folder"
        )
    with contextlib.nullcontext() if online else _hub_offline():
        model = from_official(official, device, dtype, n_devices)
        hf_config = AutoConfig.from_pretrained(official).to_dict()
    model.interp_source = ModelSource(spec=name, path=None, hf_config=hf_config)
    return model


def model_source(model: Model) -> ModelSource | None:
    """Where `load_model` loaded the model from; None for a model it did not load."""
    return getattr(model, "interp_source", None)


def model_name(model: Model) -> str:
    """The spec the model was loaded from, for provenance in results."""
    source = model_source(model)
    return source.spec if source else model.cfg.model_name


# ---- saving edited weights back to a Hugging Face checkpoint ----


def save_model(model: Model, out_dir: str | Path) -> Path:
    """Write the model's current weights as a Hugging Face checkpoint folder that `load_model` reads.

    Works for models loaded by `load_model` (it needs their Hugging Face config) of the
    GPT-Neo, GPT-2 and GPT-NeoX architectures.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    source = model_source(model)
    if source is None:
        raise UserError("save_model needs a model loaded with interp.load_model (it keeps the Hugging Face config)")
    arch = architecture(model)
    if arch not in TO_HF:
        raise UserError(f"saving {arch} models is not supported; supported: {', '.join(TO_HF)}")
    # float32 whatever the source checkpoint's dtype: an edit smaller than float16's spacing (the testbed is
    # stored in float16) would otherwise be rounded away on saving
    kept = {k: v for k, v in source.hf_config.items() if k not in ("transformers_version", "dtype", "torch_dtype")}
    hf_config = AutoConfig.for_model(**kept, dtype="float32")
    hf_model = AutoModelForCausalLM.from_config(hf_config)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in hf_state(model).items()}
    if "embed_out.weight" in state and "embed_out.weight" not in hf_model.state_dict():
        state["lm_head.weight"] = state.pop("embed_out.weight")  # newer transformers name for NeoX
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("attn.bias", "masked_bias", "rotary_emb.inv_freq"))]
    if missing or unexpected:
        raise RuntimeError(f"weight conversion mismatch: missing {missing}, unexpected {unexpected}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out_dir, safe_serialization=True)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(out_dir)
    if source.path and (Path(source.path) / "metadata.json").exists():
        meta = json.loads((Path(source.path) / "metadata.json").read_text())
        meta["edited_from"] = source.spec
        (out_dir / "metadata.json").write_text(json.dumps(meta))
        if (Path(source.path) / "paragraphs.jsonl").exists():
            (out_dir / "paragraphs.jsonl").write_text((Path(source.path) / "paragraphs.jsonl").read_text())
    return out_dir
