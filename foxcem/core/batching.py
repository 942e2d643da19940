"""How many rows to send through a model per call when the caller says ``"auto"``."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

__all__ = ["auto_batch_size", "check_batch_size", "is_out_of_memory", "run_in_fixed_batches"]


#: Most rows per CPU pass for images and sequences (measured on CNNs, see auto_batch_size).
MAX_IMAGE_ROWS = 256
#: Most rows per CPU pass for table rows: a tabular model's pass is a few small matrix products,
#: so the per-call overhead — large for a scikit-learn model behind NumPy — dominates.
MAX_TABLE_ROWS = 8192


def auto_batch_size(
    sample_numel: int,
    device: torch.device,
    total_rows: int,
    minimum: int = 16,
    maximum: int = MAX_IMAGE_ROWS,
) -> int:
    """Rows per model call when ``batch_size="auto"``.

    On the CPU, passes of about 128K input values (rounded down to a power of two of rows, 16 to
    256) keep a CNN's activations in cache: for the CEM paper's MNIST CNN on a 2-core CPU, 128-row
    passes cost 13.3 ms per image and 100 directions, one 808-row pass 27.1 ms, 256-row passes
    19.4 ms (``benchmarks/urv_vs_loop.py``). On a GPU: the whole stream in one pass (the caller
    halves a pass that runs out of memory and keeps the smaller size). ``sample_numel`` is what the
    model sees per row (the pixel image also in segment space). ``maximum`` caps the rows of a
    CPU pass: :data:`MAX_TABLE_ROWS` for table rows (1,000 breast-cancer rows × 21 URV rows
    through a scikit-learn pipeline: 256-row passes spend most of the time in per-call overhead).
    """
    if device.type == "cpu":
        rows = max((1 << 17) // max(sample_numel, 1), 1)
        rows = 1 << (rows.bit_length() - 1)  # a power of two
        return int(min(max(rows, minimum), maximum, total_rows))
    return max(total_rows, 1)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device running out of memory (retry with a smaller batch)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc)


def check_batch_size(value: object, name: str) -> object:
    """``None``, ``"auto"`` or a positive int (``ValueError``/``TypeError`` naming ``name``)."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be a positive int, 'auto' or None, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int, 'auto' or None, got {value}")
    return value


def run_in_fixed_batches(call: Callable[[Any], Any], x: Any, size: int) -> Any:
    """``call`` on ``x`` (N, …; a tensor or a NumPy array) for a model that takes exactly
    ``size`` rows at a time (an ONNX model or an exported program with a fixed batch): chunks
    of ``size`` rows, the last one padded with copies of its last row whose outputs are dropped,
    and the outputs (tensors or arrays, rows first) concatenated."""
    if x.shape[0] == size:
        return call(x)
    outputs = []
    for start in range(0, x.shape[0], size):
        chunk = x[start : start + size]
        rows = chunk.shape[0]
        if rows < size:
            pad = [chunk[-1:]] * (size - rows)
            chunk = (
                torch.cat([chunk, *pad])
                if isinstance(chunk, torch.Tensor)
                else (np.concatenate([chunk, *pad]))
            )
        outputs.append(call(chunk)[:rows])
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs)
    return np.concatenate([np.asarray(o) for o in outputs])
