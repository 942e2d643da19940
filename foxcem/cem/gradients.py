"""Gradient sources for the CEM optimizers: exact (autograd) and black-box (URV estimate).

Both are callables ``gradient(delta) -> tensor shaped like delta`` (N, …), the contract of the
seeds' ``__call__(data)``; the generator writes the result into ``delta.grad``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Protocol

import torch

from foxcem.core.checks import check_positive_int
from foxcem.core.model_state import gradients_enabled

__all__ = ["AutogradGradient", "URVGradientEstimator", "Sampler"]


class _Loss(Protocol):
    def __call__(
        self, delta: torch.Tensor, samples: Optional[torch.Tensor] = ...
    ) -> torch.Tensor: ...


#: ``sampler(shape, generator=..., device=..., dtype=...)`` returns raw Gaussian noise of
#: ``shape`` = (N, q, …); the estimator normalises each (sample, direction) to the unit sphere.
Sampler = Callable[..., torch.Tensor]


def gaussian_sampler(
    shape: torch.Size,
    *,
    generator: Optional[torch.Generator],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` drawn on ``device`` from ``generator``."""
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


class AutogradGradient:
    """The exact gradient of the per-sample loss with respect to δ (white box).

    Args:
        loss: a callable mapping δ (N, …) to per-sample values (N,), e.g. :class:`CEMLoss`.

    ``AutogradGradient(loss)(delta)`` returns ∂loss_n/∂δ_n for every sample n, shaped like
    ``delta``. Samples are independent (the loss of sample n depends on δ_n only, with the model
    in eval mode), so the gradient of the summed loss is the per-sample gradient. Parameters'
    ``.grad`` are left untouched (``torch.autograd.grad``).
    """

    def __init__(self, loss: _Loss) -> None:
        if not callable(loss):
            raise TypeError(f"`loss` must be callable, got {type(loss).__name__}")
        self.loss = loss

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        with gradients_enabled():
            point = delta.detach().clone().requires_grad_(True)
            value = self.loss(point)
            if not isinstance(value, torch.Tensor) or not value.requires_grad:
                return torch.zeros_like(delta)
            (grad,) = torch.autograd.grad(value.sum(), point, allow_unused=True)
        return torch.zeros_like(delta) if grad is None else grad.detach()

    def __repr__(self) -> str:
        return f"AutogradGradient({self.loss!r})"


class URVGradientEstimator:
    """Uniform-random-vector zeroth-order gradient estimate, batched over samples and directions.

    For each sample, q directions u_j are drawn Gaussian and normalised to the unit sphere, and ::

        one-sided:  ĝ = d/(μ·q) · Σ_j (F(δ + μ·u_j) − F(δ)) · u_j
        two-sided:  ĝ = d/(μ·q) · Σ_j (F(δ + μ·u_j) − F(δ − μ·u_j))/2 · u_j    (same u_j twice)

    with d the per-sample number of entries and μ_t = 1/(√t·√d) at the t-th call (or a constant
    ``mu``). All N·q perturbed points (plus the N points F(δ) for the one-sided estimate) are
    stacked, sample by sample, and sent through the loss, i.e. the model, in as few calls as
    ``batch_size`` allows: one call when it fits. The noise is drawn on δ's device from a
    ``torch.Generator``; there is no Python loop over samples or directions and no host round
    trip.

    Args:
        loss: a :class:`CEMLoss`, or any callable ``loss(rows, samples=index)`` mapping M
            perturbed points (M, …) of the samples ``index`` (M,) to their values (M,).
        num_directions: q, the number of random directions per sample and call.
        mu: constant smoothing radius; ``None``: μ_t = 1/(√t·√d).
        batch_size: the most rows (perturbed samples) per model call; ``None``: no limit. The
            result does not depend on it. On a GPU use the largest that fits in memory; on a CPU
            passes of about 64-128 rows of a small CNN stay in cache and run fastest.
        two_sided: use the symmetric difference (lower variance, 2q rows per sample instead of
            q + 1).
        generator: a ``torch.Generator`` on δ's device. ``None``: one is created on the first
            call's device, seeded with ``seed`` (or from torch's global RNG when ``seed`` is None).
        seed: seed of the generator created when ``generator`` is None.
        sampler: replaces the Gaussian draw: ``sampler(shape, generator=, device=, dtype=)`` must
            return raw noise of shape (N, q, …) (normalised afterwards). Lets a test feed the
            same per-sample noise to a batch and to its samples one by one.

    ``estimator(delta)`` takes δ (N, …) and returns ĝ (N, …).
    """

    def __init__(
        self,
        loss: _Loss,
        num_directions: int = 100,
        mu: Optional[float] = None,
        batch_size: Optional[int] = None,
        two_sided: bool = False,
        generator: Optional[torch.Generator] = None,
        *,
        seed: Optional[int] = None,
        sampler: Optional[Sampler] = None,
    ) -> None:
        if not callable(loss):
            raise TypeError(f"`loss` must be callable, got {type(loss).__name__}")
        self.loss = loss
        self.num_directions = check_positive_int(num_directions, "num_directions")
        if mu is not None and not (isinstance(mu, (int, float)) and mu > 0 and math.isfinite(mu)):
            raise ValueError(f"`mu` must be a finite float > 0 or None, got {mu!r}")
        self.mu = None if mu is None else float(mu)
        self.batch_size = (
            None if batch_size is None else check_positive_int(batch_size, "batch_size")
        )
        self.two_sided = bool(two_sided)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a torch.Generator, got {type(generator).__name__}"
            )
        self.generator = generator
        if seed is None and generator is None and sampler is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        self.seed = seed
        self.sampler: Sampler = sampler if sampler is not None else gaussian_sampler
        #: number of calls so far (the t of the μ schedule).
        self.t = 0
        #: number of loss (model) calls made by the last estimate.
        self.last_num_calls = 0

    def reset(self) -> None:
        """Restart the μ schedule (t = 0)."""
        self.t = 0

    def _generator(self, device: torch.device) -> Optional[torch.Generator]:
        if self.generator is None and self.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        if self.generator is not None and torch.device(self.generator.device).type != device.type:
            raise ValueError(
                f"`generator` is on {self.generator.device} but delta is on {device}; create it "
                f"with torch.Generator(device={str(device)!r})"
            )
        return self.generator

    def current_mu(self, d: int) -> float:
        """μ for the current call count t (call after incrementing t)."""
        if self.mu is not None:
            return self.mu
        return 1.0 / (math.sqrt(max(self.t, 1)) * math.sqrt(d))

    def directions(self, delta: torch.Tensor) -> torch.Tensor:
        """q unit directions per sample, (N, q, …), drawn on δ's device."""
        n = delta.shape[0]
        shape = (n, self.num_directions) + tuple(delta.shape[1:])
        u = self.sampler(
            torch.Size(shape),
            generator=self._generator(delta.device),
            device=delta.device,
            dtype=delta.dtype,
        )
        if u.shape != shape:
            raise ValueError(f"`sampler` must return shape {shape}, got {tuple(u.shape)}")
        u = u.to(device=delta.device, dtype=delta.dtype)
        dims = tuple(range(2, u.dim()))
        norm = torch.linalg.vector_norm(u, dim=dims, keepdim=True) if dims else u.abs()
        return u.div_(torch.clamp(norm, min=torch.finfo(u.dtype).tiny))

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        if delta.dim() < 1:
            raise ValueError("`delta` must have a sample dimension: (N, ...)")
        delta = delta.detach()
        self.t += 1
        n = delta.shape[0]
        d = delta[0].numel()
        q = self.num_directions
        mu = self.current_mu(d)
        with torch.no_grad():
            u = self.directions(delta)  # (N, q, …)
            values = self._evaluate(delta, u, mu)  # (N, R)
            if self.two_sided:
                diff = 0.5 * (values[:, :q] - values[:, q:])
            else:
                diff = values[:, 1:] - values[:, :1]
            # Σ_j diff_nj · u_nj for every sample as one batched mat-vec: (N, d, q) @ (N, q, 1).
            grad = torch.bmm(u.reshape(n, q, d).transpose(1, 2), diff.to(u.dtype).unsqueeze(-1))
            grad = grad.squeeze(-1).mul_(d / (mu * q))
        return grad.reshape(delta.shape)

    def _evaluate(self, delta: torch.Tensor, u: torch.Tensor, mu: float) -> torch.Tensor:
        """F at every stacked point, (N, R): R = q + 1 (one-sided) or 2q (two-sided).

        The rows of a sample are consecutive (sample-major): one-sided [δ, δ + μu_1, …,
        δ + μu_q], two-sided [δ + μu_1, …, δ + μu_q, δ − μu_1, …, δ − μu_q]. Rows of the same
        sample next to each other also run faster on CPUs (similar data, predictable branches).
        """
        n, q = u.shape[0], u.shape[1]
        sample_shape = tuple(delta.shape[1:])
        per_sample = 2 * q if self.two_sided else q + 1
        total = n * per_sample
        device = delta.device
        if self.batch_size is None or total <= self.batch_size:
            self.last_num_calls = 1
            points = torch.empty((n, per_sample) + sample_shape, dtype=delta.dtype, device=device)
            base = delta.unsqueeze(1)
            if self.two_sided:
                torch.add(base, u, alpha=mu, out=points[:, :q])
                torch.sub(base, u, alpha=mu, out=points[:, q:])
            else:
                points[:, 0] = delta
                torch.add(base, u, alpha=mu, out=points[:, 1:])
            samples = torch.arange(n, device=device).repeat_interleave(per_sample)
            values = self.loss(points.reshape((total,) + sample_shape), samples=samples)
            return values.reshape(n, per_sample)
        u_rows = u.reshape((n * q,) + sample_shape)
        ones = (1,) * len(sample_shape)
        values = []
        calls = 0
        for start in range(0, total, self.batch_size):
            rows = torch.arange(start, min(start + self.batch_size, total), device=device)
            samples = torch.div(rows, per_sample, rounding_mode="floor")
            r = rows - samples * per_sample
            if self.two_sided:
                j = torch.remainder(r, q)
                coef = torch.where(r < q, mu, -mu).to(delta.dtype)
            else:
                j = torch.clamp(r - 1, min=0)
                coef = torch.where(r > 0, mu, 0.0).to(delta.dtype)
            directions = u_rows.index_select(0, samples * q + j)
            points = torch.addcmul(
                delta.index_select(0, samples), coef.view((-1,) + ones), directions
            )
            values.append(self.loss(points, samples=samples))
            calls += 1
        self.last_num_calls = calls
        return torch.cat(values).reshape(n, per_sample)

    def __repr__(self) -> str:
        return (
            f"URVGradientEstimator(num_directions={self.num_directions}, mu={self.mu}, "
            f"batch_size={self.batch_size}, two_sided={self.two_sided})"
        )
