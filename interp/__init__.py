"""interp: find where a language model stores text it recites word for word, and test whether
editing only those places removes it. Built on TransformerLens' HookedTransformer."""

from interp.ablation import head_ablation
from interp.attention import rare_token_attention
from interp.data import Paragraphs, load_paragraphs, rarity_ranks, unigram_counts
from interp.errors import UserError
from interp.metrics import (
    ParagraphScores,
    exact_match,
    greedy_exact_match,
    nll,
    score_paragraphs,
    split_mem_nmem,
)
from interp.gradients import compare_norms, gradient_map, parameter_gradients, per_paragraph_norms
from interp.locate import locate_memorization_head
from interp.masks import random_mask, restrict_mask, top_k_mask
from interp.models import load_model, save_model
from interp.patching import activation_patching, attribution_patching
from interp.perturbation import prefix_perturbation
from interp.position import PositionRobustness, position_robustness
from interp.reft import ReftConfig, reft_unlearn
from interp.restore import restoration
from interp.scan import ScanConfig, scan_corpus
from interp.testbed import testbed_metadata, testbed_paragraphs, testbed_unigram_counts
from interp.unlearn import UnlearnConfig, unlearn, unlearning_table

__all__ = [
    "Paragraphs",
    "ParagraphScores",
    "PositionRobustness",
    "ReftConfig",
    "ScanConfig",
    "UnlearnConfig",
    "UserError",
    "activation_patching",
    "attribution_patching",
    "compare_norms",
    "exact_match",
    "gradient_map",
    "greedy_exact_match",
    "head_ablation",
    "load_model",
    "load_paragraphs",
    "locate_memorization_head",
    "nll",
    "parameter_gradients",
    "per_paragraph_norms",
    "position_robustness",
    "prefix_perturbation",
    "random_mask",
    "rare_token_attention",
    "rarity_ranks",
    "reft_unlearn",
    "restoration",
    "restrict_mask",
    "save_model",
    "scan_corpus",
    "score_paragraphs",
    "split_mem_nmem",
    "testbed_metadata",
    "testbed_paragraphs",
    "testbed_unigram_counts",
    "top_k_mask",
    "unigram_counts",
    "unlearn",
    "unlearning_table",
]
