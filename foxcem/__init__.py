"""foxcem: PyTorch-native attribution on Captum, with a batched Contrastive Explanation Method.

Every method is an :class:`Explainer` with ``create_explainer(model, **kwargs)`` and
``calculate_features(model, input_data, pred_label_idx=None, **kwargs) -> torch.Tensor``;
choose one by name with :func:`get_explainer`.

The package is layered; each layer imports only from the ones above it in this list:

* :mod:`foxcem.core` — the Explainer contract, argument checks, the model-state guard, the
  registry, seeding, progress bars;
* :mod:`foxcem.attribution` — the Captum-backed methods;
* :mod:`foxcem.cem` — the native Contrastive Explanation Method (loss, optimizers, gradient
  sources, generator, explainer);
* :mod:`foxcem.metrics`, :mod:`foxcem.viz`, :mod:`foxcem.io` — metrics, drawing, files;
* :mod:`foxcem.integrations` — Lightning and Quantus;
* :mod:`foxcem.cli`, :mod:`foxcem.demo` — the command line and the demo.
"""

from foxcem import _compat
from foxcem import attribution as _attribution
from foxcem._version import __version__
from foxcem.attribution import *  # noqa: F403 - the Captum-backed explainers
from foxcem.cem.explainer import CEMExplainer
from foxcem.core.adapters import SegmentationConfidence, SelectiveRegion
from foxcem.core.explainer import Explainer, split_convergence_delta, validate_result
from foxcem.core.inference import InferenceWrapper
from foxcem.core.model_state import preserve_model_state
from foxcem.core.registry import available_explainers, get_explainer, register_explainer

_compat.install()

__all__ = [
    "__version__",
    "CEMExplainer",
    "Explainer",
    "InferenceWrapper",
    "SegmentationConfidence",
    "SelectiveRegion",
    "available_explainers",
    "get_explainer",
    "preserve_model_state",
    "register_explainer",
    "validate_result",
    "split_convergence_delta",
]
__all__ += _attribution.__all__

#: Names loaded on first use, so that ``import foxcem`` stays light (``explain_dataset`` imports
#: Lightning only when asked for).
_LAZY = {
    "explain_dataset": "foxcem.integrations.lightning.explain_dataset",
    "load_attributions": "foxcem.io.shards",
    "IndexedDataset": "foxcem.io.datasets",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'foxcem' has no attribute {name!r}")
