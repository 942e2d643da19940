"""Shared fixtures: devices to run on, and a real digits model trained once per session."""

from __future__ import annotations

import pytest
import torch

from foxcem.demo.digits import DigitsSplit, load_digits_split, train_digits_model

CUDA = torch.cuda.is_available()

#: Parametrise a test over this to run it on CPU and, when available, on CUDA.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device")]
    ),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def digits_split() -> DigitsSplit:
    """scikit-learn's real 8x8 digits: (N, 1, 8, 8) in [0, 1], fixed split."""
    return load_digits_split(seed=0)


@pytest.fixture(scope="session")
def digits_model(digits_split: DigitsSplit) -> torch.nn.Module:
    """A DigitsCNN trained with seed 0 (about 3 s on 2 cores, ~98% test accuracy), eval mode."""
    return train_digits_model(digits_split, seed=0)
