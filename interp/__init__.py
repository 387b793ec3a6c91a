"""interp: find where a language model stores text it recites word for word, and test whether
editing only those places removes it. Built on TransformerLens' HookedTransformer.

The public API: data and models, the analyses (functions of model, paragraphs and keyword-only
options) and the frozen result types they return, and the report pipeline. Views (figures, report
sections) live in `interp.views`. Names are imported on first use, so `import interp` (and the
`interp` command's parsing) does not load torch or TransformerLens.

`interp.conventions` is the module (`interp.conventions.PAPER`, `.TOOLKIT`, `.conventions(name)`).
"""

from __future__ import annotations

import types
import warnings

import interp.conventions as _conventions
from interp._lazy import lazy_names

_SOURCES: dict[str, tuple[str, ...]] = {
    "interp.conventions": ("PAPER", "TOOLKIT", "Conventions"),
    "interp.data": ("Paragraphs", "load_paragraphs", "rarity_ranks", "unigram_counts"),
    "interp.errors": ("UserError",),
    "interp.gradient_norms": ("NormComparison", "PerParagraphNorms", "compare_norms", "per_paragraph_norms"),
    "interp.gradients": ("GradientMap", "gradient_map", "parameter_gradients"),
    "interp.locator": (
        "HeadAblation",
        "HeadRanking",
        "LocatorValidation",
        "PatchingResult",
        "RareTokenAttention",
        "UnitScores",
        "activation_patching",
        "attribution_patching",
        "gradient_scores",
        "hard_concrete",
        "head_ablation",
        "inject_head",
        "inject_neurons",
        "integrated_gradients",
        "locate_memorization_head",
        "locate_neurons",
        "rare_token_attention",
        "random_neurons",
        "recall_at",
        "slimming",
        "unit_ablation",
        "validate_locator",
    ),
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
"""Module -> the public names it provides (the locator's from `interp.locator`, which says where each lives)."""
__all__ = sorted(["conventions", *(name for names in _SOURCES.values() for name in names)])


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


__getattr__, __dir__ = lazy_names(globals(), _SOURCES)
