"""The Wright omega function ω(u) = W(eᵘ) in torch, for any real u, on any device.

ω is the solution of ω + log ω = u; it is what the ExpGrad proximal step needs when l2 > 0. The
older numpy code evaluated it as ``lambertw(exp(u))``, which overflows for u ≳ 709 (float64) and
u ≳ 88 (float32). Here it is computed from a closed-form start that shares ω's behaviour at both
ends (within 2% in between), followed by steps of the classical fourth-order iteration for
ω + log ω = u (Communications of the ACM 16(2), 1973; also used by scipy), written so that no
intermediate overflows: one step for results up to float32, two for float64. The cost is a fixed number of
elementwise operations (about 20 for float32): on a small δ it is their count, not their size,
that costs, so the start has no branches.
The iteration runs in float64 (float32 on devices without float64), so float32 results are
correctly rounded up to an ulp or two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from foxcem.core.checks import check_bool

__all__ = ["wright_omega"]

#: Below this u, ω(u) = eᵘ·(1 − eᵘ + …) equals eᵘ to working precision.
_EXP_THRESHOLD = {torch.float64: -40.0, torch.float32: -20.0}
#: Fourth-order steps after the start, by the dtype of the result.
_ITERATIONS = {torch.float64: 2}


def _start(u: torch.Tensor) -> torch.Tensor:
    """A first approximation of ω(u) for u ≥ the exp threshold, within 2% everywhere:
    s − log(1 + s)·s/(s + 2) with s = log(1 + eᵘ), which is eᵘ − e²ᵘ/2 + … for u ≪ 0 and
    u − log u + … for u ≫ 0, like ω. Five operations; one fourth-order step then leaves a
    relative error below 3e-9 (float32 results correctly rounded), two reach float64's."""
    s = F.softplus(u)
    return torch.addcmul(s, torch.log1p(s) / (s + 2.0), s, value=-1.0)  # no overflow


def _refine(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One fourth-order step towards ω + log ω = u, scaled by (1 + ω)² against overflow:
    ω·(1 + s·(q − t/2)/(q − t)) with r = u − ω − log ω, s = r/(1 + ω), t = s/(1 + ω),
    q = 1 + 2s/3 (numerator and denominator taken times 3/2, which saves two operations)."""
    r = u - w - torch.log(w)
    p = 1.0 + w
    s = r / p
    t = s / p  # r / (1 + ω)², underflows harmlessly to 0 for huge ω
    q = s + 1.5  # 3q/2
    ratio = torch.sub(q, t, alpha=0.75) / torch.sub(q, t, alpha=1.5)
    return torch.addcmul(w, w * s, ratio)


def widest_float(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it (MPS has not: float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _wright_omega_value(u: torch.Tensor, finite: bool = False) -> torch.Tensor:
    dtype = u.dtype
    # The residual u − ω − log ω cancels for u < 0, so a float32 evaluation loses a few ulps
    # there; float64 costs next to nothing elementwise.
    work = widest_float(u.device)
    uw = u.to(work)
    threshold = _EXP_THRESHOLD[work]
    # Below the threshold ω = eᵘ (put back below); +inf is kept out of the iteration (inf − inf)
    # and put back below too.
    uc = torch.clamp(uw, min=threshold, max=torch.finfo(work).max)
    w = _start(uc)
    for _ in range(_ITERATIONS.get(dtype, 1)):
        w = _refine(uc, w)
    w = torch.where(uw < threshold, torch.exp(uw), w)
    if not finite:
        w = torch.where(uw == float("inf"), uw, w)
    return w.to(dtype)


class _WrightOmega(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor, finite: bool) -> torch.Tensor:  # type: ignore[override]
        w = _wright_omega_value(u, finite)
        ctx.save_for_backward(w)
        return w

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (w,) = ctx.saved_tensors
        # ω' = ω / (1 + ω), written as 1 / (1 + 1/ω): 0 at ω = 0, 1 at ω = inf, never NaN.
        return grad_output / (1.0 + torch.reciprocal(w)), None


def wright_omega(u: torch.Tensor, finite: bool = False) -> torch.Tensor:
    """The Wright omega function ω(u) = W₀(eᵘ), the solution of ω + log ω = u, elementwise.

    Args:
        u: a real floating tensor of any shape, on any device. Evaluated in float64 (float32 on
            MPS) and returned in ``u``'s dtype.
        finite: the caller knows ``u`` holds no +inf (as the proximal step does): skips the
            two operations that map +inf to +inf. With +inf in ``u`` the result there is
            float64's largest finite value instead (+inf again once cast to float32).

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
    finite = check_bool(finite, "finite")
    if torch.is_grad_enabled() and u.requires_grad:
        return _WrightOmega.apply(u, finite)
    # No graph to record: skip the autograd.Function's overhead.
    return _wright_omega_value(u, finite)
