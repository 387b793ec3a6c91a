"""interp: find where a language model stores text it recites word for word, and test whether
editing only those places removes it. Built on TransformerLens' HookedTransformer.

The public API: data and models, the analyses (functions of model, paragraphs and keyword-only
options) and the frozen result types they return, and the report pipeline. Views (figures, report
sections) live in `interp.views`. Names are imported on first use, so `import interp` (and the
`interp` command's parsing) does not load torch or TransformerLens.

`interp.conventions` is the module (`interp.conventions.PAPER`, `.TOOLKIT`, `.conventions(name)`).
"""

from __future__ import annotations

import importlib
import types
import warnings
from typing import Any

import interp.conventions as _conventions

_SOURCES: dict[str, tuple[str, ...]] = {
    "interp.conventions": ("PAPER", "TOOLKIT", "Conventions"),
    "interp.data": ("Paragraphs", "load_paragraphs", "rarity_ranks", "unigram_counts"),
    "interp.errors": ("UserError",),
    "interp.gradient_norms": ("NormComparison", "PerParagraphNorms", "compare_norms", "per_paragraph_norms"),
    "interp.gradients": ("GradientMap", "gradient_map", "parameter_gradients"),
    "interp.locator.ablation": ("HeadAblation", "head_ablation", "unit_ablation"),
    "interp.locator.gradient_scores": ("gradient_scores",),
    "interp.locator.injection": ("inject_head", "inject_neurons", "random_neurons"),
    "interp.locator.integrated_gradients": ("integrated_gradients",),
    "interp.locator.mask_learning": ("hard_concrete", "slimming"),
    "interp.locator.patching": ("PatchingResult", "activation_patching", "attribution_patching"),
    "interp.locator.ranking": ("HeadRanking", "locate_memorization_head", "locate_neurons"),
    "interp.locator.rare_tokens": ("RareTokenAttention", "rare_token_attention"),
    "interp.locator.units": ("UnitScores", "recall_at"),
    "interp.locator.validation": ("LocatorValidation", "validate_locator"),
    "interp.masks": ("candidate_mask", "matched_random_mask", "restrict_mask", "top_k_mask", "uniform_random_mask"),
    "interp.memorization": (
        "MemorizationSplit",
        "choose_indices",
        "choose_sets",
        "heldout_indices",
        "mem_nmem_thresholds",
        "memorization_split",
        "split_mem_nmem",
    ),
    "interp.metrics": (
        "LogitModel",
        "ParagraphScores",
        "exact_match",
        "greedy_exact_match",
        "log10_at_least_one",
        "nll",
        "score_paragraphs",
    ),
    "interp.models": ("load_model", "save_model"),
    "interp.perturbation": ("PerturbationResult", "prefix_perturbation"),
    "interp.position": ("PositionRobustness", "position_robustness"),
    "interp.unlearning.reft": ("ReftConfig", "ReftResult", "reft_unlearn"),
    "interp.report": ("ReportOptions", "ReportRun", "run_report"),
    "interp.restore": ("RestorationResult", "restoration"),
    "interp.scan": ("ScanConfig", "scan_corpus"),
    "interp.testbed": ("testbed_metadata", "testbed_paragraphs", "testbed_unigram_counts"),
    "interp.unlearning": (
        "Calibration",
        "Evaluation",
        "MatchedForgetting",
        "Probe",
        "RelearnConfig",
        "UnlearnConfig",
        "UnlearningTable",
        "UnlearnResult",
        "calibrate",
        "calibrated_configs",
        "evaluate",
        "paper_configs",
        "probe_sets",
        "relearn",
        "unlearn",
        "unlearning_table",
    ),
    "interp.unlearning.proxy": ("ProxyConfig", "ProxyModel", "ProxyResult", "proxy_unlearn"),
}
"""Module -> the public names it provides."""
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "Calibration",
    "Conventions",
    "Evaluation",
    "GradientMap",
    "HeadAblation",
    "HeadRanking",
    "LocatorValidation",
    "LogitModel",
    "MatchedForgetting",
    "ProxyConfig",
    "ProxyModel",
    "ProxyResult",
    "MemorizationSplit",
    "NormComparison",
    "PAPER",
    "ParagraphScores",
    "Paragraphs",
    "PatchingResult",
    "PerParagraphNorms",
    "PerturbationResult",
    "PositionRobustness",
    "Probe",
    "RareTokenAttention",
    "ReftConfig",
    "ReftResult",
    "RelearnConfig",
    "ReportOptions",
    "ReportRun",
    "RestorationResult",
    "ScanConfig",
    "TOOLKIT",
    "UnitScores",
    "UnlearnConfig",
    "UnlearnResult",
    "UnlearningTable",
    "UserError",
    "activation_patching",
    "attribution_patching",
    "calibrate",
    "calibrated_configs",
    "candidate_mask",
    "choose_indices",
    "choose_sets",
    "compare_norms",
    "conventions",
    "evaluate",
    "exact_match",
    "gradient_map",
    "gradient_scores",
    "greedy_exact_match",
    "hard_concrete",
    "head_ablation",
    "heldout_indices",
    "inject_head",
    "inject_neurons",
    "integrated_gradients",
    "load_model",
    "load_paragraphs",
    "log10_at_least_one",
    "locate_memorization_head",
    "locate_neurons",
    "matched_random_mask",
    "mem_nmem_thresholds",
    "memorization_split",
    "nll",
    "paper_configs",
    "parameter_gradients",
    "per_paragraph_norms",
    "position_robustness",
    "prefix_perturbation",
    "probe_sets",
    "proxy_unlearn",
    "random_neurons",
    "rare_token_attention",
    "rarity_ranks",
    "recall_at",
    "reft_unlearn",
    "relearn",
    "restoration",
    "restrict_mask",
    "run_report",
    "save_model",
    "scan_corpus",
    "score_paragraphs",
    "slimming",
    "split_mem_nmem",
    "testbed_metadata",
    "testbed_paragraphs",
    "testbed_unigram_counts",
    "top_k_mask",
    "uniform_random_mask",
    "unigram_counts",
    "unit_ablation",
    "unlearn",
    "unlearning_table",
    "validate_locator",
]


class _ConventionsModule(types.ModuleType):
    """`interp.conventions` was the function `conventions(name)` until the module took the name back; calling the
    module still works for one release, with a DeprecationWarning."""

    def __call__(self, name: str):
        warnings.warn(
            "interp.conventions(name) is deprecated: use interp.conventions.conventions(name)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.conventions(name)


_conventions.__class__ = _ConventionsModule


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
