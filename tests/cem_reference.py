"""An independent yardstick for CEM: FISTA with a per-sample search over c, as in the CEM paper.

"Explanations based on the Missing" (arXiv 1802.07623), §3: projected FISTA on
g(δ) = c·max(a(δ), −κ) + ‖δ‖²₂ (+ γ·AE term) with the shrinkage S_β of the ‖δ‖₁ term, step
α_k = α₀·(1 − k/K)^½, momentum k/(k+3), the best δ kept per sample: the smallest β‖δ‖₁ + ‖δ‖²₂
among iterates whose attack holds with margin κ. c starts at ``c_init``, ×10 until a success,
then bisection. PP: δ ⊆ x, starting from nothing (δ₀ = 0); PN: x + δ ≥ x inside [0, 1] (ink is
only added). Written from the paper in plain float64 torch, sharing no code with foxcem.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

Model = Callable[[torch.Tensor], torch.Tensor]


def _attack(scores: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    f_t = scores.gather(1, target[:, None])[:, 0]
    others = scores.clone()
    others.scatter_(1, target[:, None], float("-inf"))
    top_other = others.max(dim=1).values
    return top_other - f_t if mode == "PP" else f_t - top_other


def fista_cem(
    model: Model,
    x: torch.Tensor,
    mode: str,
    kappa: float,
    beta: float = 0.1,
    gamma: float = 0.0,
    autoencoder: Optional[Model] = None,
    c_init: float = 10.0,
    c_steps: int = 9,
    iterations: int = 1000,
    lr: float = 1e-2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(δ, found) per sample: the best feasible δ (N, …) found, and whether one was found."""
    x = x.double()
    n = x.shape[0]
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    lo = torch.zeros_like(x)
    hi = x.clone() if mode == "PP" else 1.0 - x
    c = torch.full((n,), c_init, dtype=torch.float64)
    c_lo = torch.zeros(n, dtype=torch.float64)
    c_hi = torch.full((n,), 1e10, dtype=torch.float64)
    best = torch.zeros_like(x)
    best_en = torch.full((n,), float("inf"), dtype=torch.float64)
    shape = (-1,) + (1,) * (x.dim() - 1)

    def smooth_loss(d: torch.Tensor) -> torch.Tensor:
        seen = d if mode == "PP" else x + d
        loss = c * torch.clamp(_attack(model(seen), target, mode), min=-kappa)
        loss = loss + d.pow(2).flatten(1).sum(1)
        if gamma > 0 and autoencoder is not None:
            loss = loss + gamma * (autoencoder(seen) - seen).pow(2).flatten(1).sum(1)
        return loss

    for _ in range(c_steps):
        delta = torch.zeros_like(x)
        slack = torch.zeros_like(x)
        success = torch.zeros(n, dtype=torch.bool)
        for k in range(iterations):
            step = lr * (1.0 - k / iterations) ** 0.5
            point = slack.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(smooth_loss(point).sum(), point)
            z = slack - step * grad
            shrunk = torch.sign(z) * torch.clamp(z.abs() - beta, min=0.0)
            new = torch.minimum(torch.maximum(shrunk, lo), hi)
            slack = new + k / (k + 3.0) * (new - delta)
            slack = torch.minimum(torch.maximum(slack, lo), hi)
            delta = new
            with torch.no_grad():
                seen = delta if mode == "PP" else x + delta
                feasible = _attack(model(seen), target, mode) <= -kappa
                en = beta * delta.abs().flatten(1).sum(1) + delta.pow(2).flatten(1).sum(1)
                better = feasible & (en < best_en)
                best_en = torch.where(better, en, best_en)
                best = torch.where(better.reshape(shape), delta, best)
                success |= feasible
        c_hi = torch.where(success, torch.minimum(c_hi, c), c_hi)
        c_lo = torch.where(success, c_lo, torch.maximum(c_lo, c))
        c = torch.where(c_hi < 1e9, (c_lo + c_hi) / 2, c * 10)
    return best, torch.isfinite(best_en)
