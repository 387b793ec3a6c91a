"""The weights' hash: what says two models hold the same weights, wherever they were loaded from."""

from __future__ import annotations

import hashlib

import torch

from interp.backend import Model


def weights_fingerprint(model: Model) -> str:
    """Hash of every weight's name and bytes, nothing else: the same weights loaded from any folder share it
    (results.json's provenance `weights_sha256`; a `validate-locator --json` result's `weights_sha256`)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
