"""Any foxcem explainer as a Quantus-style ``explain_func`` (Quantus itself is not needed)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from foxcem.core.checks import (
    model_dtype_device,
)
from foxcem.core.explainer import Explainer, split_convergence_delta
from foxcem.core.registry import resolve_explainer

__all__ = ["quantus_explain_func"]


def quantus_explain_func(
    explainer: Union[str, Explainer],
    *,
    device: Union[None, str, torch.device] = None,
    dtype: Optional[torch.dtype] = None,
    **explainer_kwargs: Any,
) -> Callable[..., np.ndarray]:
    """A Quantus-style ``explain_func(model, inputs, targets, **kwargs) -> numpy.ndarray``.

    Quantus calls ``explain_func(model=model, inputs=x_batch, targets=y_batch, **kwargs)`` with
    NumPy batches; the returned function converts them to tensors on ``device``, runs
    ``explainer.calculate_features(model, inputs, targets, **options)`` and returns the
    attributions as a float32 NumPy array (the attribution part only, when the explainer also
    returns a convergence delta).

    Args:
        explainer: a registered name (see :func:`~foxcem.available_explainers`) or an instance.
        device: where to run; ``None``: the model's device (CPU for a parameterless model). A
            ``device`` keyword given to the returned function at call time overrides it.
        dtype: floating dtype of the inputs; ``None``: the model's parameter dtype (float32 for
            a parameterless model).
        **explainer_kwargs: options of ``calculate_features`` (call-time keywords override them).

    Returns:
        ``explain_func(model, inputs, targets=None, **kwargs)``: ``inputs`` a NumPy array or tensor
        (N, C, H, W); ``targets`` an int, a sequence, a NumPy array or tensor of N class indices,
        or ``None`` (the prediction); returns a ``numpy.ndarray`` with the explainer's output
        shape (e.g. (N, C, H, W), (N, 1, H, W) for saliency).
    """
    instance = resolve_explainer(explainer)

    def explain_func(model: Any, inputs: Any, targets: Any = None, **kwargs: Any) -> np.ndarray:
        run_device = kwargs.pop("device", None) or device
        if not isinstance(model, nn.Module) and hasattr(model, "get_model"):
            model = model.get_model()  # a Quantus ModelInterface
        model_dtype, model_device = model_dtype_device(model)
        target_device = torch.device(run_device or model_device or "cpu")
        target_dtype = dtype or model_dtype or torch.float32
        x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
        if not x.is_floating_point():
            raise TypeError(f"`inputs` must hold floating values, got {x.dtype}")
        x = x.to(device=target_device, dtype=target_dtype)
        if (
            isinstance(model, nn.Module)
            and model_device is not None
            and model_device != target_device
        ):
            raise ValueError(
                f"the model is on {model_device} but `device` is {target_device}; move the model "
                f"or pass device={str(model_device)!r}"
            )
        if targets is not None and not isinstance(targets, (int, torch.Tensor)):
            targets = torch.as_tensor(np.asarray(targets))
        if isinstance(targets, torch.Tensor):
            targets = targets.long().to(target_device)
            if targets.dim() > 1:
                targets = targets.reshape(-1)
        options = {**explainer_kwargs, **kwargs}
        attributions, _ = split_convergence_delta(
            instance.calculate_features(model, x, targets, **options)
        )
        return attributions.detach().float().cpu().numpy()

    return explain_func
