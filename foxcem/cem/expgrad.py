"""The machinery every ExpGrad optimizer shares: a ``torch.optim.Optimizer`` with per-sample
state, bounds, the active mask, the exactly sparse output, and a lossless ``state_dict``.

Subclasses implement ``_update`` (the method's step for one parameter), as
:class:`~foxcem.cem.AdaExpGrad` and :class:`~foxcem.cem.AoExpGrad` do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Optional

import torch

from foxcem.cem.bounds import BoundLike, broadcast_bound
from foxcem.cem.prox import (
    flush_subnormal,
    mirror,
    per_sample,
    prox_from_mirror,
    shrink_coefficients,
)
from foxcem.cem.step_hooks import light_profile_hook_step
from foxcem.cem.wright_omega import widest_float
from foxcem.core.checks import check_bool, check_finite_float

__all__ = ["ExpGradOptimizer", "BoundLike", "compiled_prox"]

_COMPILED: dict[str, Any] = {}


def compiled_prox() -> Any:
    """:func:`~foxcem.cem.prox.prox_from_mirror` under ``torch.compile(fullgraph=True)``,
    built once per process."""
    if "prox" not in _COMPILED:
        _COMPILED["prox"] = torch.compile(prox_from_mirror, fullgraph=True, dynamic=True)
    return _COMPILED["prox"]


def _as_bound(
    value: BoundLike, param: torch.Tensor, dtype: torch.dtype, name: str
) -> Optional[torch.Tensor]:
    if value is None:
        return None
    bound = flush_subnormal(torch.as_tensor(value, device=param.device).to(dtype))
    return broadcast_bound(bound, param.shape, name, "broadcastable to the parameter's")


def _state_dtype(param: torch.Tensor) -> torch.dtype:
    """The dtype of x, y, h: the parameter's, but at least float32."""
    return torch.float32 if param.dtype in (torch.float16, torch.bfloat16) else param.dtype


def check_saved_state(saved: Any, param: torch.Tensor) -> None:
    """Saved per-sample state fits ``param`` (N, …): (N,) counters, x/y/h of its shape; a state
    of another number of samples would load and then fail at ``step()``."""
    if not isinstance(saved, dict):
        raise ValueError(f"`state_dict` state must be a dict per parameter, got {type(saved)}")
    n = param.shape[0]
    for key, value in saved.items():
        if not isinstance(value, torch.Tensor):
            continue
        shaped = key in ("x", "y", "h", "lower", "upper", "cap")
        expected = tuple(param.shape) if shaped else (n,)
        if tuple(value.shape) != expected:
            raise ValueError(
                f"`state_dict` holds state {key!r} of shape {tuple(value.shape)} for a parameter "
                f"of shape {tuple(param.shape)} (expected {expected}): it was saved for another "
                "number of samples or another δ shape"
            )


class ExpGradOptimizer(torch.optim.Optimizer):
    """Shared machinery of the ExpGrad optimizers: hyper-parameters, bounds, per-sample state,
    the active mask and the sparse output. Subclasses implement :meth:`_update`.

    Args:
        params: the perturbation tensor(s), each (N, …) with samples along dim 0.
        eta: step-size scale η > 0.
        l1, l2: weights of the regulariser l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ (the CEM paper's β‖δ‖₁ + ‖δ‖²₂
            is l1 = β, l2 = 2).
        lower, upper: elementwise bounds on δ, scalars or tensors broadcastable to the parameter.
        zero_tol: entries of the output with magnitude at most ``zero_tol`` × the sample's
            largest bound magnitude (or × 1 without bounds) are exactly 0. The averaged iterate
            otherwise keeps faint traces of every entry it ever touched; 0 turns this off.
        compile: ``torch.compile`` the proximal map (equal to the eager one to float rounding).
    """

    #: λ before the first step.
    _lam0: float = 0.0
    #: The state entry the parameter holds after a step: the next gradient point.
    _point: str = "x"

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        eta: float = 1.0,
        l1: float = 0.5,
        l2: float = 0.5,
        lower: BoundLike = None,
        upper: BoundLike = None,
        zero_tol: float = 1e-3,
        compile: bool = False,
    ) -> None:
        #: the proximal map, compiled with ``torch.compile`` (fullgraph) when ``compile`` is set:
        #: its ~50 small operations fused into a few kernels.
        self._prox_fn = compiled_prox() if check_bool(compile, "compile") else prox_from_mirror
        #: per parameter: (zero_tol, bound_scale, the per-sample zero limit derived from them).
        self._zero_limits: dict[int, tuple[float, torch.Tensor, torch.Tensor]] = {}
        defaults = dict(
            eta=check_finite_float(eta, "eta", minimum=0.0, strict=True),
            l1=check_finite_float(l1, "l1", minimum=0.0),
            l2=check_finite_float(l2, "l2", minimum=0.0),
            lower=lower,
            upper=upper,
            zero_tol=check_finite_float(zero_tol, "zero_tol", minimum=0.0),
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (its own ``eta``, ``l1``, ``l2``, bounds optional); checks its tensors."""
        for p in (
            [param_group["params"]]
            if isinstance(param_group["params"], torch.Tensor)
            else (param_group["params"])
        ):
            if not isinstance(p, torch.Tensor) or p.dim() < 1:
                raise ValueError("each parameter must be a tensor with a sample dimension (N, ...)")
            if not p.is_floating_point():
                raise TypeError(f"each parameter must be floating, got {p.dtype}")
        for key in ("eta", "l1", "l2", "zero_tol"):
            if key in param_group:
                strict = key == "eta"
                param_group[key] = check_finite_float(param_group[key], key, 0.0, strict)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:  # bounds checked now, not at the first step
            lo = _as_bound(group["lower"], p, _state_dtype(p), "lower")
            hi = _as_bound(group["upper"], p, _state_dtype(p), "upper")
            if lo is not None and hi is not None and bool((lo > hi).any()):
                raise ValueError("`lower` must be <= `upper` everywhere")

    # ------------------------------------------------------------------------------ state
    def _init_state(self, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        n = p.shape[0]
        work = _state_dtype(p)
        # Per-sample counters and λ in float64 (B = t(t+1)/2 outgrows float32's 24-bit mantissa).
        sdt = widest_float(p.device)
        lo = _as_bound(group["lower"], p, work, "lower")
        hi = _as_bound(group["upper"], p, work, "upper")
        start = flush_subnormal(p.detach().to(work))
        if lo is not None:
            start = torch.maximum(start, lo)
        if hi is not None:
            start = torch.minimum(start, hi)
        state["step"] = torch.zeros(n, dtype=sdt, device=p.device)
        state["lam"] = torch.full((n,), self._lam0, dtype=sdt, device=p.device)
        state["x"] = start.clone()
        state["y"] = start.clone()
        state["lower"], state["upper"] = lo, hi
        magnitude = self._bound_magnitude(lo, hi, p)
        state["bound_scale"] = magnitude.reshape(n, -1).amax(dim=1).to(sdt)
        beta = 1.0 / p[0].numel()
        state["cap"] = None if lo is None or hi is None else torch.log1p(magnitude / beta)
        state.setdefault("active", torch.ones(n, dtype=torch.bool, device=p.device))
        state["invalid"] = torch.zeros(n, dtype=torch.bool, device=p.device)

    @staticmethod
    def _bound_magnitude(
        lo: Optional[torch.Tensor], hi: Optional[torch.Tensor], p: torch.Tensor
    ) -> torch.Tensor:
        if lo is None and hi is None:
            return torch.ones(p.shape, dtype=_state_dtype(p), device=p.device)
        if lo is None or hi is None:
            return (lo if hi is None else hi).abs()  # type: ignore[union-attr]
        return torch.maximum(lo.abs(), hi.abs())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`, keeping every state tensor's dtype (torch's default
        casts them to the parameter's dtype, which would turn the bool mask and the float64
        counters into floats of the parameter's precision)."""
        params = [p for group in self.param_groups for p in group["params"]]
        for index, saved in state_dict.get("state", {}).items():
            if not 0 <= int(index) < len(params):
                raise ValueError(f"`state_dict` holds state for parameter {index}, which is absent")
            check_saved_state(saved, params[int(index)])
        super().load_state_dict(state_dict)
        for index, saved in state_dict["state"].items():
            p = params[int(index)]
            for key, value in saved.items():
                if isinstance(value, torch.Tensor):
                    self.state[p][key] = value.detach().to(device=p.device).clone()

    def _update(
        self, g: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The method's step for one parameter: its new state entries, every sample updated."""
        raise NotImplementedError

    #: torch.optim's step wrapper, lighter (:mod:`foxcem.cem.step_hooks`).
    profile_hook_step = staticmethod(light_profile_hook_step)

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
                    self._init_state(p, state, group)
                g = p.grad.detach().to(state["x"].dtype)
                if g.device.type != "cpu" or not math.isfinite(float(g.sum())):
                    # A NaN/inf gradient would poison the sample's state: the sample is frozen
                    # and flagged instead (no host sync; see :meth:`invalid`). On the CPU the
                    # check above is free (a finite sum: every entry finite; a sum that
                    # overflows only takes this path for nothing).
                    finite = torch.isfinite(g).reshape(g.shape[0], -1).all(dim=1)
                    state["invalid"] = state["invalid"] | ~finite
                    state["active"] = state["active"] & finite
                    # A frozen sample's update is discarded (:meth:`_commit`); zeroing its
                    # NaN/inf entries keeps the arithmetic finite.
                    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                self._commit(state, self._update(flush_subnormal(g), state, group))
                p.copy_(self._sparse(state[self._point], state, group, p))
        return loss

    def _sparse(
        self,
        value: torch.Tensor,
        state: dict[str, Any],
        group: dict[str, Any],
        param: torch.Tensor,
    ) -> torch.Tensor:
        tol = float(group.get("zero_tol", 0.0))
        if tol <= 0:
            return value
        scale = state["bound_scale"]
        cached = self._zero_limits.get(id(param))
        if cached is None or cached[0] != tol or cached[1] is not scale:
            # Built once per tolerance and bound: two launches fewer per step.
            cached = (tol, scale, per_sample(scale * tol, value))
            self._zero_limits[id(param)] = cached
        return value.masked_fill(value.abs() <= cached[2], 0.0)

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
        """The averaged iterate y of ``param`` (a copy, (N, …), exactly sparse below
        ``zero_tol``); ``param`` itself before a step."""
        state = self.state.get(param, {})
        if "y" not in state:
            return param.detach().clone()
        group = next(g for g in self.param_groups if any(p is param for p in g["params"]))
        return self._sparse(state["y"], state, group, param).to(param.dtype)

    def invalid(self, param: torch.Tensor) -> torch.Tensor:
        """(N,) bool: samples that received a NaN/inf gradient (frozen since then)."""
        state = self.state.get(param, {})
        if "invalid" not in state:
            return torch.zeros(param.shape[0], dtype=torch.bool, device=param.device)
        return state["invalid"].clone()

    def steps(self, param: torch.Tensor) -> torch.Tensor:
        """Steps taken per sample, (N,) (frozen samples do not advance)."""
        state = self.state.get(param, {})
        if "step" not in state:
            return torch.zeros(param.shape[0], dtype=torch.long, device=param.device)
        return state["step"].long()

    @staticmethod
    def _commit(state: dict[str, Any], updates: dict[str, torch.Tensor]) -> None:
        active = state["active"]
        if active.device.type == "cpu" and bool(active.all()):
            # Every sample moves: no masking. (The check is free on the CPU; on a GPU it would
            # wait for the device, so the masked form below runs there.)
            state.update(updates)
            return
        for key, new in updates.items():
            old = state[key]
            mask = active.reshape((-1,) + (1,) * (new.dim() - 1))
            state[key] = torch.where(mask, new, old)

    def _prox(
        self,
        state: dict[str, Any],
        group: dict[str, Any],
        z: torch.Tensor,
        s_over_alpha: torch.Tensor,
    ) -> torch.Tensor:
        """The proximal step from the mirror point z = mirror(x) − G/α (N, …), with the
        regulariser's scale over the step size s/α per sample, (N, 1, …, 1) in z's dtype."""
        shrink, b = shrink_coefficients(s_over_alpha, group["l1"], group["l2"])
        beta = 1.0 / math.prod(z.shape[1:])
        return self._prox_fn(z, shrink, b, beta, state["lower"], state["upper"], state["cap"])

    @staticmethod
    def _mirror(state: dict[str, Any]) -> torch.Tensor:
        """mirror(x) of the current point x."""
        x = state["x"]
        return mirror(x, 1.0 / math.prod(x.shape[1:]))
