"""CEMExplainer's defaults per mode, and why.

They were chosen on two models, neither tuned for: the small digits CNN of the demo (8×8 inputs)
and IBM's MNIST classifier and autoencoder from the original CEM code (28×28), with inputs in
[0, 1] and logits as scores. With them, on 64 test images each, every PN flips the class and every
PP keeps it, with and without IBM's autoencoder term; the explanations are at least as sparse as a
float64 FISTA reference with the paper's c search, and on IBM's two published examples sparser
than IBM's own (``benchmarks/cem_quality.py`` measures all of this).

* ``c`` is only where the per-sample search over c starts (``c_steps`` rounds: ×10 until the
  first success, then bisection), as in IBM's and alibi's code: 10.
* ``K`` (κ) is the logit margin asked for: 5 for a clear PN flip, 2 for a PP that keeps the class
  without needing most of the input.
* ``l1``, ``l2`` weigh l1·‖δ‖₁ + (l2/2)·‖δ‖²₂. Scale convention: they are weights *in the
  objective*, applied exactly by the ExpGrad proximal step. IBM's FISTA instead shrinks by β once
  per step of size lr: its effective l1 is β/lr_k, i.e. 0.1/0.01 = 10 at the first step, growing
  without bound as lr_k = lr·(1 − k/K)^½ decays, while the paper's ‖δ‖²₂ is l2 = 2. So β = 0.1 means
  an l1 of 10 and more here, not 0.1. PN's base l1 is 50: with an autoencoder term (γ = 100),
  whose gradient reaches every pixel, a smaller l1 lets many faint pixels in (l1 = 10 gives 40
  pixels on IBM's image 340, where IBM's PN has 13; 50 gives 11); without one, l1 hardly matters
  for PN. PP
  starts from the whole input and the c search then lowers c while the class holds; there l1 = 5
  keeps the fewest pixels on both models (larger values make every entry shrink in lockstep until
  the class is lost, and the best PP is then a faint copy of the whole input). With an autoencoder
  term the PP's l1 grows with its weight: ``l1 = 5 + γ/4`` (:func:`mode_defaults`). The AE term's
  gradient grows with γ and, unbalanced, fills the PP with the faint strokes a digit-like image
  has: at IBM's γ = 100 (κ 10), on IBM's test images 0–15, l1 = 5 keeps 92 pixels per PP, 30
  keeps 37, 50 keeps 47 and 100 keeps 57 (past 30 the lockstep shrinking returns). PN's l1 grows
  too, ``50 + γ/2``: at γ = 100 on IBM's images 0–31, l1 = 50 adds 49 pixels per PN, 100 adds 45,
  200 adds 43.
* After the run, a sparsification pass (:mod:`foxcem.cem.sparsify`) drops the smallest entries of
  each feasible δ while it stays feasible.
* ``eta`` = 1 scales AoExpGrad's adaptive step, which needs no tuning to the gradient's size.
* ``num_iter`` × ``c_steps`` = 200 × 5 optimizer steps: enough for every image of both models;
  the search's last round typically halves c once more without finding a sparser δ.
"""

from __future__ import annotations

__all__ = ["GAMMA_L1", "MODE_DEFAULTS", "mode_defaults"]

MODE_DEFAULTS: dict[str, dict[str, float]] = {
    "PN": {"c": 10.0, "K": 5.0, "l1": 50.0, "l2": 0.5, "eta": 1.0, "num_iter": 200, "c_steps": 5},
    "PP": {"c": 10.0, "K": 2.0, "l1": 5.0, "l2": 0.5, "eta": 1.0, "num_iter": 200, "c_steps": 5},
}

#: How much l1 grows per unit of the autoencoder weight γ, per mode.
GAMMA_L1: dict[str, float] = {"PP": 0.25, "PN": 0.5}


def mode_defaults(mode: str, gamma: float = 0.0) -> dict[str, float]:
    """The defaults for ``mode`` with an autoencoder term of weight ``gamma``: l1 grows with γ,
    ``5 + γ/4`` for PP and ``50 + γ/2`` for PN (see the module docstring); everything else is
    :data:`MODE_DEFAULTS`."""
    defaults = dict(MODE_DEFAULTS[mode])
    if isinstance(gamma, (int, float)) and not isinstance(gamma, bool):
        if gamma > 0 and gamma != float("inf"):
            defaults["l1"] = defaults["l1"] + gamma * GAMMA_L1[mode]
    return defaults
