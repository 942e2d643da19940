"""Layer Conductance (Dhamdhere et al. 2018), over Captum."""

from __future__ import annotations

from typing import Any, Optional, Union

from captum.attr import LayerConductance
from torch import nn

from foxcem.attribution.baselines import BaselineLike, path_integral_options
from foxcem.attribution.captum_explainer import CaptumCall, LayerCaptumExplainer
from foxcem.attribution.embedding import embeddings_as_inputs
from foxcem.attribution.layers import check_grad_kwargs
from foxcem.core.checks import check_bool
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["LayerConductanceCVExplainer"]


@register_explainer("layer_conductance")
class LayerConductanceCVExplainer(LayerCaptumExplainer):
    """Layer Conductance: the flow of Integrated Gradients through each neuron of a layer.

    Options: those of :class:`~foxcem.attribution.IntegratedGradientsCVExplainer` (``baselines``
    default zeros, ``n_steps`` 50, ``method`` ``"gausslegendre"``, ``internal_batch_size``,
    ``return_convergence_delta``, ``additional_forward_args``, ``seed``) without
    ``multiply_by_inputs``, plus ``layer`` (default: the model's last ``nn.Conv2d``) and
    ``attribute_to_layer_input`` (``False``), ``grad_kwargs``. For token ids (N, T) at their
    ``nn.Embedding`` the path runs between the embeddings of the ids and of the baseline ids.

    Returns:
        Attributions of the layer output's (or input's) shape; with the delta a tuple.
    """

    algorithm_name = "Layer Conductance"
    captum_class = LayerConductance

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: Optional[nn.Module] = None,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[int, str, None] = "auto",
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: Optional[dict] = None,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        call_inputs, context = input_data, None
        if input_data.has_integers:  # token ids: run on their embeddings
            call_inputs, baselines, layer, context = embeddings_as_inputs(
                model, layer, input_data, baselines, "layer_conductance"
            )
        options = path_integral_options(
            call_inputs,
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
        options["grad_kwargs"] = check_grad_kwargs(grad_kwargs)
        if context is None:
            return CaptumCall(self.create_explainer(model, layer=layer), options)
        algorithm = LayerConductance(model, layer=layer)  # the stand-in, swapped in by `context`
        return CaptumCall(algorithm, options, context=context, inputs=call_inputs)
