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
  has: at IBM's γ = 100 (κ 10), on IBM's test images 0–15, with a final pass that only drops
  entries, l1 = 5 keeps 92 pixels per PP, 30
  keeps 37, 50 keeps 47 and 100 keeps 57 (past 30 the lockstep shrinking returns). PN's l1 grows
  too, ``50 + γ/2``: at γ = 100 on IBM's images 0–31, l1 = 50 adds 49 pixels per PN, 100 adds 45,
  200 adds 43.
* After the run, a sparsification pass (:mod:`foxcem.cem.sparsify`) drops the smallest entries of
  each feasible δ while it stays feasible, moving the dropped mass onto the kept entries where the
  plain drop would break the margin (‖δ‖₁ never grows). On IBM's test images 0–7 (PN, defaults)
  it leaves 13 pixels per PN where dropping alone left 28, and 15 for the black-box estimate
  where dropping alone left 52; at IBM's settings (images 0–63) the PP keeps 21 pixels (37 with
  dropping alone) and the PN adds 19 (43).
* ``eta`` = 1 scales AoExpGrad's adaptive step, which needs no tuning to the gradient's size.
* ``num_iter`` × ``c_steps`` = 200 × 5 optimizer steps: enough for every image of both models;
  the search's last round typically halves c once more without finding a sparser δ.

Large images (more than :data:`LARGE_INPUT` pixels, e.g. 224×224) get defaults sized to their
cost (:func:`size_defaults`), so that on 2 CPU cores a batch of 4 takes minutes, not hours:

* White box: 100 × 3 steps (a ResNet-18 forward and backward pass of 4 images takes about 0.3 s
  there), and l1, l2 scaled by 784 / (H·W): ‖δ‖₁ sums over every pixel, so the same explanation
  drawn at 8× the resolution costs 64× the regulariser while the model's answer is unchanged;
  the weights above are per 28×28 image. Unscaled, IBM's MNIST model upsampled to 224×224 finds
  no PN in 100 × 3 steps (0 of 4 images; 4 of 4 scaled).
* Black box: the URV estimate's variance grows with the number of values estimated and every
  direction is a forward pass of the batch, so δ is explained on a 14×14 grid of cells
  (``segments="grid:14"``), with 20 directions and 80 × 3 steps (about 5,000 forward passes
  per image). On the upsampled IBM model a 28×28 grid with 20 directions and 40 × 3 steps found
  no PN (0 of 4), the 14×14 grid with 80 × 3 steps 4 of 4. On a ResNet-18 the PN search from
  δ = 0 stalls short of κ (0 of 4); ``pn_start="auto"`` (:mod:`foxcem.cem.restart`) searches
  again from the box's far corner and finds 4 of 4 (dense PNs, twice the model passes).

``benchmarks/cem_large_inputs.py`` measures time and success with them on IBM's MNIST model
upsampled to 224×224 and on a ResNet-18.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GAMMA_L1",
    "LARGE_DEFAULTS",
    "LARGE_INPUT",
    "MODE_DEFAULTS",
    "mode_defaults",
    "size_defaults",
]

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


#: Pixels (H × W) from which an image is large (more than 64 × 64).
LARGE_INPUT = 64 * 64
#: The pixel count the per-mode l1, l2 are meant for (28 × 28).
REFERENCE_PIXELS = 28 * 28
#: The step and estimator defaults of large images, per gradient source.
LARGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "autograd": {"num_iter": 100, "c_steps": 3},
    "urv": {"num_iter": 80, "c_steps": 3, "num_directions": 20, "segments": "grid:14"},
}


def size_defaults(
    sample_shape: tuple[int, ...],
    gradient: str,
    mode: str,
    gamma: float = 0.0,
    channels_first: bool = True,
    given: Any = (),
) -> dict[str, Any]:
    """The defaults that depend on the input's size, for the options not in ``given``: for an
    image (C, H, W) (or (H, W, C) with ``channels_first=False``) of more than
    :data:`LARGE_INPUT` pixels, :data:`LARGE_DEFAULTS` of ``gradient`` and, where δ lives on
    pixels (no ``segments``), l1 and l2 scaled by :data:`REFERENCE_PIXELS` / (H·W); nothing for
    tables, sequences and small images (see the module docstring)."""
    if len(sample_shape) != 3 or gradient not in LARGE_DEFAULTS:
        return {}
    height, width = sample_shape[1:] if channels_first else sample_shape[:2]
    if height * width <= LARGE_INPUT:
        return {}
    sized = dict(LARGE_DEFAULTS[gradient])
    if "segments" not in given and "segments" not in sized:
        scale = REFERENCE_PIXELS / (height * width)
        base = mode_defaults(mode, gamma)
        sized.update(l1=base["l1"] * scale, l2=base["l2"] * scale)
    return {name: value for name, value in sized.items() if name not in given}
