"""The one seam between interp and TransformerLens.

Rule (tests/test_seam.py): no module of interp outside this package imports `transformer_lens`, in any
form, the model type included; they take it from here as `Model`. Everything interp asks of the library
goes through these names:

- model type and config: `Model`, `ModelConfig`; `Hook` (a (hook name, function) pair);
- loading and state conversion: `from_hf`, `official_name`, `from_official`, `hf_state`, `architecture`, `TO_HF`;
  `LOCAL_ARCHITECTURES`, the Hugging Face architectures `from_hf` loads;
- the unit -> hook-name table: `act_name`;
- capture of activations: `capture` (-> logits, `Activations`); an independent copy to edit: `copy_model`;
- running with hooks: `hooks_on` (a context manager that always removes them);
- running part of the network: `run_to` (the residual stream entering a layer), `run_from` (from a layer);
- the final normalization and unembedding: `final_norm`, `unembed`, `unembed_parts`, `softcap`;
- the KV-cache greedy decoder: `greedy_decode`;
- weight views per layer / head / neuron, to read and edit: `param_name`, `weight`;
- architecture facts: `is_post_norm`; the component classes cost accounting counts: `is_block`, `is_unembed`,
  and a block's model config, `block_config`;
- TransformerLens-named weights whatever module holds them (leaf + layout view): `named_weights`, `NamedWeight`,
  `leaf_masks` (masks on those names, as masks on the leaves that hold them);
- what a backend can do: `HAS_GHOST_PASS` (batched per-paragraph gradient norms).

`NAME` says which backend is active: "hooked" (HookedTransformer, TransformerLens 3.x, interp.backend.hooked)
or "bridge" (TransformerBridge, TransformerLens >= 4, interp.backend.bridge). The environment variable
INTERP_BACKEND picks one; unset, HookedTransformer is used when installed, else the bridge
(docs/backend_tl4.md: what the bridge backend covers and its measured agreement).
"""

import importlib
import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from interp.backend.named import NamedWeight, leaf_masks

BACKENDS = ("hooked", "bridge")
ENV = "INTERP_BACKEND"  # "hooked", "bridge", or unset: HookedTransformer when installed, else TransformerBridge


def _installed() -> str:
    try:
        return f"transformer-lens {version('transformer-lens')} is installed"
    except PackageNotFoundError:
        return "transformer-lens is not installed"


def available(name: str) -> bool:
    """Whether backend `name` can run here: HookedTransformer (hooked) or TransformerBridge (bridge) importable."""
    import transformer_lens

    try:  # TransformerLens 4 raises ImportError (not AttributeError) for HookedTransformer
        getattr(transformer_lens, "HookedTransformer" if name == "hooked" else "TransformerBridge")
    except (AttributeError, ImportError):
        return False
    return True


def missing(name: str) -> str:
    """Why backend `name` cannot run here, and what to install."""
    if name == "hooked":
        return (
            f"the hooked backend needs TransformerLens' HookedTransformer (transformer-lens>=3.9,<4), but "
            f'{_installed()}: install it with pip install "transformer-lens>=3.9,<4", or use the bridge backend'
        )
    return (
        f"the bridge backend needs TransformerLens' TransformerBridge (transformer-lens>=4), but {_installed()}: "
        "install it as the README says (requirements-bridge.txt), or use the hooked backend"
    )


def _choose() -> str:
    asked = os.environ.get(ENV, "").strip().lower()
    if asked and asked not in BACKENDS:
        raise ImportError(f"{ENV}={asked!r}: use one of {', '.join(BACKENDS)} (or leave it unset)")
    try:
        import transformer_lens  # noqa: F401
    except ImportError:
        raise ImportError(
            f'interp needs TransformerLens, but {_installed()}: pip install "transformer-lens>=3.9,<4"'
        ) from None
    if asked:
        if not available(asked):
            raise ImportError(f"{ENV}={asked}: {missing(asked)}")
        return asked
    for name in BACKENDS:
        if available(name):
            return name
    raise ImportError(missing("hooked"))


_ACTIVE = _choose()  # before anything imports transformer_lens: its error says what to install

from interp.backend.common import (  # noqa: E402
    Activations,
    Hook,
    act_name,
    capture,
    final_norm,
    hooks_on,
    param_name,
    softcap,
    unembed,
    unembed_parts,
)

if TYPE_CHECKING:  # type checkers read the hooked backend's names; the bridge defines the same ones
    from interp.backend import hooked as _model
    from interp.backend import hooked_io as _io
else:
    _model = importlib.import_module(f"interp.backend.{_ACTIVE}")
    _io = importlib.import_module(f"interp.backend.{_ACTIVE}_io")

HAS_GHOST_PASS = _model.HAS_GHOST_PASS
NAME = _model.NAME
Model = _model.Model
ModelConfig = _model.ModelConfig
block_config = _model.block_config
copy_model = _model.copy_model
greedy_decode = _model.greedy_decode
is_block = _model.is_block
is_post_norm = _model.is_post_norm
is_unembed = _model.is_unembed
named_weights = _model.named_weights
run_from = _model.run_from
run_to = _model.run_to
weight = _model.weight
LOCAL_ARCHITECTURES = _io.LOCAL_ARCHITECTURES
TO_HF = _io.TO_HF
architecture = _io.architecture
from_hf = _io.from_hf
from_official = _io.from_official
hf_state = _io.hf_state
official_name = _io.official_name


__all__ = [
    "BACKENDS",
    "ENV",
    "NAME",
    "TO_HF",
    "HAS_GHOST_PASS",
    "LOCAL_ARCHITECTURES",
    "Activations",
    "Hook",
    "Model",
    "ModelConfig",
    "NamedWeight",
    "act_name",
    "available",
    "block_config",
    "architecture",
    "capture",
    "copy_model",
    "final_norm",
    "from_hf",
    "from_official",
    "greedy_decode",
    "hf_state",
    "hooks_on",
    "is_block",
    "is_post_norm",
    "is_unembed",
    "leaf_masks",
    "missing",
    "named_weights",
    "official_name",
    "param_name",
    "run_from",
    "run_to",
    "softcap",
    "unembed",
    "unembed_parts",
    "weight",
]
