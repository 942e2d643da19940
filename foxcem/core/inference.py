"""Any inference callable as a class-scores function: preprocess → model → quantizer.

A model one can only query — a function on NumPy arrays, an ONNX Runtime session, a pipeline
whose raw output is a mask or a list of boxes — becomes a torch module mapping (N, …) tensors to
class scores (N, classes), usable by every method that needs forward passes only: CEM with
``gradient="urv"`` and Occlusion. Gradient methods refuse it up front with a clear message
(``differentiable`` is False for NumPy and ONNX models).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

__all__ = ["InferenceWrapper", "is_onnx_session"]


def is_onnx_session(model: object) -> bool:
    """Whether ``model`` looks like an ONNX Runtime ``InferenceSession`` (``run`` and
    ``get_inputs``)."""
    return callable(getattr(model, "run", None)) and callable(getattr(model, "get_inputs", None))


class InferenceWrapper(nn.Module):
    """Turn an inference callable into a scores function ``wrapper(x) -> (N, classes)``.

    Args:
        model: a torch module or function on tensors, a function on NumPy arrays
            (``numpy=True``), or an ONNX Runtime ``InferenceSession`` (its first input is fed,
            its first output read; NumPy mode is implied).
        preprocess: applied to the input before the model (to the tensor, or to the NumPy array
            in NumPy mode), e.g. normalisation or resizing.
        quantizer: maps the model's raw output to class scores (N, classes), e.g. a
            segmentation mask to per-class pixel counts; in NumPy mode it receives and may return
            NumPy arrays.
        numpy: call the model on NumPy arrays (float32 on the host); the scores come back as a
            float32 tensor on the input's device.

    The wrapper is an ``nn.Module``: a wrapped torch module is a submodule, so foxcem's
    model-state guard reaches it. ``differentiable`` says whether autograd can pass through.

    Raises (when called):
        ValueError: the scores are not a 2-D (N, classes) array or tensor.
    """

    def __init__(
        self,
        model: Any,
        preprocess: Optional[Callable[[Any], Any]] = None,
        quantizer: Optional[Callable[[Any], Any]] = None,
        numpy: bool = False,
    ) -> None:
        super().__init__()
        if not callable(model) and not is_onnx_session(model):
            raise TypeError(f"`model` must be callable or an ONNX Runtime session, got {model!r}")
        for name, value in (("preprocess", preprocess), ("quantizer", quantizer)):
            if value is not None and not callable(value):
                raise TypeError(f"`{name}` must be callable, got {type(value).__name__}")
        self.session = model if is_onnx_session(model) else None
        self.model = model if isinstance(model, nn.Module) else None
        self._call = model if self.model is None and self.session is None else None
        self.preprocess = preprocess
        self.quantizer = quantizer
        self.numpy = bool(numpy) or self.session is not None
        #: whether gradients can flow from the scores back to the input.
        self.differentiable = not self.numpy

    def _run_numpy(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).numpy()
        if self.preprocess is not None:
            array = self.preprocess(array)
        if self.session is not None:
            name = self.session.get_inputs()[0].name
            raw = self.session.run(None, {name: np.ascontiguousarray(array, dtype=np.float32)})[0]
        else:
            raw = (self._call or self.model)(array)  # type: ignore[misc]
        scores = self.quantizer(raw) if self.quantizer is not None else raw
        return torch.as_tensor(np.asarray(scores), dtype=torch.float32).to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, classes) of ``x`` (N, …)."""
        if self.numpy:
            scores = self._run_numpy(x)
        else:
            inputs = self.preprocess(x) if self.preprocess is not None else x
            raw = (self.model or self._call)(inputs)  # type: ignore[misc]
            scores = self.quantizer(raw) if self.quantizer is not None else raw
            scores = torch.as_tensor(scores)
        if scores.dim() != 2 or scores.shape[0] != x.shape[0]:
            raise ValueError(
                f"the wrapped model must give class scores (N, classes) = ({x.shape[0]}, "
                f"classes) after `quantizer`, got shape {tuple(scores.shape)}"
            )
        return scores

    def extra_repr(self) -> str:
        kind = "onnx" if self.session is not None else "numpy" if self.numpy else "torch"
        return f"kind={kind}, preprocess={self.preprocess is not None}, quantizer={self.quantizer is not None}"
