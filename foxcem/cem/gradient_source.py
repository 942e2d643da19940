"""Gradient sources: what fills ``delta.grad`` in the CEM loop, and the loss they differentiate.

The extension points of :mod:`foxcem.cem`:

* :class:`PerSampleLoss` — any callable ``loss(delta) -> values``: δ (N, …) in, one value per
  sample (N,) out, sample n depending on δ_n only. A loss that also accepts ``samples=`` (an index
  tensor naming the sample of each row, as :class:`~foxcem.cem.CEMLoss` does) can be evaluated on
  any stack of rows, which lets the black-box estimator send many perturbed points per call.
  A loss with an ``evaluate`` method returning a :class:`~foxcem.cem.CEMEvaluation` also tells
  whether each explanation holds, which the generator uses to keep the best one.
* :class:`GradientSource` — subclass it and implement ``__call__(delta, samples=None)`` returning
  the gradient shaped like δ, as :class:`AutogradGradient` and
  :class:`~foxcem.cem.URVGradientEstimator` do. A source that evaluates the loss at δ itself on
  the way stores that in :attr:`GradientSource.last_evaluation`, so the loop needs no extra model
  call to know how good δ is.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Optional, Protocol, Union, runtime_checkable

import torch

from foxcem.cem.evaluation import CEMEvaluation
from foxcem.core.checks import check_bool
from foxcem.core.model_state import gradients_enabled
from foxcem.core.precision import check_precision, precision_context

__all__ = ["AutogradGradient", "GradientSource", "PerSampleLoss", "takes_samples"]

Evaluation = Union[CEMEvaluation, torch.Tensor]


@runtime_checkable
class PerSampleLoss(Protocol):
    """``loss(delta) -> values``: δ (N, …) to one value per sample (N,)."""

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        """The loss of each sample; sample n may depend on δ_n only."""


def takes_samples(loss: object) -> bool:
    """Whether ``loss`` accepts a ``samples=`` keyword (a row-to-sample index)."""
    try:
        parameters = inspect.signature(loss).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return "samples" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


class GradientSource(ABC):
    """Base class of the gradient sources: ``source(delta) -> gradient`` shaped like δ.

    Args:
        loss: a :class:`PerSampleLoss` (e.g. :class:`~foxcem.cem.CEMLoss`).

    Example — a custom source (central finite differences along each coordinate)::

        class CoordinateDifferences(GradientSource):
            def __call__(self, delta, samples=None):
                h, grad = 1e-3, torch.zeros_like(delta)
                flat = grad.view(len(delta), -1)
                for i in range(flat.shape[1]):
                    step = torch.zeros_like(delta).view(len(delta), -1)
                    step[:, i] = h
                    step = step.view_as(delta)
                    flat[:, i] = (self.loss(delta + step) - self.loss(delta - step)) / (2 * h)
                return grad
    """

    def __init__(
        self, loss: PerSampleLoss, *, precision: Optional[str] = None, compile: bool = False
    ) -> None:
        if not callable(loss):
            raise TypeError(f"`loss` must be callable, got {type(loss).__name__}")
        self.loss = loss
        #: the precision the model is evaluated in: ``None``/``"fp32"``, ``"bf16"`` (autocast,
        #: loss values still accumulated in float32) or ``"tf32"`` (CUDA matmuls).
        self.precision = check_precision(precision)
        self.compiled = check_bool(compile, "compile")
        evaluate = getattr(loss, "evaluate", None) or loss
        #: the loss evaluation, compiled with ``torch.compile`` when ``compile`` is set.
        self._evaluate_fn = torch.compile(evaluate, dynamic=True) if compile else evaluate
        #: whether the loss accepts ``samples=`` (rows of any samples in one call).
        self.takes_samples = takes_samples(loss)
        #: the loss at the δ of the last call, when the source computed it on the way: a
        #: :class:`~foxcem.cem.CEMEvaluation` for a loss with ``evaluate``, else the values.
        self.last_evaluation: Optional[Evaluation] = None
        #: number of loss (model) calls made by the last call.
        self.last_num_calls = 0

    @abstractmethod
    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The gradient of each sample's loss at δ, shaped like ``delta``.

        Args:
            delta: (n, …): the current point of the n samples.
            samples: ``None`` (δ holds all N samples in order) or an index tensor (n,) naming
                the sample of each row (a subset, e.g. the samples not yet finished).
        """

    def rows_per_call(self, num_samples: int, sample_shape: torch.Size) -> int:
        """How many points one loss (model) call evaluates when the source is asked for the
        gradient of ``num_samples`` samples of δ-shape ``sample_shape`` (the CPU thread choice
        follows it: :mod:`foxcem.core.threads`). Default: one point per sample."""
        return num_samples

    def evaluate(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> Evaluation:
        """The loss at ``delta`` (rows of the samples ``samples``): its ``evaluate`` result when
        it has one, else its values."""
        kwargs = {} if samples is None else {"samples": samples}
        if samples is not None and not self.takes_samples:
            raise ValueError("this loss does not accept `samples=`; pass all N samples")
        with precision_context(self.precision, delta.device):
            return self._evaluate_fn(delta, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.loss!r})"


def loss_values(evaluation: Evaluation) -> torch.Tensor:
    """The loss values of an evaluation (a :class:`~foxcem.cem.CEMEvaluation` or values)."""
    return evaluation.loss if isinstance(evaluation, CEMEvaluation) else evaluation


class AutogradGradient(GradientSource):
    """The exact gradient of the per-sample loss with respect to δ (white box).

    Samples are independent (the loss of sample n depends on δ_n only, with the model in eval
    mode), so the gradient of the summed loss is the per-sample gradient. Parameters' ``.grad``
    are left untouched (``torch.autograd.grad``).

    Raises:
        ValueError: when the loss has no autograd graph to δ (a model run in NumPy, under
            ``torch.no_grad``, or otherwise not differentiable): the message suggests
            ``gradient="urv"``, the black-box estimate.
    """

    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.last_num_calls = 1
        with gradients_enabled():
            point = delta.detach().requires_grad_(True)  # a new leaf; δ itself untouched
            evaluation = self.evaluate(point, samples)
            value = loss_values(evaluation)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"the loss must return a tensor, got {type(value).__name__}")
            if not value.requires_grad:
                raise ValueError(
                    "the loss has no autograd graph to delta: the model's output is not "
                    "differentiable (it runs outside autograd, e.g. in NumPy, ONNX Runtime or "
                    "under torch.no_grad); use gradient='urv', the black-box estimate"
                )
            (grad,) = torch.autograd.grad(value.sum(), point, allow_unused=True)
        self.last_evaluation = _detached(evaluation)
        return torch.zeros_like(delta) if grad is None else grad.detach()


def _detached(evaluation: Evaluation) -> Evaluation:
    if isinstance(evaluation, CEMEvaluation):
        return CEMEvaluation(*(t.detach() for t in evaluation))
    return evaluation.detach()
