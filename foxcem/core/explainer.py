"""The contract every foxcem method follows."""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Optional, Union

import torch
from torch import nn

from foxcem.core.checks import (
    TargetLike,
    check_model,
    check_same_device,
    check_scores,
    check_target,
    check_tensor,
)
from foxcem.core.model_state import gradients_enabled, preserve_model_state

__all__ = [
    "Explainer",
    "forward_args",
    "model_dtype",
    "differentiable_scores",
    "predict_scores",
    "split_convergence_delta",
    "validate_result",
]


def split_convergence_delta(
    result: Union[torch.Tensor, tuple[torch.Tensor, ...]],
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(attributions, delta)`` from a ``calculate_features`` result.

    Explainers return the attributions alone, or ``(attributions, delta)`` when asked for the
    convergence delta (``return_convergence_delta=True``); ``delta`` is ``None`` for the former.
    """
    if isinstance(result, tuple):
        return result[0], (result[1] if len(result) > 1 else None)
    return result, None


def validate_result(attributions: torch.Tensor) -> None:
    """Reject an empty attribution.

    Raises:
        RuntimeError: if ``attributions`` has a zero in its shape.
    """
    tensors = attributions if isinstance(attributions, (tuple, list)) else (attributions,)
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            raise RuntimeError(f"the explainer returned {type(tensor).__name__}, not a tensor")
        if 0 in tensor.shape:
            raise RuntimeError(
                f"the explainer returned an empty attribution of shape {tuple(tensor.shape)}"
            )


def forward_args(additional_forward_args: Any) -> tuple[Any, ...]:
    """Captum's ``additional_forward_args`` as the tuple of extra positional arguments."""
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def predict_scores(
    model: Any, input_data: torch.Tensor, additional_forward_args: Any = None
) -> torch.Tensor:
    """Class scores (N, classes) of ``model`` on ``input_data`` (and the extra forward
    arguments, as Captum passes them), checked, without autograd."""
    with torch.no_grad():
        scores = model(input_data, *forward_args(additional_forward_args))
    return check_scores(scores, input_data.shape[0], device=input_data.device)


def model_dtype(model: Any) -> Optional[torch.dtype]:
    """The floating dtype the model computes in: its first floating parameter's, else its first
    floating buffer's; ``None`` for a model without either."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
    return None


def differentiable_scores(
    model: Any, input_data: torch.Tensor, method: str, additional_forward_args: Any = None
) -> torch.Tensor:
    """Class scores (N, classes), checked, from a forward pass that also proves the model
    differentiable: a model whose scores carry no autograd graph to its input is refused.

    A model that says ``differentiable = False`` (a NumPy or ONNX Runtime model behind
    :class:`~foxcem.InferenceWrapper`) is refused without running it.

    Raises:
        ValueError: naming the method and what to use instead.
    """
    out = None
    if getattr(model, "differentiable", True) is not False:
        with gradients_enabled():
            probe = input_data.detach().requires_grad_(True)
            out = model(probe, *forward_args(additional_forward_args))
    if not (isinstance(out, torch.Tensor) and out.requires_grad):
        raise ValueError(
            f"{method} needs gradients, but the model's output has no autograd graph to its "
            "input (a NumPy or ONNX Runtime model, or one run under torch.no_grad); use a "
            "forward-only method: 'occlusion', or 'cem' with gradient='urv'"
        )
    return check_scores(out.detach(), input_data.shape[0])


#: module -> {(parameter ids, input shape, dtype, gradients probed): number of classes}
_PROBED: weakref.WeakKeyDictionary[Any, dict[tuple, int]] = weakref.WeakKeyDictionary()


def _probe_key(model: Any, inputs: torch.Tensor, gradients: bool) -> Optional[tuple]:
    """What a remembered probe depends on; ``None`` for a callable that is no module."""
    if not isinstance(model, nn.Module):
        return None
    params = tuple(id(p) for p in model.parameters())
    return (params, tuple(inputs.shape[1:]), inputs.dtype, inputs.device, gradients)


class Explainer(ABC):
    """Base class of every foxcem method.

    Subclasses implement :meth:`create_explainer` (build the underlying algorithm object: a
    Captum attribution object, or a native one) and :meth:`_attribute` (compute the attribution
    for a checked input and a resolved per-sample target). :meth:`calculate_features` does the
    shared work: input checks, target resolution (``None`` means the model's prediction, never a
    silent class 0), the model-state guard, gradients even under ``torch.inference_mode()``, and
    result validation.
    """

    #: Human-readable name of the algorithm.
    algorithm_name: ClassVar[str] = ""
    #: Name under which the class is registered (set by ``register_explainer``).
    registry_name: ClassVar[str] = ""
    #: Number of input dimensions required (4 for the computer-vision explainers, ``None``: any).
    input_ndim: ClassVar[Optional[int]] = 4
    #: Whether the method differentiates the model (checked up front: a black-box model is
    #: refused with a clear message before any work).
    needs_gradients: ClassVar[bool] = True
    #: Whether the method hooks the model's modules (layer methods, guided backprop, DeepLIFT,
    #: LRP): a TorchScript, exported or ONNX model, whose modules do not run as Python modules,
    #: cannot be explained by it.
    hooks_modules: ClassVar[bool] = False

    @abstractmethod
    def create_explainer(self, model: Any, **kwargs: Any) -> Any:
        """Build the configured algorithm object for ``model``."""

    @abstractmethod
    def _attribute(
        self, model: Any, input_data: torch.Tensor, target: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        """Compute attributions; ``target`` is a (N,) int64 tensor on the input's device."""

    def calculate_features(
        self,
        model: nn.Module,
        input_data: torch.Tensor,
        pred_label_idx: TargetLike = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Explain ``model``'s scores for ``pred_label_idx`` on ``input_data``.

        Args:
            model: a module (or callable) mapping ``input_data`` to class scores (N, classes).
            input_data: a floating tensor, (N, C, H, W) for the computer-vision explainers, on
                the model's device. An input of another floating dtype than the model's
                parameters is cast to the model's dtype (float16, bfloat16 or float64 inputs
                for a float32 model, and so on).
            pred_label_idx: the class to explain: an int for every sample, a 0-D/1-D integer
                tensor of length N, or a list of N ints (``target=`` is accepted too, as in
                Captum). ``None`` explains each sample's predicted class (argmax of the
                scores, computed with ``additional_forward_args`` when given).
            **kwargs: method-specific options; an unknown name raises ``TypeError``.

        Returns:
            The attributions, a detached tensor (shape documented by each method), in the
            model's dtype.

        Raises:
            TypeError, ValueError: for bad input, naming the argument.
            RuntimeError: if the attribution is empty.
        """
        if "target" in kwargs:  # Captum's name for the same thing
            if pred_label_idx is not None:
                raise TypeError(
                    "give the explained class as `pred_label_idx` or `target`, not both"
                )
            pred_label_idx = kwargs.pop("target")
        check_model(model)
        check_tensor(input_data, "input_data", ndim=self.input_ndim)
        if isinstance(model, nn.Module):
            check_same_device(model, input_data)
        extra = kwargs.get("additional_forward_args")
        # The parameters stay frozen throughout: their .grad need no copy, only a version check.
        guard = preserve_model_state(
            model, inputs=input_data, copy_grads=False, exclusive=self.hooks_modules
        )
        with gradients_enabled(), guard:
            # Lightning hands us inference tensors; autograd needs ordinary ones.
            inputs = input_data.clone() if input_data.is_inference() else input_data.detach()
            dtype = model_dtype(model)
            if dtype is not None and inputs.dtype != dtype:
                inputs = inputs.to(dtype)  # the rule: computed (and returned) in the model's dtype
            target = self._resolve_target(model, inputs, pred_label_idx, extra)
            result = self._attribute(model, inputs, target, **kwargs)
        validate_result(result)
        if isinstance(result, tuple):
            return tuple(r.detach() for r in result)  # type: ignore[return-value]
        return result.detach()

    def _resolve_target(
        self, model: Any, inputs: torch.Tensor, pred_label_idx: TargetLike, extra: Any
    ) -> torch.Tensor:
        """The (N,) classes to explain; the model's differentiability checked on the way.

        With the class given, one sample tells the number of classes (and whether gradients
        flow), and for the same module, parameters and input shape the answer is remembered:
        repeated calls cost no extra forward pass.
        """
        name = self.registry_name or type(self).__name__
        key = _probe_key(model, inputs, self.needs_gradients)
        if pred_label_idx is not None and extra is None:
            classes = _PROBED.get(model, {}).get(key) if key is not None else None
            if classes is None:
                probe = inputs[:1]
                scores = (
                    differentiable_scores(model, probe, name)
                    if self.needs_gradients
                    else predict_scores(model, probe)
                )
                classes = scores.shape[1]
                if key is not None:
                    _PROBED.setdefault(model, {})[key] = classes
            target = check_target(pred_label_idx, inputs.shape[0], classes, inputs.device)
            assert target is not None
            return target
        if self.needs_gradients:
            scores = differentiable_scores(model, inputs, name, extra)
        else:
            scores = predict_scores(model, inputs, extra)
        target = check_target(pred_label_idx, inputs.shape[0], scores.shape[1], inputs.device)
        return scores.argmax(dim=1) if target is None else target

    def __call__(
        self,
        model: nn.Module,
        input_data: torch.Tensor,
        pred_label_idx: TargetLike = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Shorthand for :meth:`calculate_features`."""
        return self.calculate_features(model, input_data, pred_label_idx, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
