"""Defaults shared by the library and the command line, in a module that imports nothing heavy: the `interp`
command reads them to build its parsers without loading torch. `interp.data` and `interp.metrics` re-export
them where they were always imported from."""

DEFAULT_PREFIX_LEN = 50
DEFAULT_CONTINUATION_LEN = 50
NMEM_MAX_EM = 10  # NMEM: EM at most this, of the paper's 50-token continuations
BATCH_SIZE = 64  # paragraphs per forward pass, where the caller does not say (the --batch-size flag's default)
GRAD_BATCH_SIZE = 16  # paragraphs per backward pass, where the caller does not say (--grad-batch-size's default)
SCOPES = ("global", "component")  # interp.masks.top_k_mask: one ranking over all candidates, or one per parameter
TESTBED_COMPANION = "testbed-companion"  # a 2-layer model of the testbed's data and tokenizer (proxy-tuning)

BOILERPLATE_PATTERNS: tuple[str, ...] = (
    r"(?i)copyright\s*(\(c\)|©|\d{4})",
    r"(?i)licen[sc]ed under",
    r"(?i)all rights reserved",
    r"(?i)permission is hereby granted",
    r"(?i)without warranty",
    r"(?i)gnu (general|lesser) public license",
    r"(?i)apache license",
    r"(?i)redistribution and use in source and binary forms",
)
"""Default regexes for license / copyright boilerplate, which the paper filters out."""
