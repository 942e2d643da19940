"""MAX's gradient classes over foxcem's gradient sources.

``BaseGradient`` is the base of a custom gradient written the MAX way: ``__init__(loss, ...)``
and ``__call__(data) -> gradient``, calling ``self.loss.get_loss(x)`` (one value per sample,
broadcastable against ``x``). Every model call it makes is counted in ``meta_data``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from foxcem.cem.gradient_source import AutogradGradient, GradientSource
from foxcem.cem.lime import LimeGradient
from foxcem.cem.urv import URVGradientEstimator as _URV

__all__ = ["BaseGradient", "LimeGradient", "TF_Gradient", "Torch_Gradient", "URVGradientEstimator"]


class BaseGradient(GradientSource):
    """Base of MAX-style gradient classes: ``self.loss`` is the loss; implement
    ``__call__(data)`` returning the gradient shaped like ``data``."""

    def __init__(self, loss: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(loss)
        self.takes_samples = False  # MAX's __call__ takes the whole batch

    def __call__(self, data: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError("a gradient class implements __call__(data)")


class Torch_Gradient(AutogradGradient):  # noqa: N801 - MAX's name
    """The exact gradient (autograd); MAX's ``img_size`` and other keywords are accepted."""

    def __init__(self, loss: Any, img_size: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(loss, **kwargs)


TF_Gradient = Torch_Gradient


class URVGradientEstimator(_URV):
    """foxcem's batched URV estimate with MAX's arguments: ``num_iter`` directions (MAX's name
    for ``num_directions``), ``mu`` (``None``: foxcem's decaying default), ``img_size``
    (accepted; the size is read from δ)."""

    def __init__(
        self,
        loss: Any,
        img_size: Optional[int] = None,
        mu: Optional[float] = None,
        num_iter: int = 100,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("num_directions", num_iter)
        super().__init__(loss, mu=mu, **kwargs)
