"""Input × Gradient and its layer form (Gradient × Activation), over Captum."""

from __future__ import annotations

from typing import Any, Optional

from captum.attr import InputXGradient, LayerGradientXActivation

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.attribution.layers import LayerLike, check_grad_kwargs
from foxcem.core.checks import check_bool
from foxcem.core.inputs import Inputs
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
        self, model: Any, input_data: Inputs, *, additional_forward_args: Any = None
    ) -> CaptumCall:
        options = {"additional_forward_args": additional_forward_args}
        return CaptumCall(self.create_explainer(model), options)


@register_explainer("layer_input_x_gradient")
class LayerInputXGradientCVExplainer(LayerCaptumExplainer):
    """Layer Input × Gradient: ``a · ∂f_t/∂a`` for the activation ``a`` of ``layer``.

    Options:

    * ``layer`` — the layer, or a list of layers (a list of results); ``None`` (default): the
      model's last ``nn.Conv2d``.
    * ``grad_kwargs`` — keyword arguments for ``torch.autograd.grad``.
    * ``attribute_to_layer_input`` (``False``) — use the layer's input instead of its output.
    * ``multiply_by_inputs`` (``True``) — ``False`` returns the layer gradient alone.
    * ``additional_forward_args`` — extra arguments passed to the model after the input.

    Returns:
        Attributions of the layer output's (or input's) shape, e.g. (N, C', H', W').
    """

    algorithm_name = "Layer Input X Gradient"
    captum_class = LayerGradientXActivation
    accepts_layer_list = True

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: LayerLike = None,
        attribute_to_layer_input: bool = False,
        multiply_by_inputs: bool = True,
        additional_forward_args: Any = None,
        grad_kwargs: Optional[dict] = None,
    ) -> CaptumCall:
        options = {
            "additional_forward_args": additional_forward_args,
            "attribute_to_layer_input": check_bool(
                attribute_to_layer_input, "attribute_to_layer_input"
            ),
            "grad_kwargs": check_grad_kwargs(grad_kwargs),
        }
        algorithm = self.create_explainer(model, layer=layer, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(algorithm, options)
