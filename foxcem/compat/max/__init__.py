"""MAX's spelling over foxcem's CEM: ``import foxcem.compat.max as maxi``.

The MAX library's tutorials run with the import changed and tensors instead of arrays::

    import foxcem.compat.max as maxi

    cem = maxi.ExplanationGenerator(
        loss=maxi.loss.Torch_CEMLoss,                 # or maxi.TF_CEMLoss
        optimizer=maxi.optimizer.AdaExpGradOptimizer,
        gradient=maxi.gradient.Torch_Gradient,        # or maxi.URVGradientEstimator
        loss_kwargs={"mode": "PP", "gamma": 0.0, "K": 2},
        optimizer_kwargs={"l1": 0.05, "l2": 0.005, "channels_first": False},
        num_iter=1000, save_freq=250,
    )
    results, meta_data = cem.run(image=inputs, inference_call=model)

What differs from MAX: the computation is foxcem's (batched, on the input's device, seeded);
``TF_*`` names are the same classes as the ``Torch_*`` ones (the model is a torch model);
MAX's ``AsyncExplanationWrapper`` is left out (torch batches instead: give ``run`` a batch).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from foxcem.compat.max import gradient, loss, optimizer
from foxcem.compat.max.generator import ExplanationGenerator
from foxcem.compat.max.gradient import (
    BaseGradient,
    TF_Gradient,
    Torch_Gradient,
    URVGradientEstimator,
)
from foxcem.compat.max.loss import TF_CEMLoss, Torch_CEMLoss
from foxcem.compat.max.optimizer import AdaExpGradOptimizer, AoExpGradOptimizer
from foxcem.core.inference import InferenceWrapper as _InferenceWrapper

__all__ = [
    "AdaExpGradOptimizer",
    "AoExpGradOptimizer",
    "BaseGradient",
    "ExplanationGenerator",
    "InferenceWrapper",
    "TF_CEMLoss",
    "TF_Gradient",
    "Torch_CEMLoss",
    "Torch_Gradient",
    "URVGradientEstimator",
    "gradient",
    "loss",
    "optimizer",
]


class InferenceWrapper(_InferenceWrapper):
    """foxcem's :class:`~foxcem.InferenceWrapper` with MAX's keyword ``inference_model``."""

    def __init__(
        self,
        inference_model: Any = None,
        quantizer: Optional[Callable[[Any], Any]] = None,
        preprocess: Optional[Callable[[Any], Any]] = None,
        numpy: bool = False,
        model: Any = None,
    ) -> None:
        if (inference_model is None) == (model is None):
            raise TypeError("give the model as `inference_model` (MAX's name) or `model`, once")
        super().__init__(
            model if model is not None else inference_model,
            preprocess=preprocess, quantizer=quantizer, numpy=numpy,
        )  # fmt: skip
