"""The same training run gives the same weights twice: the toolkit trains under PyTorch's deterministic
kernels (`interp.reproducible`) and gives the caller's setting back."""

from __future__ import annotations

import pytest
import torch
from factories import random_text, recitation_model

from interp.reproducible import deterministic_kernels
from interp.unlearning.training import Diverged, optimise


def _embedding_gradient(model, tokens) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    model(tokens, return_type="loss").backward()
    weight = next(p for n, p in model.named_parameters() if "W_E" in n or "wte" in n)
    grad = weight.grad.clone()
    model.zero_grad(set_to_none=True)
    return grad


def test_the_embedding_gradient_is_the_same_every_time_under_deterministic_kernels():
    """2,048 tokens over a 48-token vocabulary (every token repeats): on two threads the embedding gradient's
    accumulation order otherwise varies between identical backward passes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        model, tokens = recitation_model(), random_text(128, 0, "t").tokens
        with deterministic_kernels():
            first = _embedding_gradient(model, tokens)
            assert all(torch.equal(first, _embedding_gradient(model, tokens)) for _ in range(5))
    finally:
        torch.set_num_threads(threads)


def test_training_turns_deterministic_kernels_on_and_restores_the_callers_setting():
    weight = torch.nn.Parameter(torch.ones(3))
    seen = []

    def loss():
        seen.append(torch.are_deterministic_algorithms_enabled())
        return (weight**2).sum()

    assert not torch.are_deterministic_algorithms_enabled()
    optimise(loss, [weight], steps=2, lr=0.1, weight_decay=0.0)
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(Diverged):  # restored also when training stops with an error
        optimise(lambda: weight.sum() * float("nan"), [weight], steps=2, lr=0.1, weight_decay=0.0)
    assert not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # a caller's own setting (failing, not warning) survives
    try:
        optimise(loss, [weight], steps=1, lr=0.1, weight_decay=0.0)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
