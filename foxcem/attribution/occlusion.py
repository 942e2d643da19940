"""Occlusion (Zeiler & Fergus 2014): the score drop when a window is replaced by a baseline."""

from __future__ import annotations

import math
from typing import Any, Optional, Union

from captum.attr import Occlusion

from foxcem.attribution.baselines import BaselineLike, resolve_baselines
from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer
from foxcem.core.checks import check_positive_int
from foxcem.core.inputs import Inputs
from foxcem.core.progress import wants_progress
from foxcem.core.registry import register_explainer

__all__ = ["OcclusionCVExplainer"]


def _check_window(value: object, name: str, ndim: int, allow_int: bool) -> Any:
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return check_positive_int(value, name)
    if not isinstance(value, tuple) or len(value) != ndim:
        raise ValueError(
            f"`{name}` must be a tuple of {ndim} positive ints (one per non-batch dimension), "
            f"got {value!r}"
        )
    return tuple(check_positive_int(v, name) for v in value)


def _positions(sample: Any, window: Any, strides: Any) -> int:
    """How many window positions Occlusion evaluates (its forward passes, at one per pass)."""
    steps = strides if isinstance(strides, tuple) else (strides or 1,) * len(window)
    return math.prod((s - w) // t + 1 for s, w, t in zip(sample, window, steps))


def default_window(sample: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(window, strides) for a sample (C, H, W): all channels, about 1/14 of each side, strides
    of half the window."""
    window = (sample[0],) + tuple(max(1, round(side / 14)) for side in sample[1:])
    strides = (sample[0],) + tuple(max(1, w // 2) for w in window[1:])
    return window, strides


@register_explainer("occlusion")
class OcclusionCVExplainer(CaptumExplainer):
    """Occlusion: for every window position, ``f_t(x) − f_t(x with the window = baseline)``,
    shared among the window's features and averaged over the windows covering each feature.

    Options:

    * ``sliding_window_shapes`` — the occluded patch (C', H', W'); one entry per non-batch
      dimension. Default: all channels and about 1/14 of each spatial side (1×1 on 8×8 digits,
      2×2 on 28×28, 16×16 on 224×224), so that an image of any size takes about 700 positions.
    * ``strides`` — an int or a tuple like the window. Default: half the window (1 where the
      window is 1); with a given window, 1 in every dimension.
    * ``baselines`` — the value put into the window: ``None``/``"zeros"`` (default), a number,
      a tensor (N, C, H, W)/(1, C, H, W), or ``"random"`` (standard normal, seeded by ``seed``).
    * ``perturbations_per_eval`` — occluded copies per forward pass (default: as many as keep a
      pass near 256 rows).
    * ``show_progress`` (``"auto"``: a bar for many positions when stderr is a terminal),
      ``additional_forward_args``, ``seed`` (0).

    Any input shape, and tuples of inputs (one window per input), with ``sliding_window_shapes``
    given; the default window needs an image batch (N, C, H, W).

    Returns:
        Attributions of the input's shape (a tuple for a tuple of inputs). Captum divides by
        float32 window counts, so a float64 input gets float32 attributions.
    """

    algorithm_name = "Occlusion"
    needs_gradients = False
    accepts_integers = True
    captum_class = Occlusion

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        sliding_window_shapes: Optional[tuple[int, ...]] = None,
        strides: Union[None, int, tuple[int, ...]] = None,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        perturbations_per_eval: Optional[int] = None,
        show_progress: Union[bool, str] = "auto",
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        inputs = input_data
        if sliding_window_shapes is None:
            images = inputs.images(
                "occlusion", "the default window (about 1/14 of each side; give "
                "`sliding_window_shapes` for other inputs)",
            )  # fmt: skip
            window, default_strides = default_window(tuple(images.shape[1:]))
            strides = default_strides if strides is None else strides
            windows, stride_list = [window], [strides]
        elif inputs.is_tuple:
            if not isinstance(sliding_window_shapes, tuple) or len(sliding_window_shapes) != len(
                inputs.tensors
            ):
                raise ValueError(
                    "`sliding_window_shapes` must hold one window (a tuple) per input tensor "
                    f"({len(inputs.tensors)}) for a tuple of inputs"
                )
            windows = list(sliding_window_shapes)
            if strides is not None and (
                not isinstance(strides, tuple) or len(strides) != len(windows)
            ):
                raise ValueError("`strides` must hold one entry per input tensor")
            stride_list = list(strides) if strides is not None else [None] * len(windows)
        else:
            windows, stride_list = [sliding_window_shapes], [strides]
        checked_windows, checked_strides = [], []
        for tensor, window, stride in zip(inputs.tensors, windows, stride_list):
            ndim = tensor.dim() - 1
            window = _check_window(window, "sliding_window_shapes", ndim, False)
            if any(w > s for w, s in zip(window, tensor.shape[1:])):
                raise ValueError(
                    f"`sliding_window_shapes` {window} is larger than the input sample "
                    f"{tuple(tensor.shape[1:])}"
                )
            checked_windows.append(window)
            checked_strides.append(
                None if stride is None else _check_window(stride, "strides", ndim, allow_int=True)
            )
        if perturbations_per_eval is None:
            perturbations_per_eval = max(1, 256 // inputs.num_samples)
        positions = sum(
            _positions(t.shape[1:], w, s)
            for t, w, s in zip(inputs.tensors, checked_windows, checked_strides)
        )
        options = {
            "sliding_window_shapes": tuple(checked_windows)
            if inputs.is_tuple
            else checked_windows[0],
            "strides": (tuple(checked_strides) if inputs.is_tuple else checked_strides[0]),
            "baselines": resolve_baselines(baselines, inputs, seed),
            "additional_forward_args": additional_forward_args,
            "perturbations_per_eval": check_positive_int(
                perturbations_per_eval, "perturbations_per_eval"
            ),
            "show_progress": wants_progress(show_progress, positions, "show_progress"),
        }
        return CaptumCall(self.create_explainer(model), options)
