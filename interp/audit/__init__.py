"""The forgetting audit (`audit`): every attack on an unlearned model, with its two controls, per paragraph.

- `quantization`: int8 per channel, int4 group-wise (symmetric, zero-point) and NF4 rounding of the weight matrices;
- `relearning`: a small fixed budget of fine-tuning on the prefixes, the retain set or related text;
- `systems`: where an unlearning lives (weights, an intervention's parameters, an ensemble's small models),
  and quantization, relearning and restoration of all of it;
- `prefixes`: the best of K single-token prefix edits, and the paragraph after a few tokens of left context;
- `scoring`: greedy EM and log10 p of the continuation, the one place both are computed;
- `audit`: runs them on the original (control 1), the unlearned systems and never-known text (control 2),
  restoration's donor control, and the per-paragraph residual-memorization score (`score_model`: one
  system's scores under every attack);
- `config`: `AuditConfig`, which attacks run and their budgets, apart from torch.
Names are imported on first use: `interp.audit.config` alone does not load torch.
"""

from __future__ import annotations

from interp._lazy import lazy_names

_SOURCES = {
    "interp.audit.config": ("ATTACKS", "AuditConfig"),
    "interp.audit.audit": ("AuditResult", "audit", "median_interval", "score_model"),
    "interp.audit.quantization": ("quantize_matrix", "quantized"),
    "interp.audit.relearning": ("related_text", "relearned"),
}

__all__ = sorted(name for names in _SOURCES.values() for name in names)

__getattr__, __dir__ = lazy_names(globals(), _SOURCES)
