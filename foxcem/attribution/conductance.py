"""Layer Conductance (Dhamdhere et al. 2018), over Captum."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from captum.attr import LayerConductance
from torch import nn

from foxcem.attribution.baselines import BaselineLike, path_integral_options
from foxcem.attribution.captum_explainer import CaptumCall, LayerCaptumExplainer
from foxcem.core.checks import check_bool
from foxcem.core.registry import register_explainer

__all__ = ["LayerConductanceCVExplainer"]


@register_explainer("layer_conductance")
class LayerConductanceCVExplainer(LayerCaptumExplainer):
    """Layer Conductance: the flow of Integrated Gradients through each neuron of a layer.

    Options: those of :class:`~foxcem.attribution.IntegratedGradientsCVExplainer` (``baselines``
    default zeros, ``n_steps`` 50, ``method`` ``"gausslegendre"``, ``internal_batch_size``,
    ``return_convergence_delta``, ``additional_forward_args``, ``seed``) without
    ``multiply_by_inputs``, plus ``layer`` (default: the model's last ``nn.Conv2d``) and
    ``attribute_to_layer_input`` (``False``).

    Returns:
        Attributions of the layer output's (or input's) shape; with the delta a tuple.
    """

    algorithm_name = "Layer Conductance"
    captum_class = LayerConductance

    def _prepare(
        self,
        model: Any,
        input_data: torch.Tensor,
        *,
        layer: Optional[nn.Module] = None,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[int, str, None] = "auto",
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        options = path_integral_options(
            input_data,
            baselines,
            additional_forward_args,
            n_steps,
            method,
            internal_batch_size,
            return_convergence_delta,
            seed,
        )
        options["attribute_to_layer_input"] = check_bool(
            attribute_to_layer_input, "attribute_to_layer_input"
        )
        return CaptumCall(self.create_explainer(model, layer=layer), options)
