"""Native torch Contrastive Explanation Method (pertinent positives and negatives), batched.

Building blocks, composable like a PyTorch training loop:

- :class:`CEMLoss`: the per-sample CEM loss (PP / PN, hinge or smooth, optional autoencoder),
  with the box δ lives in from :mod:`foxcem.cem.bounds` (feature range, no-information value);
- :class:`AdaExpGrad`, :class:`AoExpGrad`: exponentiated-gradient optimizers with the elastic-net
  proximal step (:func:`exp_grad_prox`), all state per sample;
- gradient sources, subclasses of :class:`GradientSource`: :class:`AutogradGradient` (white box)
  and :class:`URVGradientEstimator` (black box, all samples × directions in batched passes);
- :class:`ExplanationGenerator`: the loop, with a per-sample search over c (:class:`CSearch`),
  the best feasible iterate, savepoints, history, early stop;
- :class:`CEMExplainer`: the same behind foxcem's ``Explainer`` contract;
- :func:`contrast_tables`: table rows' PN and PP as readable per-row tables;
- :func:`wright_omega`: ω(u) = W(eᵘ), used by the proximal step.

Extension points: any callable ``loss(delta) -> values`` (:class:`PerSampleLoss`) works with both
gradient sources; subclass :class:`GradientSource` for a new gradient; any ``torch.optim``
optimizer works in the generator.
"""

from foxcem.cem.bounds import fit_no_info_value
from foxcem.cem.explainer import CEMExplainer
from foxcem.cem.generator import ExplanationGenerator
from foxcem.cem.gradient_source import AutogradGradient, GradientSource, PerSampleLoss
from foxcem.cem.lime import LimeGradient, LimeLoss, SuperpixelLimeLoss
from foxcem.cem.loss import CEMEvaluation, CEMLoss
from foxcem.cem.optimizers import AdaExpGrad, AoExpGrad, ExpGradOptimizer
from foxcem.cem.prox import exp_grad_prox
from foxcem.cem.search import CSearch
from foxcem.cem.table import ContrastTable, contrast_tables
from foxcem.cem.urv import URVGradientEstimator
from foxcem.cem.wright_omega import wright_omega

__all__ = [
    "AdaExpGrad",
    "AoExpGrad",
    "AutogradGradient",
    "CEMEvaluation",
    "CEMExplainer",
    "CEMLoss",
    "CSearch",
    "ContrastTable",
    "ExpGradOptimizer",
    "ExplanationGenerator",
    "GradientSource",
    "LimeGradient",
    "LimeLoss",
    "SuperpixelLimeLoss",
    "PerSampleLoss",
    "URVGradientEstimator",
    "contrast_tables",
    "exp_grad_prox",
    "fit_no_info_value",
    "wright_omega",
]
