"""Sparsity of an attribution: Gini index and near-zero fraction."""

from __future__ import annotations

from typing import Any

import torch

from foxcem.core.checks import (
    check_choice,
    check_tensor,
)

__all__ = ["gini_index", "near_zero_fraction", "sparsity"]


def gini_index(attributions: torch.Tensor) -> torch.Tensor:
    """Gini index of ``|attributions|`` per sample (Hurley & Rickard 2009): 0 for a uniform
    attribution, → 1 when all the mass sits on one feature. An all-zero sample scores 0.

    With the magnitudes sorted ascending ``v_1 ≤ … ≤ v_n``:
    ``G = Σ_i (2i − n − 1) · v_i / (n · Σ_i v_i)``.

    Args:
        attributions: (N, ...), one sample per row of the first dimension.

    Returns:
        (N,) float tensor in [0, 1).
    """
    check_tensor(attributions, "attributions")
    values = attributions.detach().flatten(1).abs().double().sort(dim=1).values
    n = values.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=values.device) - n - 1
    total = values.sum(dim=1)
    gini = (values * weights).sum(dim=1) / (n * total).clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(total > 0, gini, torch.zeros_like(gini)).float()


def near_zero_fraction(attributions: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Fraction of features whose magnitude is at most ``threshold`` × the sample's largest one.

    Args:
        attributions: (N, ...).
        threshold: relative threshold in [0, 1].

    Returns:
        (N,) float tensor in [0, 1]; an all-zero sample scores 1.
    """
    check_tensor(attributions, "attributions")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"`threshold` must be a number, got {type(threshold).__name__}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")
    values = attributions.detach().flatten(1).abs().float()
    limit = threshold * values.max(dim=1, keepdim=True).values
    return (values <= limit).float().mean(dim=1)


def sparsity(attributions: torch.Tensor, method: str = "gini", **kwargs: Any) -> torch.Tensor:
    """(N,) sparsity of each sample's attribution: ``method="gini"`` (:func:`gini_index`) or
    ``"near_zero"`` (:func:`near_zero_fraction`, ``threshold`` option)."""
    check_choice(method, "method", ("gini", "near_zero"))
    if method == "gini":
        if kwargs:
            raise TypeError(f"gini_index takes no options, got {sorted(kwargs)}")
        return gini_index(attributions)
    return near_zero_fraction(attributions, **kwargs)
