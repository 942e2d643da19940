"""The exponentiated-gradient proximal step shared by AdaExpGrad and AoExpGrad (Shao, Sivrikaya &
Albayrak, "Optimistic Optimisation of Composite Objective with Exponentiated Update", Machine
Learning 2022, arXiv 2208.04065)."""

from __future__ import annotations

from typing import Optional

import torch

from foxcem.cem.wright_omega import wright_omega

__all__ = ["exp_grad_prox", "flush_subnormal", "per_sample"]


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
    a_ = per_sample(alpha, x)
    s_ = per_sample(scale, x)
    z = torch.sign(x) * torch.log1p(x.abs() / beta) - G / a_
    abs_z = z.abs()
    shrink = s_ * l1 / a_
    if l2 == 0.0:
        m = torch.clamp(abs_z - shrink, min=0.0)
        if cap is not None:
            m = torch.minimum(m, cap)
        v = beta * torch.expm1(m)
    else:
        b = s_ * l2 / a_
        c = torch.clamp(shrink - abs_z, max=0.0)
        ab = beta * b
        v = wright_omega(ab - c + torch.log(ab)) / b - beta
        v = torch.clamp(v, min=0.0)  # exact value is ≥ 0; removes rounding below it
    out = torch.sign(z) * v
    if lower is not None:
        out = torch.maximum(out, lower)
    if upper is not None:
        out = torch.minimum(out, upper)
    return flush_subnormal(out)
