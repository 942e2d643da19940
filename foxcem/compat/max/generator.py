"""MAX's ``ExplanationGenerator``: foxcem's generator, building MAX-style component classes.

MAX builds its components by keyword — ``loss(org_img=…, inference=…, **loss_kwargs)``,
``gradient(loss=…, img_size=…, **gradient_kwargs)`` — and its custom classes are written that
way; foxcem's own classes are built as foxcem does (``loss(model, image, …)``). A loss with only
MAX's ``get_loss`` (no ``__call__``) is used through it. ``save_freq=np.inf`` (MAX's default)
keeps only the result; images given as NumPy arrays are converted to float32 tensors.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Optional

import numpy as np
import torch

from foxcem.cem.generator import ExplanationGenerator as _Generator
from foxcem.compat.max.gradient import URVGradientEstimator
from foxcem.compat.max.loss import Torch_CEMLoss
from foxcem.compat.max.optimizer import AoExpGradOptimizer

__all__ = ["ExplanationGenerator"]


def _accepts(cls: Any) -> tuple[set[str], bool]:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return set(), True
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return set(parameters), open_ended


class _GetLoss:
    """A MAX-style loss object with ``get_loss`` only, called as foxcem's per-sample loss."""

    def __init__(self, loss: Any) -> None:
        self.inner = loss

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        values = self.inner.get_loss(delta)
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"`get_loss` must return a tensor, got {type(values).__name__}")
        if values.numel() != len(delta):
            raise ValueError(
                "`get_loss` must return one value per sample (N,) or (N, 1, …); got shape "
                f"{tuple(values.shape)} for {len(delta)} samples"
            )
        return values.reshape(len(delta))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ExplanationGenerator(_Generator):
    """``maxi.ExplanationGenerator(loss=…, optimizer=…, gradient=…, loss_kwargs=…,
    optimizer_kwargs=…, gradient_kwargs=…, num_iter=…, save_freq=…, verbose=…)`` and
    ``savepoints, meta_data = generator.run(image=…, inference_call=…)``, as in MAX.

    Defaults as MAX's: :class:`~foxcem.compat.max.loss.Torch_CEMLoss`,
    :class:`~foxcem.compat.max.optimizer.AoExpGradOptimizer`,
    :class:`~foxcem.compat.max.gradient.URVGradientEstimator`, ``save_freq=np.inf``. Any other
    keyword is an option of :class:`foxcem.cem.ExplanationGenerator`.
    """

    def __init__(
        self,
        loss: type = Torch_CEMLoss,
        optimizer: type = AoExpGradOptimizer,
        gradient: type = URVGradientEstimator,
        loss_kwargs: Optional[dict[str, Any]] = None,
        optimizer_kwargs: Optional[dict[str, Any]] = None,
        gradient_kwargs: Optional[dict[str, Any]] = None,
        num_iter: int = 1000,
        save_freq: Any = math.inf,
        verbose: Any = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(save_freq, (float, np.floating)) and math.isinf(save_freq) and save_freq > 0:
            save_freq = None
        super().__init__(
            loss, optimizer, gradient, loss_kwargs, optimizer_kwargs, gradient_kwargs,
            num_iter=num_iter, save_freq=save_freq, verbose=verbose, **kwargs,
        )  # fmt: skip

    def run(  # type: ignore[override]
        self,
        image: Any,
        inference_call: Callable[[torch.Tensor], torch.Tensor],
        meta_data: Optional[dict[str, Any]] = None,
        target: Any = None,
    ) -> tuple[Any, dict[str, Any]]:
        if isinstance(image, np.ndarray):
            image = torch.as_tensor(image, dtype=torch.float32)
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"`image` must be a tensor or NumPy array, got {type(image).__name__}")
        return super().run(image, inference_call, meta_data, target)

    def build(self, model: Any, image: torch.Tensor, loss_kwargs: dict) -> tuple[Any, Any]:
        names, open_ended = _accepts(self.loss)
        if "org_img" in names or "inference" in names:
            offered = {"org_img": image, "inference": model}
            loss = self.loss(
                **{k: v for k, v in offered.items() if k in names or open_ended}, **loss_kwargs
            )
        else:
            loss = self.loss(model, image, **loss_kwargs)
        if hasattr(loss, "get_loss") and not callable(loss):
            loss = _GetLoss(loss)
        names, open_ended = _accepts(self.gradient)
        offered = {"img_size": image[0].numel()}
        extra = {k: v for k, v in offered.items() if (k in names or open_ended)}
        extra.update(self.gradient_kwargs)
        return loss, self.gradient(loss=loss, **extra)
