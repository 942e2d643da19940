"""The contract every method follows and what all of them share.

* :mod:`~foxcem.core.explainer`: the :class:`Explainer` base class, result checks;
* :mod:`~foxcem.core.checks`: argument checks that raise ``TypeError``/``ValueError`` naming
  the argument;
* :mod:`~foxcem.core.model_state`: the guard that leaves a model exactly as it was;
* :mod:`~foxcem.core.registry`: explainers by name;
* :mod:`~foxcem.core.seeding`: seeded randomness that leaves the caller's streams alone;
* :mod:`~foxcem.core.progress`: progress bars.

Nothing here imports from the rest of the package.
"""

from foxcem.core.explainer import (
    Explainer,
    predict_scores,
    split_convergence_delta,
    validate_result,
)
from foxcem.core.model_state import gradients_enabled, preserve_model_state
from foxcem.core.registry import (
    available_explainers,
    get_explainer,
    get_explainer_class,
    register_explainer,
    resolve_explainer,
)

__all__ = [
    "Explainer",
    "available_explainers",
    "get_explainer",
    "get_explainer_class",
    "gradients_enabled",
    "predict_scores",
    "preserve_model_state",
    "register_explainer",
    "resolve_explainer",
    "split_convergence_delta",
    "validate_result",
]
