"""How many CPU threads foxcem's iterative loops use: chosen by the library, scoped to one call.

CEM, the URV estimator and the perturbation methods call a model hundreds of times on modest
batches. On the CPU each call opens OpenMP parallel regions, and what they cost depends on the
machine's load as much as on their size. Whole CEM runs measured on a 2-core Xeon
(``benchmarks/cpu_threads.py``), time on 2 threads ÷ time on 1:

===========================================  ====================  ===========================
run                                          idle machine          one core busy elsewhere
===========================================  ====================  ===========================
digits CNN (8×8), 6 images, autograd / URV   0.96 / 0.77           8.8 / 6.8
MNIST CNN (28×28), 8 images, autograd / URV  0.74 / 0.56           9.7 / 2.9
resnet18, one forward of 16 × 3×224×224      0.53                  1.35
===========================================  ====================  ===========================

Threads must be chosen deterministically: oneDNN's convolutions round differently with another
thread count, so a choice that followed the machine's load would make two seeded calls differ.
``threads="auto"`` therefore decides by the size of one model call: below :data:`SMALL_CALL`
input values per call (MNIST-sized batches and passes, and smaller) one thread — where a second
thread gains at most 1.8× on an idle machine and loses 3–11× on a busy one — and the caller's
setting above it (224×224 images, where the gain is larger than the loss). An int sets the count
for the call; ``None`` keeps the caller's setting.

The count is set with ``torch.set_num_threads`` for the block and restored afterwards. In torch's
OpenMP builds that setting belongs to the calling Python thread, so concurrent explanations on
other threads neither see nor undo it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Optional, Union

import torch

__all__ = ["SMALL_CALL", "ThreadsLike", "check_threads", "choose_threads", "cpu_threads"]

#: Input values per model call below which ``threads="auto"`` runs on one CPU thread.
SMALL_CALL = 1 << 17

ThreadsLike = Union[int, str, None]


def check_threads(value: object, name: str = "threads") -> ThreadsLike:
    """``"auto"``, ``None`` (the caller's setting) or a positive int."""
    if value is None or value == "auto":
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be 'auto', None or a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be 'auto', None or a positive int, got {value}")
    return value


def choose_threads(
    threads: ThreadsLike, values_per_call: int, device: torch.device
) -> Optional[int]:
    """The CPU thread count for a loop of model calls of ``values_per_call`` input values each
    (``None``: leave the caller's setting). Nothing changes for a loop on a GPU."""
    threads = check_threads(threads)
    if device.type != "cpu" or threads is None:
        return None
    if threads == "auto":
        return 1 if values_per_call < SMALL_CALL else None
    return int(threads)


@contextlib.contextmanager
def cpu_threads(count: Optional[int]) -> Iterator[None]:
    """Run a block with ``count`` torch CPU threads (``None``: unchanged); the calling thread's
    previous setting is restored afterwards, also when the block raises."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
