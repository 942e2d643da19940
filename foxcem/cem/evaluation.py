"""What one evaluation of the CEM loss tells, and the modes it knows."""

from __future__ import annotations

import math
from typing import NamedTuple, Union

import torch

__all__ = [
    "check_delta_rows",
    "CEMEvaluation",
    "MODES",
    "SampleIndex",
    "accumulation_dtype",
    "check_mode",
    "select_rows",
]

MODES = ("PP", "PN")

#: Which samples of the batch rows belong to: ``None`` (all, in order), an index tensor, a slice.
SampleIndex = Union[torch.Tensor, slice, None]


def select_rows(value: torch.Tensor, samples: SampleIndex) -> torch.Tensor:
    """The rows ``samples`` of a per-sample tensor (N, …) (all of it for ``None``)."""
    if samples is None:
        return value
    if isinstance(samples, torch.Tensor) and samples.dim() == 1:
        return value.index_select(0, samples)  # one row per entry, faster than value[...]
    return value[samples]


class CEMEvaluation(NamedTuple):
    """Everything one model call tells about δ; each field has the leading shape of the call."""

    #: the loss value c·hinge(attack) + γ·AE term.
    loss: torch.Tensor
    #: the attack value ``a`` before the hinge (the loss is saturated when a ≤ −κ).
    attack: torch.Tensor
    #: whether the explanation holds (PP: argmax f(v+δ) = t; PN: argmax f(x+δ) ≠ t, or = j).
    success: torch.Tensor
    #: argmax of the model's scores on the perturbed input.
    prediction: torch.Tensor


def check_mode(mode: object) -> str:
    """``mode`` as ``"PP"`` or ``"PN"`` (case-insensitive); ``ValueError`` for anything else."""
    if not isinstance(mode, str) or mode.upper() not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}, got {mode!r}")
    return mode.upper()


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 or wider: the dtype loss values are computed in for scores of ``dtype``."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def check_delta_rows(delta: object, sample_shape: torch.Size, n: int) -> tuple[torch.Size, int]:
    """Check that ``delta`` is (*L, n, *sample_shape) and return (L + (n,), number of rows)."""
    if not isinstance(delta, torch.Tensor):
        raise TypeError(f"`delta` must be a tensor, got {type(delta).__name__}")
    k = len(sample_shape)
    if (
        delta.dim() < k + 1
        or delta.shape[delta.dim() - k :] != sample_shape
        or delta.shape[delta.dim() - k - 1] != n
    ):
        raise ValueError(
            f"`delta` must have shape (..., {n}, {', '.join(map(str, sample_shape))}), "
            f"got {tuple(delta.shape)}"
        )
    lead = delta.shape[: delta.dim() - k]
    return lead, int(math.prod(lead))
