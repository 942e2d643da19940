"""Seeded randomness that never advances the caller's random stream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Optional

import numpy as np
import torch

__all__ = ["check_seed", "make_generator", "isolated_rng"]


def check_seed(seed: object, name: str = "seed") -> Optional[int]:
    """Check that ``seed`` is ``None`` or a non-negative ``int``."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`{name}` must be an int or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"`{name}` must be non-negative, got {seed}")
    return seed


def make_generator(seed: Optional[int], device: torch.device) -> Optional[torch.Generator]:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None``: no generator)."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: Optional[int], device: torch.device) -> Iterator[None]:
    """Run a block with the global RNGs seeded, and restore them afterwards.

    Captum draws its noise from the global RNGs: ``torch.normal`` on the input's device
    (NoiseTunnel, GradientShap's ``stdevs``) and NumPy's global generator (GradientShap's
    interpolation coefficients and baseline choice). With a ``seed`` those generators — the CPU
    one, the input's CUDA device's and NumPy's — are seeded for the block; with ``None`` they are
    used as they are. Either way their states are restored afterwards, so an explanation never
    advances the caller's random stream.
    """
    np_state = np.random.get_state()
    cpu_state = torch.get_rng_state()
    cuda_index = None
    if device.type == "cuda":
        cuda_index = device.index if device.index is not None else torch.cuda.current_device()
        cuda_state = torch.cuda.get_rng_state(cuda_index)
    try:
        if seed is not None:
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)
            if cuda_index is not None:
                torch.cuda.default_generators[cuda_index].manual_seed(seed)
        yield
    finally:
        np.random.set_state(np_state)
        torch.set_rng_state(cpu_state)
        if cuda_index is not None:
            torch.cuda.set_rng_state(cuda_state, cuda_index)
