"""Grad-CAM (Selvaraju et al. 2017) and Guided Grad-CAM, over Captum.

Every sample is explained for its own target: the map of sample ``i`` weights the layer's
activation channels by the spatial mean of ``∂f_{t_i}/∂A`` of that sample alone (a batch never
shares one backpropagated score).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from torch import nn

from foxcem.attribution.captum_explainer import CaptumCall, LayerCaptumExplainer
from foxcem.attribution.layers import get_last_block, require_module
from foxcem.core.checks import check_bool, check_choice
from foxcem.core.explainer import validate_result
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["LayerGradCAMCVExplainer", "GuidedGradCAMCVExplainer", "INTERPOLATE_MODES"]

#: Interpolation modes for upsampling a 4-D layer map to the input size.
INTERPOLATE_MODES = ("nearest", "area", "bilinear", "bicubic")


def upsample_to_input(
    attributions: torch.Tensor, inputs: Inputs, interpolate_mode: str, method: str = "Grad-CAM"
) -> torch.Tensor:
    """Resize a layer map (N, C', H', W') to the input images' size (N, C', H, W).

    Raises:
        RuntimeError: for an empty map (as for every method's empty result).
        ValueError: for inputs that are not an image batch, or a map that is not 4-D.
    """
    validate_result(attributions)
    images = inputs.images(method, "upsampling the map to the input (upsample=True)")
    if attributions.dim() != 4:
        raise ValueError(
            f"`layer` gives {attributions.dim()}-D maps that cannot be upsampled "
            "to the input; pass `upsample=False` or a convolutional layer"
        )
    return LayerAttribution.interpolate(attributions, tuple(images.shape[2:]), interpolate_mode)


@register_explainer("layer_gradcam")
class LayerGradCAMCVExplainer(LayerCaptumExplainer):
    """Layer Grad-CAM: ``ReLU(Σ_k mean_{h,w}(∂f_t/∂A_k) · A_k)``, upsampled to the input size.

    Options:

    * ``layer`` — the layer whose output ``A`` is used; ``None`` (default): the output of the
      model's last convolutional block (``layer4[-1]`` of a torchvision ResNet, the last
      ``Conv2d`` of a plain stack; see :func:`~foxcem.attribution.layers.get_last_block`).
    * ``relu_attributions`` (``True``, as in the Grad-CAM paper) — keep only positive evidence;
      ``False`` returns signed maps (Captum's default).
    * ``upsample`` (``True``) — resize to the input's (H, W) with ``interpolate_mode``
      (``"bilinear"``, as in the paper; also ``nearest``, ``area``, ``bicubic``); ``False``
      returns the map at the layer's resolution.
    * ``attribute_to_layer_input`` (``False``), ``attr_dim_summation`` (``True``: sum over
      channels), ``additional_forward_args``.

    Returns:
        (N, 1, H, W) maps (with ``attr_dim_summation=False``: (N, C', H, W); without
        upsampling the layer's spatial size).
    """

    default_layer = staticmethod(get_last_block)

    algorithm_name = "Layer GradCAM"
    captum_class = LayerGradCam

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: Optional[nn.Module] = None,
        relu_attributions: bool = True,
        upsample: bool = True,
        interpolate_mode: str = "bilinear",
        attribute_to_layer_input: bool = False,
        attr_dim_summation: bool = True,
        additional_forward_args: Any = None,
    ) -> CaptumCall:
        check_choice(interpolate_mode, "interpolate_mode", INTERPOLATE_MODES)
        options = {
            "relu_attributions": check_bool(relu_attributions, "relu_attributions"),
            "attribute_to_layer_input": check_bool(
                attribute_to_layer_input, "attribute_to_layer_input"
            ),
            "attr_dim_summation": check_bool(attr_dim_summation, "attr_dim_summation"),
            "additional_forward_args": additional_forward_args,
        }
        finish = None
        if check_bool(upsample, "upsample"):

            def finish(attributions: torch.Tensor, inputs: Inputs) -> torch.Tensor:
                return upsample_to_input(attributions, inputs, interpolate_mode, "layer_gradcam")

        return CaptumCall(self.create_explainer(model, layer=layer), options, finish=finish)


@register_explainer("guided_gradcam")
class GuidedGradCAMCVExplainer(LayerCaptumExplainer):
    """Guided Grad-CAM: Guided Backpropagation times the (upsampled, ReLU-ed) Grad-CAM map.

    Options:

    * ``layer`` — default: the output of the model's last convolutional block, as Grad-CAM.
    * ``interpolate_mode`` (``"nearest"``, Captum's default) — how the Grad-CAM map is resized.
    * ``attribute_to_layer_input`` (``False``), ``additional_forward_args``.

    The model must be an ``nn.Module`` using ``nn.ReLU`` modules.

    Returns:
        Attributions of the input's shape (N, C, H, W).
    """

    default_layer = staticmethod(get_last_block)

    algorithm_name = "Guided GradCAM"
    captum_class = GuidedGradCam

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: Optional[nn.Module] = None,
        interpolate_mode: str = "nearest",
        attribute_to_layer_input: bool = False,
        additional_forward_args: Any = None,
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        options = {
            "interpolate_mode": check_choice(
                interpolate_mode, "interpolate_mode", INTERPOLATE_MODES
            ),
            "attribute_to_layer_input": check_bool(
                attribute_to_layer_input, "attribute_to_layer_input"
            ),
            "additional_forward_args": additional_forward_args,
        }
        return CaptumCall(self.create_explainer(model, layer=layer), options)
