"""AdaExpGrad and AoExpGrad: exponentiated-gradient optimizers for the elastic-net CEM objective.

Both minimise F(δ) + l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ over a box, one problem per sample along the first
dimension of the parameter: every piece of state (λ, t, x, y, h, B) is kept per sample, so a batch
of N samples gives exactly the iterates of N separate runs. The smooth part F enters only through
the gradient written into ``param.grad``; the regulariser is applied by the proximal map
:func:`~foxcem.cem.prox.exp_grad_prox`. "Optimistic Optimisation of Composite Objective with
Exponentiated Update", Machine Learning 2022 (arXiv 2208.04065).

Usage (one step)::

    opt.zero_grad()
    delta.grad = gradient(delta)   # (N, ...) like delta
    opt.step()                     # delta now holds the next gradient point
    opt.output(delta)              # the averaged iterate y: the explanation so far

State is kept in float32 (or wider) for half-precision parameters, and per-sample counters in
float64; ``state_dict()`` / ``load_state_dict()`` round-trip it exactly, so a resumed run equals an
uninterrupted one bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from foxcem.cem.expgrad import BoundLike, ExpGradOptimizer
from foxcem.cem.prox import exp_grad_prox, flush_subnormal, max_abs, per_sample
from foxcem.core.checks import check_finite_float

__all__ = ["AdaExpGrad", "AoExpGrad", "ExpGradOptimizer", "exp_grad_prox"]


class AdaExpGrad(ExpGradOptimizer):
    """Adaptive exponentiated gradient, per sample.

    λ₀ = 1. Step t: g = ∇F at x; λ += ‖g‖²_∞; α = η·√λ; x ← prox(x, G = g, s = 1);
    y ← x/t + (1 − 1/t)·y. After :meth:`step` the parameter holds x (the next gradient point,
    exactly sparse); :meth:`output` returns y. Arguments as :class:`ExpGradOptimizer`.
    """

    _lam0 = 1.0
    _point = "x"

    def _update(
        self, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        t = state["step"] + 1
        g_inf = max_abs(g).to(t.dtype)
        lam = torch.addcmul(state["lam"], g_inf, g_inf)
        # 1/α per sample, in δ's dtype (the counters stay in float64)
        inverse = per_sample(1.0 / (group["eta"] * torch.sqrt(lam)), g)
        z = torch.addcmul(self._mirror(state), inverse, g, value=-1.0)  # mirror(x) − g/α
        x = self._prox(state, group, z, inverse)
        # y ← x/t + (1 − 1/t)·y
        y = flush_subnormal(torch.lerp(state["y"], x, per_sample(1.0 / t, x)))
        return {"step": t, "lam": lam, "x": x, "y": y}


class AoExpGrad(ExpGradOptimizer):
    """Adaptive optimistic exponentiated gradient, per sample.

    λ₀ = 0, h₀ = 0, B₀ = 0. Step t: B += t; g = ∇F at y; λ += (t·‖g − h‖_∞)²;
    α = η·√λ/√log(d+1); G = t·g − t·h + (t+1)·g; x ← prox(x, G, s = t+1);
    y ← (t/B)·x + ((B − t)/B)·y; h ← g. After :meth:`step` the parameter holds y (the next
    gradient point), which is also what :meth:`output` returns.

    While λ = 0 (every gradient so far zero, e.g. a PP start whose class margin already exceeds
    κ) α = 0 would be an infinite step straight to the regulariser's minimum, throwing the start
    away. Then α is floored so that the regulariser alone shrinks each entry by at most half a
    step: α ≥ η·s·(l1 + l2·b)/log 2, with b the sample's largest bound magnitude; ``alpha_min``
    is the floor without a regulariser.

    The arguments are :class:`ExpGradOptimizer`'s, and ``alpha_min``: the α used while λ = 0
    when l1 = l2 = 0.
    """

    _lam0 = 0.0
    _point = "y"

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        eta: float = 1.0,
        l1: float = 0.5,
        l2: float = 0.5,
        lower: BoundLike = None,
        upper: BoundLike = None,
        zero_tol: float = 1e-3,
        alpha_min: float = 1e-6,
        compile: bool = False,
    ) -> None:
        self.alpha_min = check_finite_float(alpha_min, "alpha_min", minimum=0.0, strict=True)
        super().__init__(
            params, eta=eta, l1=l1, l2=l2, lower=lower, upper=upper, zero_tol=zero_tol,
            compile=compile,
        )  # fmt: skip

    def _init_state(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        super()._init_state(p, state, group)
        state["B"] = torch.zeros_like(state["step"])
        state["h"] = torch.zeros_like(state["x"])

    def _update(
        self, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        d = math.prod(g.shape[1:])
        t = state["step"] + 1
        B = state["B"] + t
        h = state["h"]
        tg = t * max_abs(g - h).to(t.dtype)
        lam = torch.addcmul(state["lam"], tg, tg)
        alpha = torch.sqrt(lam) * (group["eta"] / math.sqrt(math.log(d + 1)))
        # λ only grows, so after the first nonzero gradient the floor is never used; on the
        # CPU checking that is cheaper than building it.
        if lam.device.type != "cpu" or not float(lam.min()) > 0:
            alpha = torch.where(lam > 0, alpha, self._alpha_floor(t, state, group))
        # Keep s·l2/α finite even for a subnormal α.
        alpha = torch.clamp(alpha, min=math.sqrt(torch.finfo(g.dtype).tiny))
        # Per-sample coefficients in δ's dtype (the counters stay in float64).
        inverse, t_ = per_sample(1.0 / alpha, g), per_sample(t, g)
        t_inverse = t_ * inverse
        # z = mirror(x) − G/α with G = (2t + 1)·g − t·h: two fused multiply-adds.
        z = torch.addcmul(self._mirror(state), torch.add(inverse, t_inverse, alpha=2.0), g,
                          value=-1.0)  # fmt: skip
        z = torch.addcmul(z, t_inverse, h)
        x = self._prox(state, group, z, inverse + t_inverse)  # s/α with s = t + 1
        # y ← (t/B)·x + ((B − t)/B)·y
        y = flush_subnormal(torch.lerp(state["y"], x, per_sample(t / B, x)))
        return {"step": t, "B": B, "lam": lam, "x": x, "y": y, "h": g}

    def _alpha_floor(
        self, t: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> torch.Tensor:
        """α while λ = 0: the regulariser alone shrinks each entry by at most half a step."""
        strength = group["l1"] + group["l2"] * state["bound_scale"]
        floor = group["eta"] * (t + 1.0) * strength / math.log(2.0)
        return torch.where(floor > 0, floor, torch.full_like(floor, self.alpha_min))
