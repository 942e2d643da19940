"""The Wright omega function ω(u) = W(eᵘ) in torch, for any real u, on any device.

ω is the solution of ω + log ω = u; it is what the ExpGrad proximal step needs when l2 > 0. The
older numpy code evaluated it as ``lambertw(exp(u))``, which overflows for u ≳ 709 (float64) and
u ≳ 88 (float32). Here it is computed from a closed-form start (series e^u for u ≪ 0, the Taylor
series about u = 1 in the middle, the asymptotic series u − log u + … for u > 1) followed by two
steps of the classical fourth-order iteration for ω + log ω = u (Communications of the ACM 16(2),
1973; also used by scipy), written so that no intermediate overflows.
The iteration runs in float64 (float32 on devices without float64), so float32 results are
correctly rounded up to an ulp or two.
"""

from __future__ import annotations

import torch

__all__ = ["wright_omega"]

#: Below this u, ω(u) = eᵘ·(1 − eᵘ + …) equals eᵘ to working precision.
_EXP_THRESHOLD = {torch.float64: -40.0, torch.float32: -20.0}
_ITERATIONS = 2


def _start(u: torch.Tensor) -> torch.Tensor:
    """A first approximation of ω(u) for u ≥ the exp threshold (relative error below ~5%)."""
    e = torch.exp(torch.clamp(u, max=-2.0))
    low = e * (1.0 - e + 1.5 * e * e)  # u ≤ -2: series in eᵘ
    v = torch.clamp(u, -2.0, 1.0) - 1.0  # -2 < u ≤ 1: Taylor series about u = 1 (ω(1) = 1)
    mid = 1.0 + v * (0.5 + v * (1.0 / 16.0 + v * (-1.0 / 192.0 + v * (-1.0 / 3072.0))))
    big = torch.clamp(u, min=1.0)  # u > 1: asymptotic series
    log_big = torch.log(big)
    high = big - log_big + log_big / big + log_big * (log_big - 2.0) / (2.0 * big * big)
    return torch.where(u <= -2.0, low, torch.where(u <= 1.0, mid, high))


def _refine(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One fourth-order step towards ω + log ω = u, scaled by (1 + ω)² against overflow."""
    r = u - w - torch.log(w)
    p = 1.0 + w
    s = r / p
    q = 1.0 + (2.0 / 3.0) * s
    t = s / p  # r / (1 + ω)², underflows harmlessly to 0 for huge ω
    return w * (1.0 + s * (q - 0.5 * t) / (q - t))


def widest_float(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it (MPS has not: float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _wright_omega_value(u: torch.Tensor) -> torch.Tensor:
    dtype = u.dtype
    # The residual u − ω − log ω cancels for u < 0, so a float32 evaluation loses a few ulps
    # there; float64 costs next to nothing elementwise.
    work = widest_float(u.device)
    uw = u.to(work)
    threshold = _EXP_THRESHOLD[work]
    uc = torch.clamp(uw, min=threshold)
    # Keep +inf out of the iteration (inf - inf); it is put back below.
    uc = torch.where(torch.isinf(uc), torch.zeros_like(uc), uc)
    w = _start(uc)
    for _ in range(_ITERATIONS):
        w = _refine(uc, w)
    w = torch.where(uw < threshold, torch.exp(uw), w)
    w = torch.where(uw == float("inf"), uw, w)
    return w.to(dtype)


class _WrightOmega(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        w = _wright_omega_value(u)
        ctx.save_for_backward(w)
        return w

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (w,) = ctx.saved_tensors
        # ω' = ω / (1 + ω), written as 1 / (1 + 1/ω): 0 at ω = 0, 1 at ω = inf, never NaN.
        return grad_output / (1.0 + torch.reciprocal(w))


def wright_omega(u: torch.Tensor) -> torch.Tensor:
    """The Wright omega function ω(u) = W₀(eᵘ), the solution of ω + log ω = u, elementwise.

    Args:
        u: a real floating tensor of any shape, on any device. Evaluated in float64 (float32 on
            MPS) and returned in ``u``'s dtype.

    Returns:
        ω(u), same shape, dtype and device as ``u``: positive and finite for every finite ``u``
        (``eᵘ`` may underflow to 0 for u below about -745 in float64 / -104 in float32, as the
        true value does), ``inf`` at ``+inf``, 0 at ``-inf``. Accurate to a few units in the last
        place of the dtype.

    Differentiable: the backward pass uses ω'(u) = ω / (1 + ω) (also twice differentiable).
    """
    if not isinstance(u, torch.Tensor):
        u = torch.as_tensor(u, dtype=torch.get_default_dtype())
    if not u.is_floating_point():
        raise TypeError(f"`u` must have a floating dtype, got {u.dtype}")
    if torch.is_grad_enabled() and u.requires_grad:
        return _WrightOmega.apply(u)
    return _wright_omega_value(u)  # no graph to record: skip the autograd.Function's overhead
