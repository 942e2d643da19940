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
)
from foxcem.core.inputs import InputLike, Inputs, check_inputs, forward_args
from foxcem.core.model_state import gradients_enabled, preserve_model_state
from foxcem.core.results import (
    EXPLAINER_CLASSES,
    detach_result,
    family_options,
    split_convergence_delta,
    validate_result,
)

__all__ = [
    "Explainer",
    "family_options",
    "detach_result",
    "forward_args",
    "model_dtype",
    "differentiable_scores",
    "predict_scores",
    "run_model",
    "split_convergence_delta",
    "validate_result",
]


def predict_scores(
    model: Any, input_data: Union[torch.Tensor, Inputs], additional_forward_args: Any = None
) -> torch.Tensor:
    """Class scores (N, classes) of ``model`` on ``input_data`` (a tensor or checked
    :class:`~foxcem.core.inputs.Inputs`, and the extra forward arguments, as Captum passes
    them), checked, without autograd."""
    inputs = input_data if isinstance(input_data, Inputs) else Inputs([input_data], False)
    with torch.no_grad():
        scores = run_model(model, inputs, additional_forward_args)
    return check_scores(scores, inputs.num_samples, device=inputs.device)


def run_model(model: Any, inputs: Inputs, additional_forward_args: Any = None) -> Any:
    """The model's answer for ``inputs``; a failure inside the model (a shape or dtype it
    cannot take) becomes one ``ValueError`` naming ``input_data`` and its shape."""
    try:
        return inputs.scores(model, additional_forward_args)
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = lines[0][:300] if lines else type(exc).__name__
        raise ValueError(
            f"the model cannot run on `input_data` of shape {inputs.shapes()}: "
            f"{type(exc).__name__}: {why}"
        ) from exc


def model_dtype(model: Any) -> Optional[torch.dtype]:
    """The floating dtype the model computes in: its first floating parameter's, else its first
    floating buffer's; ``None`` for a model without either."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
    return None


def differentiable_scores(
    model: Any,
    input_data: Union[torch.Tensor, Inputs],
    method: str,
    additional_forward_args: Any = None,
) -> torch.Tensor:
    """Class scores (N, classes), checked, from a forward pass that also proves the model
    differentiable: a model whose scores carry no autograd graph to its (floating) inputs is
    refused. For integer inputs only (token ids, explained at a layer) only a model that says
    ``differentiable = False`` is refused.

    A model that says ``differentiable = False`` (a NumPy or ONNX Runtime model behind
    :class:`~foxcem.InferenceWrapper`) is refused without running it.

    Raises:
        ValueError: naming the method and what to use instead.
    """
    inputs = input_data if isinstance(input_data, Inputs) else Inputs([input_data], False)
    out = None
    floating = any(t.is_floating_point() for t in inputs.tensors)
    if getattr(model, "differentiable", True) is not False:
        with gradients_enabled():
            probe = inputs.map(
                lambda t: t.detach().requires_grad_(True) if t.is_floating_point() else t
            )
            out = run_model(model, probe, additional_forward_args)
    if out is not None and not floating and isinstance(out, torch.Tensor):
        return check_scores(out.detach(), inputs.num_samples, device=inputs.device)
    if not (isinstance(out, torch.Tensor) and out.requires_grad):
        raise ValueError(
            f"{method} needs gradients, but the model's output has no autograd graph to its "
            "input (a NumPy or ONNX Runtime model, or one run under torch.no_grad); use a "
            "forward-only method: 'occlusion', 'feature_ablation', 'kernel_shap', 'lime', or "
            "'cem' with gradient='urv'"
        )
    return check_scores(out.detach(), inputs.num_samples, device=inputs.device)


#: module -> {(parameter ids, input signature, gradients probed): number of classes}
_PROBED: weakref.WeakKeyDictionary[Any, dict[tuple, int]] = weakref.WeakKeyDictionary()


def _probe_key(model: Any, inputs: Inputs, gradients: bool) -> Optional[tuple]:
    """What a remembered probe depends on; ``None`` for a callable that is no module."""
    if not isinstance(model, nn.Module):
        return None
    params = tuple(id(p) for p in model.parameters())
    return (params, inputs.signature(), gradients)


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
    #: Number of input dimensions required (``None``: any shape, (N, …)).
    input_ndim: ClassVar[Optional[int]] = None
    #: Whether integer inputs (token ids) are accepted: by layer methods (the layer's output is
    #: what varies) and by perturbation methods.
    accepts_integers: ClassVar[bool] = False
    #: Whether the method differentiates the model (checked up front: a black-box model is
    #: refused with a clear message before any work).
    needs_gradients: ClassVar[bool] = True
    #: Whether the method hooks the model's modules (layer methods, guided backprop, DeepLIFT,
    #: LRP): a TorchScript, exported or ONNX model, whose modules do not run as Python modules,
    #: cannot be explained by it.
    hooks_modules: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        EXPLAINER_CLASSES.append(cls)

    @abstractmethod
    def create_explainer(self, model: Any, **kwargs: Any) -> Any:
        """Build the configured algorithm object for ``model``."""

    @abstractmethod
    def _attribute(self, model: Any, inputs: Inputs, target: torch.Tensor, **kwargs: Any) -> Any:
        """Compute attributions for the checked ``inputs``; ``target`` is a (N,) int64 tensor
        on the inputs' device."""

    def calculate_features(
        self,
        model: nn.Module,
        input_data: InputLike,
        pred_label_idx: TargetLike = None,
        **kwargs: Any,
    ) -> Any:
        """Explain ``model``'s scores for ``pred_label_idx`` on ``input_data``.

        Args:
            model: a module (or callable) mapping ``input_data`` to class scores (N, classes).
            input_data: what is explained, on the model's device: a floating tensor (N, …) —
                (N, F) table rows, (N, C, T) sequences, (N, C, H, W) images — or a tuple of
                tensors sharing N for a model with several inputs (called as
                ``model(*input_data)``); integer token ids (N, T) for a layer method on the
                embedding and for the perturbation methods. Floating tensors of another dtype
                than the model's parameters are cast to the model's dtype.
            pred_label_idx: the class to explain: an int for every sample, a 0-D/1-D integer
                tensor of length N, or a list of N ints (``target=`` is accepted too, as in
                Captum). ``None`` explains each sample's predicted class (argmax of the
                scores, computed with ``additional_forward_args`` when given).
            **kwargs: method-specific options; an unknown name raises ``TypeError``.

        Returns:
            The attributions, detached, in the model's dtype: a tensor shaped as documented by
            each method, a tuple of tensors for a tuple ``input_data`` (as Captum), a list for a
            list of layers.

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
        kwargs = self._without_unused_family_options(kwargs)
        check_model(model)
        name = self.registry_name or type(self).__name__
        inputs = check_inputs(
            input_data, ndim=self.input_ndim, integers=self.accepts_integers, method=name
        )
        if isinstance(model, nn.Module):
            for tensor in inputs.tensors:
                check_same_device(model, tensor)
        self._check_inputs(model, inputs, kwargs)
        extra = kwargs.get("additional_forward_args")
        # The parameters stay frozen throughout: their .grad need no copy, only a version check.
        guard = preserve_model_state(
            model, inputs=inputs.tensors, copy_grads=False, exclusive=self.hooks_modules
        )
        with gradients_enabled(), guard:
            dtype = model_dtype(model)

            def prepare(t: torch.Tensor) -> torch.Tensor:
                # Lightning hands us inference tensors; autograd needs ordinary ones.
                t = t.clone() if t.is_inference() else t.detach()
                if t.is_floating_point() and dtype is not None and t.dtype != dtype:
                    t = t.to(dtype)  # the rule: computed (and returned) in the model's dtype
                return t

            prepared = inputs.map(prepare)
            target = self._resolve_target(model, prepared, pred_label_idx, extra)
            result = self._attribute(model, prepared, target, **kwargs)
        validate_result(result)
        return detach_result(result)

    def options(self) -> Optional[list[str]]:
        """The names of this method's options (``None``: not listed)."""
        return None

    def _without_unused_family_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` less the options this method lacks that are given as ``None`` and belong
        to another method of the family (:func:`~foxcem.core.results.family_options`): one
        keyword set, e.g. ``baselines=None``, then runs every method."""
        known = self.options()
        if known is None:
            return kwargs
        family = family_options()
        return {
            name: value
            for name, value in kwargs.items()
            if not (value is None and name not in known and name in family)
        }

    def _check_inputs(self, model: Any, inputs: Inputs, options: dict[str, Any]) -> None:
        """Checks of the inputs that need the method's options, before the model sees them
        (e.g. token ids against the embedding's range); nothing by default."""
        return None

    def _resolve_target(
        self, model: Any, inputs: Inputs, pred_label_idx: TargetLike, extra: Any
    ) -> torch.Tensor:
        """The (N,) classes to explain; the model's differentiability checked on the way.

        With the class given, one sample tells the number of classes (and whether gradients
        flow), and for the same module, parameters and input shape the answer is remembered:
        repeated calls cost no extra forward pass.
        """
        name = self.registry_name or type(self).__name__
        key = _probe_key(model, inputs, self.needs_gradients)
        n = inputs.num_samples
        if pred_label_idx is not None and extra is None:
            classes = _PROBED.get(model, {}).get(key) if key is not None else None
            if classes is None:
                probe = inputs.rows(slice(0, 1))
                scores = (
                    differentiable_scores(model, probe, name)
                    if self.needs_gradients
                    else predict_scores(model, probe)
                )
                classes = scores.shape[1]
                if key is not None:
                    _PROBED.setdefault(model, {})[key] = classes
            target = check_target(pred_label_idx, n, classes, inputs.device)
            assert target is not None
            return target
        if self.needs_gradients:
            scores = differentiable_scores(model, inputs, name, extra)
        else:
            scores = predict_scores(model, inputs, extra)
        target = check_target(pred_label_idx, n, scores.shape[1], inputs.device)
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
