"""The forgetting audit (`audit`): every attack on an unlearned model, with its two controls, per paragraph.

- `quantization`: int8 per channel / int4 group-wise round-to-nearest of the weight matrices;
- `relearning`: a small fixed budget of fine-tuning on the prefixes, the retain set or related text;
- `restoration`: the best window of the original's MLP coefficients / attention outputs patched in;
- `prefixes`: the best of K single-token prefix edits, and the paragraph after a few tokens of left context;
- `scoring`: greedy EM and log10 p of the continuation, the one place both are computed;
- `audit`: runs them on the original (control 1), the unlearned models and never-known text (control 2),
  and the per-paragraph residual-memorization score.
"""

from interp.audit.audit import ATTACKS, AuditConfig, AuditResult, audit
from interp.audit.quantization import quantize_matrix, quantized
from interp.audit.relearning import related_text, relearned

__all__ = [
    "ATTACKS",
    "AuditConfig",
    "AuditResult",
    "audit",
    "quantize_matrix",
    "quantized",
    "related_text",
    "relearned",
]
