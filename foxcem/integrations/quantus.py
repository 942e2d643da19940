"""Any foxcem explainer as a Quantus-style ``explain_func`` (Quantus itself is not needed)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from foxcem.core.checks import check_target, model_dtype_device
from foxcem.core.explainer import Explainer, split_convergence_delta
from foxcem.core.registry import resolve_explainer

__all__ = ["as_input_tensor", "check_device", "quantus_explain_func"]

#: A class bound for checking a target's type and length before the model has answered.
_ANY_CLASS = 2**62


def check_device(device: object, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device``; ``ValueError`` naming ``name`` for an unknown one."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"`{name}` must be a torch.device or a str, got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"`{name}` must be a torch device such as 'cpu' or 'cuda:0', got {device!r}"
        ) from None


def as_input_tensor(inputs: object, name: str = "inputs") -> torch.Tensor:
    """A batch given as a NumPy array or tensor, as a floating tensor (refusing anything else)."""
    if isinstance(inputs, torch.Tensor):
        x = inputs
    elif isinstance(inputs, np.ndarray) and inputs.dtype.kind in "biuf":
        x = torch.from_numpy(np.ascontiguousarray(inputs))
    else:
        raise TypeError(
            f"`{name}` must be a NumPy array or a tensor of numbers (N, C, H, W), got "
            f"{type(inputs).__name__}"
        )
    if not x.is_floating_point():
        raise TypeError(f"`{name}` must hold floating values, got {x.dtype}")
    return x


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
    default_device = None if device is None else check_device(device)

    def explain_func(model: Any, inputs: Any, targets: Any = None, **kwargs: Any) -> np.ndarray:
        call_device = kwargs.pop("device", None)
        run_device = check_device(call_device) if call_device is not None else default_device
        if not isinstance(model, nn.Module) and hasattr(model, "get_model"):
            model = model.get_model()  # a Quantus ModelInterface
        model_dtype, model_device = model_dtype_device(model)
        target_device = run_device or model_device or torch.device("cpu")
        target_dtype = dtype or model_dtype or torch.float32
        x = as_input_tensor(inputs)
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
        # The same target check as calculate_features (type and length here, the class range
        # once the model has answered): 1.7, True or "3" are refused, never cast to a class.
        if targets is not None:
            check_target(targets, x.shape[0], _ANY_CLASS, name="targets")
            if isinstance(targets, torch.Tensor):
                targets = targets.to(target_device)
        options = {**explainer_kwargs, **kwargs}
        attributions, _ = split_convergence_delta(
            instance.calculate_features(model, x, targets, **options),
            options.get("return_convergence_delta", False) is True,
        )
        return attributions.detach().float().cpu().numpy()

    return explain_func
