"""Flushing denormal floats to zero on the CPU while the demo's CEM runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["flush_denormals"]


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU for a block (then back to the default, off).

    The PP optimisation drives many entries towards zero; on x86 CPUs arithmetic on denormal
    numbers is very slow (the CEM PP step was about 10x slower without this), and values below
    1e-38 make no difference to an explanation.
    """
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
