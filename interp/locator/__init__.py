"""The locator: which heads (or MLP neurons) hold the memorized paragraphs, by several methods side by side.

- `ranking`: `locate_memorization_head` / `locate_neurons`, every method run and their ranks combined
  (`HeadRanking`, `NeuronRanking`); the methods by family, one module each:
  - `rare_tokens`: attention to rare tokens, with its nulls and family-wise p (paper A);
  - `gradient_scores`: gradient, Fisher, perturbed gradient, grad x weight, gradient L2;
  - `integrated_gradients`: integrated gradients of a unit's output scale;
  - `patching`: activation patching and its attribution (linear) estimate;
  - `ablation`: zero-out and mean ablation of heads or neurons;
  - `mask_learning`: Hard Concrete and Slimming masks trained to drop the memorized text;
- `units`: the unit vocabulary shared by the methods (`UnitScores`, hooks, ranks, Recall@k);
- `injection` and `validation`: paragraphs forced through one head or a few neurons, and the rank each
  method gives them (how far to trust a ranking on a new model).
- `registry`: every method once (name, units, default, runner), read by the options, `unit_method` and the
  views. To add a method: a function returning `UnitScores` and its runner in its family's module, its entry
  in `registry`, and a test on an injected model where the answer is known (docs/architecture.md);
- `options`: the methods' names and the settings (`LocateOptions`, `ValidateOptions`), apart from torch.
Names are imported on first use: `interp.locator.options` alone does not load torch.
"""

from __future__ import annotations

from interp._lazy import lazy_names

_SOURCES = {
    "interp.locator.ablation": ("HeadAblation", "head_ablation", "unit_ablation"),
    "interp.locator.gradient_scores": ("gradient_scores",),
    "interp.locator.injection": ("inject_head", "inject_neurons", "random_neurons"),
    "interp.locator.integrated_gradients": ("integrated_gradients",),
    "interp.locator.mask_learning": ("hard_concrete", "slimming"),
    "interp.locator.patching": ("PatchingResult", "activation_patching", "attribution_patching"),
    "interp.locator.ranking": (
        "DEFAULT_METHODS",
        "HeadRanking",
        "NeuronRanking",
        "locate_memorization_head",
        "locate_neurons",
    ),
    "interp.locator.rare_tokens": ("RareTokenAttention", "rare_token_attention"),
    "interp.locator.units": ("UnitScores", "recall_at"),
    "interp.locator.validation": ("LocatorValidation", "validate_locator"),
}


__all__ = sorted(name for names in _SOURCES.values() for name in names)

__getattr__, __dir__ = lazy_names(globals(), _SOURCES)
