"""Occlusion (Zeiler & Fergus 2014): the score drop when a window is replaced by a baseline."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from captum.attr import Occlusion

from foxcem.attribution.baselines import BaselineLike, resolve_baselines
from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer
from foxcem.core.checks import check_bool, check_positive_int
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


@register_explainer("occlusion")
class OcclusionCVExplainer(CaptumExplainer):
    """Occlusion: for every window position, ``f_t(x) − f_t(x with the window = baseline)``,
    shared among the window's features and averaged over the windows covering each feature.

    Options:

    * ``sliding_window_shapes`` ((1, 1, 1)) — the occluded patch (C', H', W'); one entry per
      non-batch dimension. One forward pass per position, so choose it with the input size in
      mind (e.g. ``(3, 8, 8)`` with ``strides=(3, 4, 4)`` for an RGB image).
    * ``strides`` (``None``: 1 in every dimension) — an int or a tuple like the window.
    * ``baselines`` — the value put into the window: ``None``/``"zeros"`` (default), a number,
      a tensor (N, C, H, W)/(1, C, H, W), or ``"random"`` (standard normal, seeded by ``seed``).
    * ``perturbations_per_eval`` (1) — occluded copies per forward pass.
    * ``show_progress`` (``False``), ``additional_forward_args``, ``seed`` (0).

    Returns:
        Attributions of the input's shape (N, C, H, W). Captum divides by float32 window counts,
        so a float64 input gets float32 attributions.
    """

    algorithm_name = "Occlusion"
    needs_gradients = False
    captum_class = Occlusion

    def _prepare(
        self,
        model: Any,
        input_data: torch.Tensor,
        *,
        sliding_window_shapes: tuple[int, ...] = (1, 1, 1),
        strides: Union[None, int, tuple[int, ...]] = None,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        perturbations_per_eval: int = 1,
        show_progress: bool = False,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        ndim = input_data.dim() - 1
        window = _check_window(sliding_window_shapes, "sliding_window_shapes", ndim, False)
        if any(w > s for w, s in zip(window, input_data.shape[1:])):
            raise ValueError(
                f"`sliding_window_shapes` {window} is larger than the input sample "
                f"{tuple(input_data.shape[1:])}"
            )
        options = {
            "sliding_window_shapes": window,
            "strides": None
            if strides is None
            else _check_window(strides, "strides", ndim, allow_int=True),
            "baselines": resolve_baselines(baselines, input_data, seed),
            "additional_forward_args": additional_forward_args,
            "perturbations_per_eval": check_positive_int(
                perturbations_per_eval, "perturbations_per_eval"
            ),
            "show_progress": check_bool(show_progress, "show_progress"),
        }
        return CaptumCall(self.create_explainer(model), options)
