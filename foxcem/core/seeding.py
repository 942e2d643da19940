"""Seeded randomness that never advances the caller's random stream.

* :func:`check_seed`, :func:`make_generator`, :func:`isolated_rng`: ``torch.Generator`` based;
* :func:`fresh_seed`: what ``seed=None`` means (fresh randomness, independent of the global RNG
  state, which the model-state guard restores after every call);
* :func:`counter_normal`: Gaussian noise that is a pure function of (key, row, column), so any
  subset of rows can be drawn alone and equals the same rows of a larger draw, on any device.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import numpy as np
import torch

__all__ = [
    "MAX_SEED",
    "check_seed",
    "counter_keys",
    "counter_normal",
    "fresh_seed",
    "isolated_rng",
    "make_generator",
    "mix_key",
    "preserved_global_rng",
]


#: Seeds are below this bound (what a ``torch.Generator`` takes, with room for derived seeds).
MAX_SEED = 2**62


def check_seed(seed: object, name: str = "seed") -> Optional[int]:
    """Check that ``seed`` is ``None`` or an ``int`` in [0, 2**62)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int or None, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"`{name}` must be in [0, 2**62), got {seed}")
    return seed


def make_generator(seed: Optional[int], device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None``: a fresh seed, so
    that ``None`` means new randomness on every call)."""
    return torch.Generator(device=device).manual_seed(fresh_seed() if seed is None else seed)


_RNG_LOCK = threading.RLock()
#: Serialises blocks that seed the global generators: two at once would draw from one stream.
_SEEDED = threading.RLock()


class _SavedStreams:
    """The global RNG states while at least one call preserves them."""

    depth = 0
    cpu: Optional[torch.Tensor] = None
    numpy: Any = None
    cuda: dict[int, torch.Tensor] = {}


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@contextlib.contextmanager
def preserved_global_rng(cuda_devices: Sequence[int] = ()) -> Iterator[None]:
    """Restore the global RNG states — the CPU's, NumPy's and those of ``cuda_devices`` — after
    a block.

    Re-entrant and safe under concurrency: overlapping blocks (other threads, or nested) share
    one saved state, taken by the first block in and restored by the last block out, so the
    caller's random stream ends exactly where it was, whatever order the blocks end in.
    """
    with _RNG_LOCK:
        if _SavedStreams.depth == 0:
            _SavedStreams.cpu = torch.get_rng_state()
            _SavedStreams.numpy = np.random.get_state()
            _SavedStreams.cuda = {}
        for index in cuda_devices:
            _SavedStreams.cuda.setdefault(index, torch.cuda.get_rng_state(index))
        _SavedStreams.depth += 1
    try:
        yield
    finally:
        with _RNG_LOCK:
            _SavedStreams.depth -= 1
            if _SavedStreams.depth == 0:
                torch.set_rng_state(_SavedStreams.cpu)
                np.random.set_state(_SavedStreams.numpy)
                for index, state in _SavedStreams.cuda.items():
                    torch.cuda.set_rng_state(state, index)


@contextlib.contextmanager
def isolated_rng(seed: Optional[int], device: torch.device) -> Iterator[None]:
    """Run a block with the global RNGs seeded, and restore them afterwards.

    Captum draws its noise from the global RNGs: ``torch.normal`` on the input's device
    (NoiseTunnel, GradientShap's ``stdevs``) and NumPy's global generator (GradientShap's
    interpolation coefficients and baseline choice). Those generators — the CPU one, the input's
    CUDA device's and NumPy's — are seeded for the block with ``seed``, or with a fresh seed from
    the operating system when it is ``None`` (drawing from the global stream itself would repeat
    on every call, since the stream is restored). Either way their states are restored
    afterwards, so an explanation never advances the caller's random stream. Seeded blocks run
    one at a time (a second thread waits): two at once would draw from one stream, and neither
    would give its sequential result.
    """
    cuda = [_cuda_index(device)] if device.type == "cuda" else []
    seed = fresh_seed() if seed is None else seed
    with _SEEDED, preserved_global_rng(cuda):
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def fresh_seed() -> int:
    """A new 62-bit seed from the operating system (never from torch's global RNG)."""
    return secrets.randbits(62)


_MASK32 = 0xFFFFFFFF


def _mix32_int(value: int) -> int:
    """The 32-bit finaliser of :func:`_mix32` on a Python int (for keys computed on the host)."""
    x = value & _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    x ^= x >> 16
    return x


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def mix_key(*parts: int) -> int:
    """A 32-bit key (as a signed int32 value) mixing non-negative integers, e.g. (seed, call)."""
    key = 0x6A09E667
    for part in parts:
        part = int(part)
        while True:  # all 64+ bits of the part matter
            key = _mix32_int(key ^ _mix32_int(part & _MASK32))
            part >>= 32
            if part == 0:
                break
    return _signed32(key)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash (a multiply-xorshift finaliser) on an int32 tensor,
    in place. Multiplications wrap modulo 2³²; right shifts are made logical by masking."""
    x ^= (x >> 16) & 0xFFFF
    x *= 0x7FEB352D
    x ^= (x >> 15) & 0x1FFFF
    x *= _signed32(0x846CA68B)
    x ^= (x >> 16) & 0xFFFF
    return x


def counter_keys(counters: torch.Tensor, key: int) -> torch.Tensor:
    """Per-row int32 keys for :func:`counter_normal` from row counters (int32) and a key
    (e.g. :func:`mix_key` of a seed and a call number); distinct counters give distinct keys."""
    keys = _mix32(counters.to(torch.int32, copy=True))
    keys ^= key
    return _mix32(keys)


def counter_normal(
    row_keys: torch.Tensor, num_columns: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal noise (R, num_columns), a pure function of each row's key and column.

    Args:
        row_keys: (R,) int32 keys, one per row (e.g. from :func:`mix_key` and a row counter).
        num_columns: columns per row.
        dtype: floating dtype of the result (computed in float32, or float64 for float64).

    Each row is hashed with each column index and turned into normals by the Box–Muller
    transform, so a row's values never depend on which other rows are drawn with it, nor on the
    device.
    """
    if row_keys.dtype != torch.int32 or row_keys.dim() != 1:
        raise TypeError("`row_keys` must be a 1-D int32 tensor")
    half = (num_columns + 1) // 2
    device = row_keys.device
    columns = torch.arange(2 * half, device=device, dtype=torch.int32)
    column_keys = _mix32(columns.mul_(_signed32(0x9E3779B1)).add_(0x3C6EF372))
    bits = _mix32(row_keys[:, None] ^ column_keys[None, :])
    bits >>= 8
    bits &= 0xFFFFFF  # 24 uniform bits per value
    work = torch.float64 if dtype == torch.float64 else torch.float32
    uniform = bits.to(work)
    del bits
    scale = 1.0 / 16777216.0
    radius = uniform[:, :half].add_(0.5).mul_(scale).log_().mul_(-2.0).sqrt_()  # u1 in (0, 1)
    angle = uniform[:, half:].mul_(2.0 * math.pi * scale)
    out = torch.cat([radius * torch.cos(angle), radius * angle.sin_()], dim=1)[:, :num_columns]
    return out if out.dtype == dtype else out.to(dtype)
