"""foxcem: PyTorch-native attribution on Captum, with a batched Contrastive Explanation Method.

Every method is an :class:`Explainer` with ``create_explainer(model, **kwargs)`` and
``calculate_features(model, input_data, pred_label_idx=None, **kwargs) -> torch.Tensor``;
choose one by name with :func:`get_explainer`.
"""

from foxcem._version import __version__
from foxcem.base import Explainer, validate_result
from foxcem.model_state import preserve_model_state
from foxcem.registry import available_explainers, get_explainer, register_explainer

__all__ = [
    "__version__",
    "Explainer",
    "available_explainers",
    "get_explainer",
    "preserve_model_state",
    "register_explainer",
    "validate_result",
]
