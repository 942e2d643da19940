"""foxcem: PyTorch-native attribution on Captum, with a batched Contrastive Explanation Method.

Every method is an :class:`Explainer` with ``create_explainer(model, **kwargs)`` and
``calculate_features(model, input_data, pred_label_idx=None, **kwargs) -> torch.Tensor``;
choose one by name with :func:`get_explainer`.
"""

from foxcem import explainers as _explainers
from foxcem._version import __version__
from foxcem.base import Explainer, split_convergence_delta, validate_result
from foxcem.cem.explainer import CEMExplainer
from foxcem.explainers import *  # noqa: F403 - the Captum-backed explainers
from foxcem.model_state import preserve_model_state
from foxcem.registry import available_explainers, get_explainer, register_explainer

__all__ = [
    "__version__",
    "CEMExplainer",
    "Explainer",
    "available_explainers",
    "get_explainer",
    "preserve_model_state",
    "register_explainer",
    "validate_result",
    "split_convergence_delta",
]
__all__ += _explainers.__all__

#: Names loaded on first use, so that ``import foxcem`` stays light (``explain_dataset`` imports
#: Lightning only when called).
_LAZY = {
    "explain_dataset": "foxcem.dataset",
    "load_attributions": "foxcem.dataset",
    "IndexedDataset": "foxcem.dataset",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'foxcem' has no attribute {name!r}")
