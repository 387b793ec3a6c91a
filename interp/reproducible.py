"""Deterministic kernels while the toolkit trains, so that the same run gives the same numbers twice.

On CPU with more than one thread, the gradient of HookedTransformer's token embedding (`W_E[tokens]`, an
indexing whose backward accumulates with `index_put_`) is summed in an order that changes from run to run
when a token repeats. Training that includes the embedding (the audit's donor control, `interp.audit.systems.
recite`, measured: 10 steps on 4 testbed paragraphs, 2 threads) then ends at weights up to 1e-4 apart between two
identical runs, and the report's restoration null moved by 2e-5 relative from run to run. PyTorch's deterministic
mode sorts that accumulation (the same three runs then agree bit for bit). The caller's setting is restored
after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def deterministic_kernels() -> Iterator[None]:
    """PyTorch's deterministic algorithms on (warning, not failing, where an op has none) inside the block,
    the caller's setting back after it, also when the block raises."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
