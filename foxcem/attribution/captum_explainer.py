"""The shared machinery of the Captum-backed explainers.

A Captum-backed explainer is a few lines: it names its Captum class (``captum_class``) and
implements ``_prepare(model, input_data, *, <options>)`` with *explicit* keyword arguments (named
as in Captum), which checks the options and returns a :class:`CaptumCall` — the Captum object plus
the keyword arguments for its ``attribute``. :class:`CaptumExplainer` runs the call. Because the
options are explicit, a misspelt keyword raises ``TypeError`` naming it instead of being ignored.
Baselines live in :mod:`foxcem.attribution.baselines`, seeded randomness in
:mod:`foxcem.core.seeding`.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Union

import torch
from torch import nn

from foxcem.attribution.layers import get_last_conv_layer, resolve_layer
from foxcem.attribution.model_prep import captum_ready, reused_module_error
from foxcem.core.batching import is_out_of_memory
from foxcem.core.checks import check_options
from foxcem.core.cost import watch_passes
from foxcem.core.explainer import Explainer
from foxcem.core.progress import check_progress
from foxcem.core.seeding import isolated_rng
from foxcem.core.threads import ThreadsLike, check_threads, choose_threads, cpu_threads

__all__ = ["CaptumCall", "CaptumExplainer", "LayerCaptumExplainer"]

#: Captum's notices about the hooks it registers (and removes) on non-linear layers.
_HOOK_NOTICE = r"\s*Setting (forward, )?backward hooks"


@dataclass
class CaptumCall:
    """One configured Captum attribution, ready to run.

    Attributes:
        algorithm: the Captum attribution object (``create_explainer``'s result).
        options: keyword arguments for ``algorithm.attribute`` (everything but inputs/target).
        finish: post-processing of the attribution tensor, e.g. upsampling a Grad-CAM map;
            called as ``finish(attributions, inputs)``; a convergence delta is passed through.
        seed: seed for the global RNGs Captum draws noise from (see :func:`isolated_rng`), for
            a method that draws (``random``).
        random: whether the method draws from the global RNGs (NoiseTunnel, GradientSHAP):
            then they are seeded with ``seed`` for the call, one such call at a time.
        context: a context manager entered around the Captum call (e.g. LRP rules).
    """

    algorithm: Any
    options: dict[str, Any] = field(default_factory=dict)
    finish: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    seed: Optional[int] = None
    random: bool = False
    context: Optional[contextlib.AbstractContextManager[Any]] = None
    #: samples per Captum call (``None``: all), for methods without internal batching whose
    #: rows are the samples times a fixed factor (GradientSHAP); halved while out of memory.
    chunk: Optional[int] = None
    #: CPU threads of the call (:mod:`foxcem.core.threads`): ``"auto"``, an int or ``None``.
    threads: ThreadsLike = "auto"
    #: progress over the model's forward passes: ``"auto"`` (a long run on a terminal), a bool.
    progress: Union[bool, str] = "auto"
    #: what runs, for progress and long-run messages.
    label: str = "attribution"

    def total_rows(self, num_samples: int) -> int:
        """About how many rows the whole call sends through the model."""
        rows = num_samples
        for key in ("n_steps", "n_samples", "nt_samples"):
            factor = self.options.get(key)
            if isinstance(factor, int) and not isinstance(factor, bool):
                rows *= factor
        return rows

    def rows_per_pass(self, num_samples: int) -> int:
        """About how many rows one forward pass of the model takes (the thread choice)."""
        batch = self.options.get("internal_batch_size")
        if isinstance(batch, int):
            return batch
        rows = min(self.chunk or num_samples, num_samples)
        for key in ("n_steps", "n_samples", "perturbations_per_eval", "nt_samples_batch_size"):
            factor = self.options.get(key)
            if isinstance(factor, int) and not isinstance(factor, bool):
                rows *= factor
        return rows

    def run(self, inputs: torch.Tensor, target: torch.Tensor) -> Any:
        """``algorithm.attribute(inputs, target=target, **options)``, then ``finish``.

        Args:
            inputs: the checked (N, C, H, W) input (never modified; a detached copy that
                requires grad is handed to Captum).
            target: the (N,) int64 per-sample target.
        """
        # A fresh leaf that requires grad: the caller's tensor is never touched, Captum does not
        # warn, and layer methods work with the parameters frozen by the model-state guard.
        inputs = inputs.detach().requires_grad_(True)
        context = self.context if self.context is not None else contextlib.nullcontext()
        n = inputs.shape[0]
        rows = self.rows_per_pass(n)
        passes = -(-self.total_rows(n) // max(rows, 1))
        with (
            cpu_threads(choose_threads(self.threads, rows * inputs[0].numel(), inputs.device)),
            watch_passes(
                _model_of(self.algorithm),
                passes,
                self._what(inputs),
                self._cheaper(inputs),
                self.progress,
            ),  # fmt: skip
            context,
            captum_ready(self.algorithm),
            isolated_rng(self.seed, inputs.device) if self.random else contextlib.nullcontext(),
            warnings.catch_warnings(),
        ):
            # Captum announces the hooks it sets on non-linearities; the model-state guard
            # removes whatever is left, so the notice is noise here.
            warnings.filterwarnings("ignore", message=_HOOK_NOTICE, category=UserWarning)
            try:
                result = self._attribute_fitting(inputs, target)
            except RuntimeError as exc:
                if "more than once" not in str(exc):
                    raise
                method = type(self.algorithm).__name__
                raise reused_module_error(self.algorithm, inputs.detach(), method) from None
        if self.finish is None:
            return result
        if (
            isinstance(result, tuple)
            and len(result) == 2
            and self.options.get("return_convergence_delta", False)
        ):
            return self.finish(result[0], inputs), result[1]
        return self.finish(result, inputs)

    def _what(self, inputs: torch.Tensor) -> str:
        shape = "×".join(map(str, inputs.shape[1:]))
        return f"{self.label} on {inputs.shape[0]} inputs of {shape}"

    def _cheaper(self, inputs: torch.Tensor) -> list[str]:
        hints = ["a GPU (model and inputs on 'cuda')"] if inputs.device.type == "cpu" else []
        for key in ("n_steps", "n_samples", "nt_samples"):
            if isinstance(self.options.get(key), int):
                hints.append(f"fewer {key} (now {self.options[key]})")
        return hints

    def _attribute_fitting(self, inputs: torch.Tensor, target: torch.Tensor) -> Any:
        """``attribute`` in chunks of ``chunk`` samples; on a device out of memory the chunk
        (or the internal batch) is halved and the call retried, down to one row."""
        while True:
            try:
                return self._attribute_chunks(inputs, target)
            except RuntimeError as exc:
                if not is_out_of_memory(exc) or not self._shrink(inputs):
                    raise
                if inputs.is_cuda:
                    torch.cuda.empty_cache()

    def _shrink(self, inputs: torch.Tensor) -> bool:
        if "internal_batch_size" in self.options:
            rows = self.options["internal_batch_size"] or inputs.shape[0] * self.options.get(
                "n_steps", 50
            )
            self.options["internal_batch_size"] = rows // 2
            return rows > 1
        rows = self.chunk or inputs.shape[0]
        self.chunk = rows // 2
        return rows > 1

    def _attribute_chunks(self, inputs: torch.Tensor, target: torch.Tensor) -> Any:
        n = inputs.shape[0]
        if self.chunk is None or self.chunk >= n:
            return self.algorithm.attribute(inputs, target=target, **self.options)
        parts = []
        for start in range(0, n, self.chunk):
            rows = slice(start, start + self.chunk)
            options = {
                k: v[rows] if isinstance(v, torch.Tensor) and v.shape[:1] == (n,) else v
                for k, v in self.options.items()
            }
            extra = options.get("additional_forward_args")
            if isinstance(extra, tuple):
                options["additional_forward_args"] = tuple(
                    a[rows] if isinstance(a, torch.Tensor) and a.shape[:1] == (n,) else a
                    for a in extra
                )
            parts.append(self.algorithm.attribute(inputs[rows], target=target[rows], **options))
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(items) for items in zip(*parts))
        return torch.cat(parts)


def _model_of(algorithm: Any) -> Any:
    """The model a Captum attribution object runs (through a NoiseTunnel to its method)."""
    inner = getattr(algorithm, "attribution_method", algorithm)
    return getattr(inner, "forward_func", None)


class CaptumExplainer(Explainer):
    """Base of the explainers that run a Captum attribution.

    Subclasses set :attr:`captum_class` and implement :meth:`_prepare` with explicit keyword
    options; :meth:`create_explainer` builds the Captum object, :meth:`_attribute` runs it with the
    resolved per-sample target. Input checks, target resolution, the model-state guard and result
    validation come from :class:`~foxcem.Explainer`.
    """

    #: The Captum attribution class built by :meth:`create_explainer`.
    captum_class: ClassVar[type]
    #: Whether ``baselines`` is a distribution (K, C, H, W) rather than one baseline per sample
    #: (the SHAP methods); a NoiseTunnel then draws one baseline per noisy copy.
    takes_baseline_distribution: ClassVar[bool] = False

    def __init__(self) -> None:
        # Explicit, so that a stray constructor argument raises a TypeError that names it
        # (options belong to ``calculate_features``).
        super().__init__()

    def create_explainer(self, model: Any, **kwargs: Any) -> Any:
        """The Captum attribution object for ``model``.

        Args:
            model: the model (or forward function) to explain.
            **kwargs: arguments of the Captum class's constructor (e.g. ``multiply_by_inputs``);
                an unknown one raises ``TypeError``.
        """
        return self.captum_class(model, **kwargs)

    @abstractmethod
    def _prepare(self, model: Any, input_data: torch.Tensor, **kwargs: Any) -> CaptumCall:
        """Check the options and build the call.

        Implementations list their options as explicit keyword-only arguments (Captum's names),
        so a misspelt option raises ``TypeError`` naming it.
        """

    def options(self) -> list[str]:
        """The names of this method's options (keyword arguments of ``calculate_features``):
        its own, and ``threads`` (CPU threads of the call, :mod:`foxcem.core.threads`)."""
        parameters = inspect.signature(self._prepare).parameters
        own = [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
        return own + ["threads"] + ([] if "show_progress" in own else ["show_progress"])

    def _attribute(
        self, model: Any, input_data: torch.Tensor, target: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        parameters = inspect.signature(self._prepare).parameters.values()
        open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters)  # e.g. NoiseTunnel's
        if not open_ended:
            check_options(self.registry_name or type(self).__name__, kwargs, self.options())
        threads = check_threads(kwargs.pop("threads", "auto"))
        own_bar = "show_progress" in inspect.signature(self._prepare).parameters
        progress = False if own_bar else check_progress(kwargs.pop("show_progress", "auto"))
        call = self._prepare(model, input_data, **kwargs)
        call.threads, call.progress = threads, progress
        call.label = self.registry_name or type(self).__name__
        return call.run(input_data, target)


class LayerCaptumExplainer(CaptumExplainer):
    """Base of the Captum layer methods: ``layer`` defaults to the model's last ``nn.Conv2d``."""

    hooks_modules = True
    #: The layer explained when none is given: the last ``nn.Conv2d`` (Grad-CAM overrides it).
    default_layer = staticmethod(get_last_conv_layer)

    def create_explainer(self, model: Any, layer: Optional[nn.Module] = None, **kwargs: Any) -> Any:
        """The Captum layer-attribution object for ``model`` and ``layer``.

        Args:
            model: the model to explain.
            layer: the layer whose input/output is attributed; ``None``: the model's last
                ``nn.Conv2d`` (a model without one raises ``ValueError``).
            **kwargs: other arguments of the Captum class's constructor.
        """
        layer = resolve_layer(model, layer, type(self).default_layer)
        return self.captum_class(model, layer=layer, **kwargs)
