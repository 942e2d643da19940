"""Faithfulness and sparsity metrics for any attribution.

* :func:`deletion_curve` / :func:`insertion_curve` and their AUCs: the model's score as the most
  important features are removed (inserted) first;
* :func:`completeness_gap`: ``Σ attr − (f_t(x) − f_t(x'))``;
* :func:`gini_index`, :func:`near_zero_fraction`, :func:`sparsity`.

Every metric that runs the model does so under :func:`~foxcem.preserve_model_state` (eval mode,
state restored, global RNG untouched) and without autograd. The Quantus adapter is
:func:`foxcem.integrations.quantus.quantus_explain_func`.
"""

import importlib
from typing import Any

from foxcem.metrics.completeness import completeness_gap
from foxcem.metrics.perturbation import (
    PerturbationCurve,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
    perturbation_curve,
)
from foxcem.metrics.sparsity import gini_index, near_zero_fraction, sparsity

__all__ = [
    "PerturbationCurve",
    "perturbation_curve",
    "deletion_curve",
    "insertion_curve",
    "deletion_auc",
    "insertion_auc",
    "completeness_gap",
    "gini_index",
    "near_zero_fraction",
    "sparsity",
    "quantus_explain_func",
]


def __getattr__(name: str) -> Any:
    # The Quantus adapter moved to the integrations layer; its old path keeps working.
    if name == "quantus_explain_func":
        return importlib.import_module("foxcem.integrations.quantus").quantus_explain_func
    raise AttributeError(f"module 'foxcem.metrics' has no attribute {name!r}")
