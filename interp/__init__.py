"""interp: find where a language model stores text it recites word for word, and test whether
editing only those places removes it. Built on TransformerLens' HookedTransformer."""

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
from interp.models import load_model, save_model
from interp.testbed import testbed_metadata, testbed_paragraphs, testbed_unigram_counts

__all__ = [
    "Paragraphs",
    "ParagraphScores",
    "UserError",
    "exact_match",
    "greedy_exact_match",
    "load_model",
    "load_paragraphs",
    "nll",
    "rarity_ranks",
    "save_model",
    "score_paragraphs",
    "split_mem_nmem",
    "testbed_metadata",
    "testbed_paragraphs",
    "testbed_unigram_counts",
    "unigram_counts",
]
