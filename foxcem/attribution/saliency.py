"""Saliency (Simonyan et al. 2013): the absolute input gradient, over Captum."""

from __future__ import annotations

from typing import Any

from captum.attr import Saliency

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer
from foxcem.core.checks import check_bool
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["SaliencyCVExplainer"]


@register_explainer("saliency")
class SaliencyCVExplainer(CaptumExplainer):
    """Saliency: ``|∂f_t/∂x|`` (Captum's ``Saliency``).

    Options:

    * ``abs`` (``True``) — absolute value of the gradient; ``False`` gives the signed gradient
      (see also :class:`~foxcem.attribution.GradientCVExplainer`).
    * ``additional_forward_args`` — extra arguments passed to the model after the input.

    Returns:
        Attributions of the input's shape (N, C, H, W).
    """

    algorithm_name = "Saliency"
    captum_class = Saliency

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        abs: bool = True,  # noqa: A002 - Captum's name
        additional_forward_args: Any = None,
    ) -> CaptumCall:
        options = {
            "abs": check_bool(abs, "abs"),
            "additional_forward_args": additional_forward_args,
        }
        return CaptumCall(self.create_explainer(model), options)
