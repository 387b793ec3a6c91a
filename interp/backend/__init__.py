"""The one seam between interp and TransformerLens.

Rule (tests/test_seam.py): no module of interp outside this package imports `transformer_lens`, in any
form, the model type included; they take it from here as `Model`. Everything interp asks of the library
goes through these names:

- model type and config: `Model`, `ModelConfig`; `Hook` (a (hook name, function) pair);
- loading and state conversion: `from_hf`, `official_name`, `from_official`, `hf_state`, `architecture`, `TO_HF`;
- the unit -> hook-name table: `act_name`;
- capture of activations: `capture` (-> logits, `Activations`);
- running with hooks: `hooks_on` (a context manager that always removes them);
- running part of the network: `run_to` (the residual stream entering a layer), `run_from` (from a layer);
- the final normalization and unembedding: `final_norm`, `unembed`, `unembed_parts`, `softcap`;
- the KV-cache greedy decoder: `greedy_decode`;
- weight views per layer / head / neuron, to read and edit: `param_name`, `weight`; every weight under its
  TransformerLens name whatever module holds it (leaf + layout view): `named_weights`, `NamedWeight`, and masks
  on those names as masks on the leaves (`leaf_masks`); an independent copy to edit: `copy_model`;
- what the backend can do: `HAS_GHOST_PASS` (batched per-paragraph gradient norms);
- architecture facts: `is_post_norm`; the component classes cost accounting counts: `is_block`, `is_unembed`.

`NAME` says which backend is active, chosen by what is installed: "hooked" (HookedTransformer,
TransformerLens 3.x). Under TransformerLens >= 4 (no HookedTransformer) importing interp fails with an
ImportError that says so: a TransformerBridge backend is not written yet (docs/backend_tl4.md).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    from transformer_lens import HookedTransformer  # noqa: F401  (TransformerLens 3.x only)
except ImportError as exc:
    try:
        installed = f"transformer-lens {version('transformer-lens')} is installed"
    except PackageNotFoundError:
        installed = "transformer-lens is not installed"
    raise ImportError(
        f"interp needs TransformerLens' HookedTransformer (transformer-lens>=3.9,<4), but {installed}: "
        'install it with pip install "transformer-lens>=3.9,<4". interp has no TransformerBridge '
        "(TransformerLens 4) backend yet; docs/backend_tl4.md says what works under it."
    ) from exc

from interp.backend.hooked import (
    HAS_GHOST_PASS,
    NAME,
    Activations,
    Hook,
    Model,
    ModelConfig,
    act_name,
    capture,
    copy_model,
    final_norm,
    greedy_decode,
    hooks_on,
    is_block,
    is_post_norm,
    is_unembed,
    named_weights,
    param_name,
    run_from,
    run_to,
    softcap,
    unembed,
    unembed_parts,
    weight,
)
from interp.backend.hooked_io import TO_HF, architecture, from_hf, from_official, hf_state, official_name
from interp.backend.named import NamedWeight, leaf_masks

__all__ = [
    "HAS_GHOST_PASS",
    "NAME",
    "NamedWeight",
    "copy_model",
    "leaf_masks",
    "named_weights",
    "TO_HF",
    "Activations",
    "Hook",
    "Model",
    "ModelConfig",
    "act_name",
    "architecture",
    "capture",
    "final_norm",
    "from_hf",
    "from_official",
    "greedy_decode",
    "hf_state",
    "hooks_on",
    "is_block",
    "is_post_norm",
    "is_unembed",
    "official_name",
    "param_name",
    "run_from",
    "run_to",
    "softcap",
    "unembed",
    "unembed_parts",
    "weight",
]
