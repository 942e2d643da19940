"""The random directions of one URV call: unit vectors, a pure function of (seed, call, sample,
direction index), drawn per pass on δ's device — or taken from a user's ``sampler``."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from foxcem.core.seeding import counter_keys, counter_normal, mix_key

__all__ = ["CallDirections", "Sampler"]

#: ``sampler(shape, generator=..., device=..., dtype=...)`` returns raw Gaussian noise of
#: ``shape`` = (n, q, …) for a whole call; the estimator normalises each (sample, direction).
Sampler = Callable[..., torch.Tensor]


class CallDirections:
    """The directions of call ``call`` of an estimator with ``num_directions`` per sample.

    Args:
        delta: the call's δ (n, …).
        num_directions: q.
        seed, call: the counter-based key of the draw.
        sampler: replaces the counter-based draw with raw noise (n, q, …) for the whole call.
        normal: the counter-based Gaussian draw (:func:`~foxcem.core.seeding.counter_normal`, or
            its compiled form).
    """

    def __init__(
        self,
        delta: torch.Tensor,
        num_directions: int,
        seed: int,
        call: int,
        sampler: Optional[Sampler] = None,
        normal: Callable[..., torch.Tensor] = counter_normal,
    ) -> None:
        self.num_directions = num_directions
        self.key = mix_key(seed, call)
        self.normal = normal
        self.raw: Optional[torch.Tensor] = None
        if sampler is not None:
            shape = (delta.shape[0], num_directions) + tuple(delta.shape[1:])
            u = sampler(torch.Size(shape), generator=None, device=delta.device, dtype=delta.dtype)
            if not isinstance(u, torch.Tensor) or tuple(u.shape) != shape:
                got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
                raise ValueError(f"`sampler` must return shape {shape}, got {got}")
            self.raw = u.to(device=delta.device).reshape(shape[0], shape[1], -1)

    def unit(
        self,
        local: torch.Tensor,
        global_samples: torch.Tensor,
        j: torch.Tensor,
        d: int,
        work: torch.dtype,
    ) -> torch.Tensor:
        """Unit directions (rows, d) for the rows (sample, direction j): ``local`` indexes the
        call's samples, ``global_samples`` names them in the whole batch (the key)."""
        if self.raw is not None:
            u = self.raw[local, j].to(work)
        else:
            row_ids = (global_samples * self.num_directions + j).to(torch.int32)
            u = self.normal(counter_keys(row_ids, self.key), d, dtype=work)
        norm = torch.linalg.vector_norm(u, dim=1, keepdim=True)
        return u.div_(norm.clamp_(min=torch.finfo(work).tiny))
