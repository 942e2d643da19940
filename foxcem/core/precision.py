"""The precision a model is evaluated in: float32, bfloat16 autocast, or TF32 matmuls."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Optional

import torch

__all__ = ["PRECISIONS", "check_precision", "precision_context"]

PRECISIONS = ("fp32", "bf16", "tf32")


def check_precision(precision: Optional[str]) -> str:
    """``None`` -> ``"fp32"``; ``ValueError`` for anything but :data:`PRECISIONS`."""
    precision = "fp32" if precision is None else precision
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {list(PRECISIONS)} or None, got {precision!r}"
        )
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Run a block in ``precision``: ``"bf16"`` under ``torch.autocast`` (the model computes
    in bfloat16; callers accumulate in float32), ``"tf32"`` with TF32 CUDA matmuls and
    convolutions (restored afterwards), ``"fp32"`` as is."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    elif precision == "tf32" and device.type == "cuda":
        matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    else:
        yield
