"""interp: find where a language model stores text it recites word for word, and test whether
editing only those places removes it. Built on TransformerLens' HookedTransformer.

The public API: data and models, the analyses (functions of model, paragraphs and keyword-only
options) and the frozen result types they return, and the report pipeline. Views (figures, report
sections) live in `interp.views`.
"""

from typing import Any

from interp.conventions import PAPER, TOOLKIT, Conventions, conventions
from interp.data import Paragraphs, load_paragraphs, rarity_ranks, unigram_counts
from interp.errors import UserError
from interp.gradient_norms import NormComparison, PerParagraphNorms, compare_norms, per_paragraph_norms
from interp.gradients import GradientMap, gradient_map, parameter_gradients
from interp.locator.ablation import HeadAblation, head_ablation, unit_ablation
from interp.locator.gradient_scores import gradient_scores
from interp.locator.injection import inject_head, inject_neurons, random_neurons
from interp.locator.integrated_gradients import integrated_gradients
from interp.locator.mask_learning import hard_concrete, slimming
from interp.locator.patching import PatchingResult, activation_patching, attribution_patching
from interp.locator.ranking import HeadRanking, locate_memorization_head, locate_neurons
from interp.locator.rare_tokens import RareTokenAttention, rare_token_attention
from interp.locator.units import UnitScores, recall_at
from interp.locator.validation import LocatorValidation, validate_locator
from interp.masks import candidate_mask, matched_random_mask, restrict_mask, top_k_mask, uniform_random_mask
from interp.memorization import (
    MemorizationSplit,
    choose_indices,
    choose_sets,
    heldout_indices,
    mem_nmem_thresholds,
    memorization_split,
    split_mem_nmem,
)
from interp.metrics import (
    LogitModel,
    ParagraphScores,
    exact_match,
    greedy_exact_match,
    log10_at_least_one,
    nll,
    score_paragraphs,
)
from interp.models import load_model, save_model
from interp.perturbation import PerturbationResult, prefix_perturbation
from interp.position import PositionRobustness, position_robustness
from interp.reft import ReftConfig, ReftResult, reft_unlearn
from interp.restore import RestorationResult, restoration
from interp.scan import ScanConfig, scan_corpus
from interp.testbed import testbed_metadata, testbed_paragraphs, testbed_unigram_counts
from interp.unlearning import (
    Calibration,
    Evaluation,
    MatchedForgetting,
    Probe,
    RelearnConfig,
    UnlearnConfig,
    UnlearningTable,
    UnlearnResult,
    calibrate,
    calibrated_configs,
    evaluate,
    paper_configs,
    probe_sets,
    relearn,
    unlearn,
    unlearning_table,
)
from interp.unlearning.proxy import ProxyConfig, ProxyModel, ProxyResult, proxy_unlearn

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

_REPORT = ("ReportOptions", "ReportRun", "run_report")


def __getattr__(name: str) -> Any:
    """The report pipeline's names, imported on first use: it loads the views (plotly, circuitsvis)."""
    if name in _REPORT:
        import interp.report

        return getattr(interp.report, name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
