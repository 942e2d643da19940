"""AdaExpGrad and AoExpGrad: exponentiated-gradient optimizers for the elastic-net CEM objective.

Both minimise F(δ) + l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ over a box, one problem per sample along the first
dimension of the parameter: every piece of state (λ, t, x, y, h, B) is kept per sample, so a batch
of N samples gives exactly the iterates of N separate runs. The smooth part F enters only through
the gradient written into ``param.grad``; the regulariser is applied by the proximal map
:func:`exp_grad_prox`. "Optimistic Optimisation of Composite
Objective with Exponentiated Update", Machine Learning 2022 (arXiv 2208.04065).

Usage (one step)::

    delta.grad = gradient(delta)   # (N, ...) like delta
    opt.step()                     # delta now holds the next gradient point
    opt.output(delta)              # the averaged iterate y: the explanation so far
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Optional, Union

import torch

from foxcem.cem.wright_omega import widest_float, wright_omega

__all__ = ["AdaExpGrad", "AoExpGrad", "exp_grad_prox"]

BoundLike = Union[float, torch.Tensor, None]


def _per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (N,) tensor as (N, 1, …, 1) to broadcast against ``like`` (N, …)."""
    return value.reshape((-1,) + (1,) * (like.dim() - 1)).to(like.dtype)


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
        The new point, (N, …), never NaN for finite inputs (ω never overflows).
    """
    a_ = _per_sample(alpha, x)
    s_ = _per_sample(scale, x)
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
    return out


def _as_bound(value: BoundLike, param: torch.Tensor, name: str) -> Optional[torch.Tensor]:
    if value is None:
        return None
    bound = torch.as_tensor(value, dtype=param.dtype, device=param.device)
    try:
        return torch.broadcast_to(bound, param.shape).clone()
    except RuntimeError:
        raise ValueError(
            f"`{name}` must be broadcastable to the parameter's shape {tuple(param.shape)}, "
            f"got shape {tuple(bound.shape)}"
        ) from None


class _ExpGradBase(torch.optim.Optimizer):
    """Shared machinery: hyper-parameters, bounds, per-sample state and the active mask."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        eta: float = 1.0,
        l1: float = 0.5,
        l2: float = 0.5,
        lower: BoundLike = None,
        upper: BoundLike = None,
    ) -> None:
        for name, value, strict in (("eta", eta, True), ("l1", l1, False), ("l2", l2, False)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{name}` must be a float, got {type(value).__name__}")
            if (value <= 0) if strict else (value < 0):
                sign = "> 0" if strict else ">= 0"
                raise ValueError(f"`{name}` must be {sign}, got {value}")
        defaults = dict(eta=float(eta), l1=float(l1), l2=float(l2), lower=lower, upper=upper)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 1:
                    raise ValueError("the parameter must have a sample dimension: (N, ...)")
                if not p.is_floating_point():
                    raise TypeError(f"the parameter must be floating, got {p.dtype}")
                lo = _as_bound(group["lower"], p, "lower")
                hi = _as_bound(group["upper"], p, "upper")
                if lo is not None and hi is not None and bool((lo > hi).any()):
                    raise ValueError("`lower` must be <= `upper` everywhere")
                self.state[p]["lower"] = lo
                self.state[p]["upper"] = hi
                self.state[p]["cap"] = self._exponent_cap(lo, hi, p)

    @staticmethod
    def _exponent_cap(
        lo: Optional[torch.Tensor], hi: Optional[torch.Tensor], p: torch.Tensor
    ) -> Optional[torch.Tensor]:
        if lo is None or hi is None:
            return None
        beta = 1.0 / p[0].numel()
        return torch.log1p(torch.maximum(lo.abs(), hi.abs()) / beta)

    #: λ before the first step.
    _lam0: float
    #: The state entry the parameter holds after a step: the next gradient point.
    _point: str

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        n = p.shape[0]
        # Per-sample counters and λ in float64 (B = t(t+1)/2 outgrows float32's 24-bit mantissa).
        sdt = widest_float(p.device)
        state["step"] = torch.zeros(n, dtype=sdt, device=p.device)
        state["lam"] = torch.full((n,), self._lam0, dtype=sdt, device=p.device)
        state["x"] = p.detach().clone()
        state["y"] = p.detach().clone()
        state.setdefault("active", torch.ones(n, dtype=torch.bool, device=p.device))

    def _update(
        self, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The method's step for one parameter: its new state entries, every sample updated."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Any = None) -> Optional[torch.Tensor]:
        """One step for every parameter with a ``.grad``; frozen samples keep state and value.

        Args:
            closure: optional callable that re-evaluates the loss (run with grad enabled).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "step" not in state:
                    self._init_state(p, state)
                self._commit(state, self._update(p.grad.detach().to(p.dtype), state, group))
                p.copy_(state[self._point])
        return loss

    def set_active(self, mask: torch.Tensor, param: Optional[torch.Tensor] = None) -> None:
        """Freeze samples: where ``mask`` (N,) is False, :meth:`step` leaves state and value alone.

        Args:
            mask: (N,) bool tensor on the parameter's device.
            param: the parameter it applies to (default: every parameter).
        """
        for group in self.param_groups:
            for p in group["params"]:
                if param is not None and p is not param:
                    continue
                if mask.shape != (p.shape[0],):
                    raise ValueError(
                        f"`mask` must have shape ({p.shape[0]},), got {tuple(mask.shape)}"
                    )
                self.state[p]["active"] = mask.to(device=p.device, dtype=torch.bool)

    def output(self, param: torch.Tensor) -> torch.Tensor:
        """The averaged iterate y of ``param`` (a copy, (N, …)); ``param`` itself before a step."""
        state = self.state.get(param, {})
        if "y" not in state:
            return param.detach().clone()
        return state["y"].clone()

    def steps(self, param: torch.Tensor) -> torch.Tensor:
        """Steps taken per sample, (N,) (frozen samples do not advance)."""
        state = self.state.get(param, {})
        if "step" not in state:
            return torch.zeros(param.shape[0], dtype=torch.long, device=param.device)
        return state["step"].long()

    @staticmethod
    def _commit(state: dict[str, Any], updates: dict[str, torch.Tensor]) -> None:
        active = state["active"]
        for key, new in updates.items():
            old = state[key]
            mask = active.reshape((-1,) + (1,) * (new.dim() - 1))
            state[key] = torch.where(mask, new, old)


class AdaExpGrad(_ExpGradBase):
    """Adaptive exponentiated gradient (REFERENCE §4), per sample.

    λ₀ = 1. Step t: g = ∇F at x; λ += ‖g‖²_∞; α = η·√λ; x ← prox(x, G = g, s = 1);
    y ← x/t + (1 − 1/t)·y. After :meth:`step` the parameter holds x (the next gradient point);
    :meth:`output` returns y.

    Args:
        params: the perturbation tensor(s), each (N, …) with samples along dim 0.
        eta: step-size scale η > 0.
        l1, l2: weights of the regulariser l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ (the CEM paper's β‖δ‖₁ + ‖δ‖²₂
            is l1 = β, l2 = 2).
        lower, upper: elementwise bounds on δ, scalars or tensors broadcastable to the parameter.
    """

    _lam0 = 1.0
    _point = "x"

    def _update(
        self, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        beta = 1.0 / g[0].numel()
        t = state["step"] + 1
        g_inf = g.abs().reshape(g.shape[0], -1).amax(dim=1).to(t.dtype)
        lam = state["lam"] + g_inf**2
        alpha = group["eta"] * torch.sqrt(lam)
        x = exp_grad_prox(
            state["x"], g, alpha, group["l1"], group["l2"], torch.ones_like(t), beta,
            state["lower"], state["upper"], state["cap"],
        )  # fmt: skip
        y = x / _per_sample(t, x) + _per_sample(1.0 - 1.0 / t, x) * state["y"]
        return {"step": t, "lam": lam, "x": x, "y": y}


class AoExpGrad(_ExpGradBase):
    """Adaptive optimistic exponentiated gradient (REFERENCE §4), per sample.

    λ₀ = 0, h₀ = 0, B₀ = 0. Step t: B += t; g = ∇F at y; λ += (t·‖g − h‖_∞)²;
    α = η·√λ/√log(d+1) (``alpha_min`` while λ = 0); G = t·g − t·h + (t+1)·g;
    x ← prox(x, G, s = t+1); y ← (t/B)·x + ((B − t)/B)·y; h ← g. After :meth:`step` the parameter
    holds y (the next gradient point), which is also what :meth:`output` returns.

    Args:
        params: the perturbation tensor(s), each (N, …) with samples along dim 0.
        eta: step-size scale η > 0.
        l1, l2: weights of the regulariser l1·‖δ‖₁ + (l2/2)·‖δ‖²₂.
        lower, upper: elementwise bounds on δ, scalars or tensors broadcastable to the parameter.
        alpha_min: the α used while λ = 0 (every gradient so far equal to zero), as the older
            implementation does. Then G = 0 and the step moves x to the regulariser's minimum.
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
        alpha_min: float = 1e-6,
    ) -> None:
        if not alpha_min > 0:
            raise ValueError(f"`alpha_min` must be > 0, got {alpha_min}")
        self.alpha_min = float(alpha_min)
        super().__init__(params, eta=eta, l1=l1, l2=l2, lower=lower, upper=upper)

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        super()._init_state(p, state)
        state["B"] = torch.zeros_like(state["step"])
        state["h"] = torch.zeros_like(p)

    def _update(
        self, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        d = g[0].numel()
        beta = 1.0 / d
        t = state["step"] + 1
        B = state["B"] + t
        h = state["h"]
        gh_inf = (g - h).abs().reshape(g.shape[0], -1).amax(dim=1).to(t.dtype)
        lam = state["lam"] + (t * gh_inf) ** 2
        alpha = group["eta"] * torch.sqrt(lam) / math.sqrt(math.log(d + 1))
        alpha = torch.where(alpha > 0, alpha, torch.full_like(alpha, self.alpha_min))
        # Keep s·l2/α finite even for a subnormal α.
        alpha = torch.clamp(alpha, min=math.sqrt(torch.finfo(g.dtype).tiny))
        t_ = _per_sample(t, g)
        G = t_ * g - t_ * h + (t_ + 1.0) * g
        x = exp_grad_prox(
            state["x"], G, alpha, group["l1"], group["l2"], t + 1.0, beta,
            state["lower"], state["upper"], state["cap"],
        )  # fmt: skip
        y = _per_sample(t / B, x) * x + _per_sample((B - t) / B, x) * state["y"]
        return {"step": t, "B": B, "lam": lam, "x": x, "y": y, "h": g}
