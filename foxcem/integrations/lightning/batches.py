"""What the Lightning callback reads from a training run: inputs from batches and plain
tensors. Lightning itself is not imported here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import torch

__all__ = ["class_labels", "default_batch_transform", "plain_cpu"]


def plain_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy that is not an inference tensor."""
    with torch.inference_mode(False):
        return tensor.detach().to("cpu").clone()


def default_batch_transform(batch: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``x``, ``(x, y, ...)`` or ``{"x"|"input"|"inputs"|"image": ..., "y"|"label"|...}``."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        y = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return batch[0], y
    if isinstance(batch, Mapping):
        x = next(
            (batch[k] for k in ("x", "input", "inputs", "image", "images") if k in batch), None
        )
        y = next(
            (batch[k] for k in ("y", "label", "labels", "target", "targets") if k in batch), None
        )
        if isinstance(x, torch.Tensor):
            return x, y if isinstance(y, torch.Tensor) else None
    raise ValueError(
        "ExplanationCallback cannot find the inputs in a validation batch of type "
        f"{type(batch).__name__}; pass batch_transform=lambda batch: (x, y_or_None)"
    )


def class_labels(y: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Labels as (N,) class indices: (N,) and (N, 1) integer labels as they are, one-hot or
    per-class scores (N, C) by their argmax.

    Raises:
        ValueError: for any other shape, naming what came and what is expected.
    """
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"labels must be a tensor, got {type(y).__name__}")
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() == 2 and y.shape[1] > 1:
        y = y.argmax(dim=1)
    if y.dim() != 1 or len(y) != num_samples:
        raise ValueError(
            f"labels must be (N,), (N, 1) or one-hot (N, C) with N = {num_samples}, "
            f"got shape {tuple(y.shape)}"
        )
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise ValueError("labels must be class indices, got non-integer values")
    return y.long()
