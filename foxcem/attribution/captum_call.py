"""One configured Captum attribution, ready to run: the Captum object, its options, and how the
call is run — in chunks that fit the device, with the library's thread choice, progress over the
model's forward passes, seeded randomness for the methods that draw, and the model prepared for
Captum's hooks."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch

from foxcem.attribution.model_prep import captum_ready, reused_module_error
from foxcem.core.batching import is_out_of_memory
from foxcem.core.cost import watch_passes
from foxcem.core.inputs import Inputs
from foxcem.core.seeding import isolated_rng
from foxcem.core.threads import ThreadsLike, choose_threads, cpu_threads

__all__ = ["CaptumCall"]

#: Captum's notices about the hooks it registers (and removes) on non-linear layers.
_HOOK_NOTICE = r"\s*Setting (forward, )?backward hooks"
_BATCH_NOTICE = r"You are providing multiple inputs for Lime / Kernel SHAP"


@dataclass
class CaptumCall:
    """One configured Captum attribution, ready to run.

    Attributes:
        algorithm: the Captum attribution object (``create_explainer``'s result).
        options: keyword arguments for ``algorithm.attribute`` (everything but inputs/target).
        finish: post-processing of the attribution tensor, e.g. upsampling a Grad-CAM map;
            called as ``finish(attributions, inputs)`` with the checked
            :class:`~foxcem.core.inputs.Inputs`; a convergence delta is passed through.
        seed: seed for the global RNGs Captum draws noise from (see :func:`isolated_rng`), for
            a method that draws (``random``).
        random: whether the method draws from the global RNGs (NoiseTunnel, GradientSHAP):
            then they are seeded with ``seed`` for the call, one such call at a time.
        context: a context manager entered around the Captum call (e.g. LRP rules).
    """

    algorithm: Any
    options: dict[str, Any] = field(default_factory=dict)
    finish: Optional[Callable[[Any, Inputs], Any]] = None
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

    #: forward passes of the whole call and rows per pass, when the method knows them better
    #: than the options tell (the perturbation methods).
    passes: Optional[int] = None
    rows: Optional[int] = None
    #: what the method explains instead of the caller's inputs (the embeddings of token ids).
    inputs: Optional[Inputs] = None

    def rows_per_pass(self, num_samples: int) -> int:
        """About how many rows one forward pass of the model takes (the thread choice)."""
        if self.rows is not None:
            return self.rows
        batch = self.options.get("internal_batch_size")
        if isinstance(batch, int):
            return batch
        rows = min(self.chunk or num_samples, num_samples)
        for key in ("n_steps", "n_samples", "perturbations_per_eval", "nt_samples_batch_size"):
            factor = self.options.get(key)
            if isinstance(factor, int) and not isinstance(factor, bool):
                rows *= factor
        return rows

    def run(self, inputs: Inputs, target: torch.Tensor) -> Any:
        """``algorithm.attribute(inputs, target=target, **options)``, then ``finish``.

        Args:
            inputs: the checked inputs (never modified: fresh leaves that require grad — the
                floating ones — are handed to Captum).
            target: the (N,) int64 per-sample target.
        """
        # Fresh leaves: the caller's tensors are never touched, Captum does not warn, and layer
        # methods work with the parameters frozen by the model-state guard.
        context = self.context if self.context is not None else contextlib.nullcontext()
        n = inputs.num_samples
        rows = self.rows_per_pass(n)
        passes = self.passes or -(-self.total_rows(n) // max(rows, 1))
        with (
            cpu_threads(choose_threads(self.threads, rows * inputs.sample_numel, inputs.device)),
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
            # LIME and KernelSHAP fit one surrogate per sample of a batch, by design here.
            warnings.filterwarnings("ignore", message=_BATCH_NOTICE, category=UserWarning)
            try:
                result = self._attribute_fitting(inputs, target)
            except RuntimeError as exc:
                if "more than once" not in str(exc):
                    raise
                method = type(self.algorithm).__name__
                raise reused_module_error(self.algorithm, inputs, method) from None
            except IndexError as exc:
                if inputs.has_integers and "index out of range" in str(exc):
                    raise ValueError(
                        "`input_data` (or `baselines`) holds token ids outside an embedding's range"
                    ) from None
                raise
        if self.finish is None:
            return result
        if (
            isinstance(result, tuple)
            and len(result) == 2
            and self.options.get("return_convergence_delta", False)
        ):
            return self.finish(result[0], inputs), result[1]
        return self.finish(result, inputs)

    def _what(self, inputs: Inputs) -> str:
        return f"{self.label} on {inputs.num_samples} inputs of {inputs.sample_shapes()}"

    def _cheaper(self, inputs: Inputs) -> list[str]:
        hints = ["a GPU (model and inputs on 'cuda')"] if inputs.device.type == "cpu" else []
        for key in ("n_steps", "n_samples", "nt_samples"):
            if isinstance(self.options.get(key), int):
                hints.append(f"fewer {key} (now {self.options[key]})")
        return hints

    def _attribute_fitting(self, inputs: Inputs, target: torch.Tensor) -> Any:
        """``attribute`` in chunks of ``chunk`` samples; on a device out of memory the chunk
        (or the internal batch) is halved and the call retried, down to one row."""
        while True:
            try:
                return self._attribute_chunks(inputs, target)
            except RuntimeError as exc:
                if not is_out_of_memory(exc) or not self._shrink(inputs.num_samples):
                    raise
                if inputs.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _shrink(self, n: int) -> bool:
        if "internal_batch_size" in self.options:
            rows = self.options["internal_batch_size"] or n * self.options.get("n_steps", 50)
            self.options["internal_batch_size"] = rows // 2
            return rows > 1
        rows = self.chunk or n
        self.chunk = rows // 2
        return rows > 1

    def _attribute_chunks(self, inputs: Inputs, target: torch.Tensor) -> Any:
        n = inputs.num_samples
        if self.chunk is None or self.chunk >= n:
            return self.algorithm.attribute(inputs.for_gradients(), target=target, **self.options)
        parts = []
        for start in range(0, n, self.chunk):
            rows = slice(start, start + self.chunk)
            options = {k: _rows_of(v, rows, n) for k, v in self.options.items()}
            parts.append(
                self.algorithm.attribute(
                    inputs.rows(rows).for_gradients(), target=target[rows], **options
                )
            )
        return _concatenate(parts)


def _rows_of(value: Any, rows: slice, n: int) -> Any:
    """The rows of an option that holds one row per sample (a tensor, or a tuple of them)."""
    if isinstance(value, torch.Tensor) and value.shape[:1] == (n,):
        return value[rows]
    if isinstance(value, tuple):
        return tuple(_rows_of(item, rows, n) for item in value)
    return value


def _concatenate(parts: list[Any]) -> Any:
    """Chunks' results joined along the samples (tensors, tuples of them, lists of them)."""
    if isinstance(parts[0], (tuple, list)):
        return type(parts[0])(_concatenate(list(items)) for items in zip(*parts))
    return torch.cat(parts)


def _model_of(algorithm: Any) -> Any:
    """The model a Captum attribution object runs (through a NoiseTunnel to its method)."""
    inner = getattr(algorithm, "attribution_method", algorithm)
    return getattr(inner, "forward_func", None)
