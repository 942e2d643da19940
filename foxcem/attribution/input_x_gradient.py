"""Input × Gradient and its layer form (Gradient × Activation), over Captum."""

from __future__ import annotations

from typing import Any, Optional

import torch
from captum.attr import InputXGradient, LayerGradientXActivation
from torch import nn

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.core.checks import check_bool
from foxcem.core.registry import register_explainer

__all__ = ["InputXGradientCVExplainer", "LayerInputXGradientCVExplainer"]


@register_explainer("input_x_gradient")
class InputXGradientCVExplainer(CaptumExplainer):
    """Input × Gradient: ``x · ∂f_t/∂x``.

    Options: ``additional_forward_args`` — extra arguments passed to the model after the input.

    Returns:
        Attributions of the input's shape (N, C, H, W).
    """

    algorithm_name = "Input X Gradient"
    captum_class = InputXGradient

    def _prepare(
        self, model: Any, input_data: torch.Tensor, *, additional_forward_args: Any = None
    ) -> CaptumCall:
        options = {"additional_forward_args": additional_forward_args}
        return CaptumCall(self.create_explainer(model), options)


@register_explainer("layer_input_x_gradient")
class LayerInputXGradientCVExplainer(LayerCaptumExplainer):
    """Layer Input × Gradient: ``a · ∂f_t/∂a`` for the activation ``a`` of ``layer``.

    Options:

    * ``layer`` — the layer; ``None`` (default): the model's last ``nn.Conv2d``.
    * ``attribute_to_layer_input`` (``False``) — use the layer's input instead of its output.
    * ``multiply_by_inputs`` (``True``) — ``False`` returns the layer gradient alone.
    * ``additional_forward_args`` — extra arguments passed to the model after the input.

    Returns:
        Attributions of the layer output's (or input's) shape, e.g. (N, C', H', W').
    """

    algorithm_name = "Layer Input X Gradient"
    captum_class = LayerGradientXActivation

    def _prepare(
        self,
        model: Any,
        input_data: torch.Tensor,
        *,
        layer: Optional[nn.Module] = None,
        attribute_to_layer_input: bool = False,
        multiply_by_inputs: bool = True,
        additional_forward_args: Any = None,
    ) -> CaptumCall:
        options = {
            "additional_forward_args": additional_forward_args,
            "attribute_to_layer_input": check_bool(
                attribute_to_layer_input, "attribute_to_layer_input"
            ),
        }
        algorithm = self.create_explainer(model, layer=layer, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(algorithm, options)
