"""Any inference callable as a class-scores function: preprocess → model → quantizer.

A model one can only query — a function on NumPy arrays, an ONNX Runtime session, a pipeline
whose raw output is a mask or a list of boxes — becomes a torch module mapping (N, …) tensors to
class scores (N, classes), usable by every method that needs forward passes only: CEM with
``gradient="urv"``, Occlusion and the perturbation methods. Gradient methods refuse it up front
with a clear message (``differentiable`` is False for NumPy and ONNX models).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from foxcem.core.batching import run_in_fixed_batches
from foxcem.core.checks import check_bool, check_scores

__all__ = ["InferenceWrapper", "is_onnx_session", "onnx_fixed_batch"]


def is_onnx_session(model: object) -> bool:
    """Whether ``model`` looks like an ONNX Runtime ``InferenceSession`` (``run`` and
    ``get_inputs``)."""
    return callable(getattr(model, "run", None)) and callable(getattr(model, "get_inputs", None))


def onnx_fixed_batch(session: Any) -> Optional[int]:
    """The batch size an ONNX session's first input is fixed to (``torch.onnx.export``'s
    default), or ``None`` for a dynamic batch."""
    shape = getattr(session.get_inputs()[0], "shape", None) or [None]
    first = shape[0]
    return first if isinstance(first, int) and not isinstance(first, bool) and first > 0 else None


class InferenceWrapper(nn.Module):
    """Turn an inference callable into a scores function ``wrapper(x) -> (N, classes)``.

    Args:
        model: a torch module or function on tensors, a function on NumPy arrays
            (``numpy=True``), or an ONNX Runtime ``InferenceSession`` (its first input is fed,
            its first output read; NumPy mode is implied). A session exported with a fixed batch
            size is run in chunks of that size, so any batch works.
        preprocess: applied to the input before the model (to the tensor, or to the NumPy array
            in NumPy mode), e.g. normalisation or resizing.
        quantizer: maps the model's raw output to class scores (N, classes), e.g. a
            segmentation mask to per-class pixel counts; in NumPy mode it receives and may return
            NumPy arrays.
        numpy: call the model on NumPy arrays (float32 on the host); the scores come back as a
            float32 tensor on the input's device.

    The wrapper is an ``nn.Module``: a wrapped torch module (and a module given as
    ``preprocess`` or ``quantizer``) is a submodule, so foxcem's model-state guard reaches it.
    ``differentiable`` says whether autograd can pass through.

    Raises (when called):
        ValueError: the answer (after ``quantizer``) is not class scores (N, classes) — None, a
            dict, strings, a ragged list, another shape — or holds NaN/inf; the message says
            what came back.
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
        self.numpy = check_bool(numpy, "numpy") or self.session is not None
        #: whether gradients can flow from the scores back to the input.
        self.differentiable = not self.numpy
        #: the fixed batch size of an ONNX session (``None``: any batch).
        self.fixed_batch = onnx_fixed_batch(model) if self.session is not None else None

    def _run_session(self, array: np.ndarray) -> Any:
        assert self.session is not None
        name = self.session.get_inputs()[0].name

        def run(chunk: np.ndarray) -> Any:
            return self.session.run(None, {name: np.ascontiguousarray(chunk, np.float32)})[0]

        if self.fixed_batch is None:
            return run(array)
        return run_in_fixed_batches(run, array, self.fixed_batch)

    def _run_numpy(self, x: torch.Tensor) -> Any:
        array = x.detach().to("cpu", torch.float32).numpy()
        if self.preprocess is not None:
            array = self.preprocess(array)
        if self.session is not None:
            raw = self._run_session(array)
        else:
            raw = (self._call or self.model)(array)  # type: ignore[misc]
        return self.quantizer(raw) if self.quantizer is not None else raw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, classes) of ``x`` (N, …)."""
        if self.numpy:
            answer = self._run_numpy(x)
        else:
            inputs = self.preprocess(x) if self.preprocess is not None else x
            raw = (self.model or self._call)(inputs)  # type: ignore[misc]
            answer = self.quantizer(raw) if self.quantizer is not None else raw
        name = "wrapped model's answer" + (" after `quantizer`" if self.quantizer else "")
        scores = check_scores(answer, x.shape[0], name, device=x.device)
        if self.numpy:
            scores = scores.to(torch.float32)
        if not bool(torch.isfinite(scores.detach()).all()):
            rows = (~torch.isfinite(scores.detach())).any(dim=1).nonzero()[:5, 0].tolist()
            raise ValueError(f"the {name} holds NaN or inf scores (rows {rows})")
        return scores

    def extra_repr(self) -> str:
        kind = "onnx" if self.session is not None else "numpy" if self.numpy else "torch"
        return f"kind={kind}, preprocess={self.preprocess is not None}, quantizer={self.quantizer is not None}"
