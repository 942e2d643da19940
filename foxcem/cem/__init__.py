"""Native torch Contrastive Explanation Method (pertinent positives and negatives), batched.

Building blocks, composable like a PyTorch training loop:

- :class:`CEMLoss`: the per-sample CEM loss (PP / PN, hinge or smooth, optional autoencoder);
- :class:`AdaExpGrad`, :class:`AoExpGrad`: exponentiated-gradient optimizers with the elastic-net
  proximal step, all state per sample;
- :class:`AutogradGradient` (white box) and :class:`URVGradientEstimator` (black box, all samples
  × directions in batched forward passes);
- :class:`ExplanationGenerator`: the loop, with savepoints, history, early stop;
- :class:`CEMExplainer`: the same behind foxcem's ``Explainer`` contract;
- :func:`wright_omega`: ω(u) = W(eᵘ), used by the proximal step.
"""

from foxcem.cem.explainer import CEMExplainer
from foxcem.cem.generator import ExplanationGenerator
from foxcem.cem.gradients import AutogradGradient, URVGradientEstimator
from foxcem.cem.loss import CEMEvaluation, CEMLoss
from foxcem.cem.optimizers import AdaExpGrad, AoExpGrad, exp_grad_prox
from foxcem.cem.wright_omega import wright_omega

__all__ = [
    "AdaExpGrad",
    "AoExpGrad",
    "AutogradGradient",
    "CEMEvaluation",
    "CEMExplainer",
    "CEMLoss",
    "ExplanationGenerator",
    "URVGradientEstimator",
    "exp_grad_prox",
    "wright_omega",
]
