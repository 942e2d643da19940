"""The exponentiated-gradient proximal step shared by AdaExpGrad and AoExpGrad (Shao, Sivrikaya &
Albayrak, "Optimistic Optimisation of Composite Objective with Exponentiated Update", Machine
Learning 2022, arXiv 2208.04065)."""

from __future__ import annotations

from typing import Optional

import torch

from foxcem.cem.wright_omega import wright_omega

__all__ = [
    "exp_grad_prox",
    "flush_subnormal",
    "max_abs",
    "mirror",
    "per_sample",
    "prox_from_mirror",
    "shrink_coefficients",
]


def per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (N,) tensor as (N, 1, …, 1) to broadcast against ``like`` (N, …)."""
    return value.reshape((-1,) + (1,) * (like.dim() - 1)).to(like.dtype)


def flush_subnormal(value: torch.Tensor) -> torch.Tensor:
    """``value`` with its subnormal entries (magnitude below the dtype's smallest normal number)
    set to exactly 0.

    The proximal step drives many entries towards zero, and on x86 CPUs every operation on a
    subnormal number is one to two orders of magnitude slower; a value below 1e-38 (float32) makes
    no difference to an explanation. Flushing them where they arise keeps every later operation —
    the next step, the averaged iterate, the model's forward pass — on normal numbers, without
    touching the process-wide flush-to-zero setting.
    """
    return value.masked_fill(value.abs() < torch.finfo(value.dtype).tiny, 0.0)


def mirror(x: torch.Tensor, beta: float) -> torch.Tensor:
    """The ExpGrad mirror map ``sign(x)·log(|x|/β + 1)``, elementwise."""
    return torch.log1p(x.abs() * (1.0 / beta)).copysign(x)


def exp_grad_prox(
    x: torch.Tensor,
    G: torch.Tensor,
    alpha: torch.Tensor,
    l1: float,
    l2: float,
    scale: torch.Tensor,
    beta: float,
    lower: Optional[torch.Tensor] = None,
    upper: Optional[torch.Tensor] = None,
    cap: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The exponentiated-gradient proximal step shared by AdaExpGrad and AoExpGrad.

    With ``s = scale``::

        z  = sign(x)·log(|x|/β + 1) − G/α
        l2 == 0:  v = β·exp(max(|z| − s·l1/α, 0)) − β
        l2 >  0:  a = β, b = s·l2/α, c = min(s·l1/α − |z|, 0)
                  v = ω(a·b − c + log(a·b)) / b − a          (ω: :func:`wright_omega`)
        x_new = clip(sign(z)·v, lower, upper)

    Args:
        x: current point, (N, …).
        G: the step's gradient combination, (N, …).
        alpha: step-size denominators α > 0, (N,).
        l1, l2: regularisation weights (≥ 0).
        scale: the regulariser's scale s per sample, (N,).
        beta: β = 1/d with d the per-sample number of entries.
        lower, upper: bounds broadcastable to ``x`` (``None``: unbounded).
        cap: optional elementwise cap on the exponent of the l2 = 0 branch, ``log(B/β + 1)``
            with B the largest bound magnitude: the clipped result is unchanged, and ``exp``
            can no longer overflow.

    Returns:
        The new point, (N, …), never NaN for finite inputs (ω never overflows), without
        subnormal entries (:func:`flush_subnormal`).
    """
    # The optimizers flush their bounds once; a caller's bounds are flushed here, so that
    # clipping to them cannot bring a subnormal value back.
    lower = None if lower is None else flush_subnormal(lower)
    upper = None if upper is None else flush_subnormal(upper)
    inverse = per_sample(1.0 / alpha, x)
    z = mirror(x, beta) - G * inverse
    shrink, b = shrink_coefficients(per_sample(scale, x) * inverse, l1, l2)
    return prox_from_mirror(z, shrink, b, beta, lower, upper, cap)


def shrink_coefficients(
    s_over_alpha: torch.Tensor, l1: float, l2: float
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The soft threshold s·l1/α and the l2 coefficient b = s·l2/α (``None`` when l2 = 0), from
    s/α (any shape, e.g. per sample (N, 1, …, 1))."""
    return s_over_alpha * l1, (s_over_alpha * l2 if l2 > 0 else None)


def prox_from_mirror(
    z: torch.Tensor,
    shrink: torch.Tensor,
    b: Optional[torch.Tensor],
    beta: float,
    lower: Optional[torch.Tensor] = None,
    upper: Optional[torch.Tensor] = None,
    cap: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The second half of :func:`exp_grad_prox`, from the mirror point z = mirror(x) − G/α.

    Args:
        z: (N, …).
        shrink: s·l1/α per sample, broadcastable to z.
        b: s·l2/α per sample, broadcastable to z; ``None`` for l2 = 0.
        beta, lower, upper, cap: as :func:`exp_grad_prox`.

    Written for a small δ, where each elementwise operation costs its launch, not its size:
    clipping is one ``clamp``, and one comparison both removes the rounding below 0 and flushes
    subnormal values.
    """
    excess = torch.clamp(z.abs() - shrink, min=0.0)  # max(|z| − s·l1/α, 0) = −c
    if b is None:
        if cap is not None:
            excess = torch.minimum(excess, cap)
        v = beta * torch.expm1(excess)
    else:
        ab = beta * b
        v = wright_omega(excess + (ab + torch.log(ab)), finite=True) / b - beta
    # v ≥ 0 exactly: this drops the rounding below 0 and the subnormal values in one pass.
    v = v.masked_fill(v < torch.finfo(v.dtype).tiny, 0.0)
    out = v.copysign(z)  # sign(z)·v (z = 0 only where v = 0 up to rounding)
    if lower is not None or upper is not None:
        out = torch.clamp(out, lower, upper)
    return out


def max_abs(value: torch.Tensor) -> torch.Tensor:
    """The largest magnitude of each sample's entries, (N,), in one reduction."""
    return torch.linalg.vector_norm(value.reshape(value.shape[0], -1), float("inf"), dim=1)
