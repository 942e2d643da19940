"""Guided Backpropagation and Deconvolution (modified ReLU gradients), over Captum.

Both override the gradient of every ``nn.ReLU`` *module* of the model (functional ``relu`` calls
are not seen) through hooks that Captum removes afterwards; the model-state guard removes any that
an error leaves behind.
"""

from __future__ import annotations

from typing import Any

from captum.attr import Deconvolution, GuidedBackprop

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer
from foxcem.attribution.layers import require_module
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["GuidedBackpropCVExplainer", "DeconvolutionCVExplainer"]


class _ModifiedReluExplainer(CaptumExplainer):
    """Shared code of the two modified-ReLU methods."""

    hooks_modules = True

    def _prepare(
        self, model: Any, input_data: Inputs, *, additional_forward_args: Any = None
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        options = {"additional_forward_args": additional_forward_args}
        return CaptumCall(self.create_explainer(model), options)


@register_explainer("guided_backprop")
class GuidedBackpropCVExplainer(_ModifiedReluExplainer):
    """Guided Backpropagation (Springenberg et al. 2014): only positive gradients pass ReLUs.

    Options: ``additional_forward_args``. The model must be an ``nn.Module`` using ``nn.ReLU``
    modules.

    Returns:
        Attributions of the input's shape (N, C, H, W).
    """

    algorithm_name = "Guided Backpropagation"
    captum_class = GuidedBackprop


@register_explainer("deconvolution")
class DeconvolutionCVExplainer(_ModifiedReluExplainer):
    """Deconvolution (Zeiler & Fergus 2014): ReLU applied to the gradient on the way back.

    Options: ``additional_forward_args``. The model must be an ``nn.Module`` using ``nn.ReLU``
    modules.

    Returns:
        Attributions of the input's shape (N, C, H, W).
    """

    algorithm_name = "Deconvolution"
    captum_class = Deconvolution
