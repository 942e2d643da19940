"""Integrated Gradients and Layer Integrated Gradients (Sundararajan et al. 2017) over Captum."""

from __future__ import annotations

from typing import Any, Optional, Union

from captum.attr import IntegratedGradients, LayerIntegratedGradients

from foxcem.attribution.baselines import BaselineLike, path_integral_options
from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.attribution.layers import LayerLike, check_grad_kwargs
from foxcem.core.checks import check_bool
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["IntegratedGradientsCVExplainer", "LayerIntegratedGradientsCVExplainer"]


@register_explainer("integrated_gradients")
class IntegratedGradientsCVExplainer(CaptumExplainer):
    """Integrated Gradients: ``(x − x') · ∫₀¹ ∂f_t(x' + α(x − x'))/∂x dα``.

    Options of :meth:`~foxcem.Explainer.calculate_features` (Captum's names):

    * ``baselines`` — the reference ``x'``: ``None``/``"zeros"`` (default: zeros), a number, a
      tensor (N, C, H, W) or (1, C, H, W), or ``"random"`` (standard normal drawn from a
      ``torch.Generator`` seeded with ``seed``; never drawn unless asked for).
    * ``additional_forward_args`` — extra arguments passed to the model after the input.
    * ``n_steps`` (50) — number of integration points; ``method`` (``"gausslegendre"``) — one
      of ``riemann_right``, ``riemann_left``, ``riemann_middle``, ``riemann_trapezoid``,
      ``gausslegendre``.
    * ``internal_batch_size`` (``"auto"``) — at most this many scaled inputs per
      forward/backward pass (splits along the steps); ``None``: one pass; ``"auto"``: a
      cache-friendly size on the CPU, everything on a GPU, halved while out of memory.
    * ``return_convergence_delta`` (``False``) — also return the completeness gap
      ``Σ attr − (f_t(x) − f_t(x'))`` per sample: the result is then ``(attributions, delta)``.
    * ``multiply_by_inputs`` (``True``) — global attribution (times ``x − x'``) or local.
    * ``seed`` (0) — seed of a ``"random"`` baseline.

    Returns:
        Attributions of the input's shape (N, …) (a tuple of them for a tuple of inputs); with
        ``return_convergence_delta`` a tuple ``(attributions, delta)`` with ``delta`` of shape
        (N,).
    """

    algorithm_name = "Integrated Gradients"
    captum_class = IntegratedGradients

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[int, str, None] = "auto",
        return_convergence_delta: bool = False,
        multiply_by_inputs: bool = True,
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
        algorithm = self.create_explainer(model, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(algorithm, options)


@register_explainer("layer_integrated_gradients")
class LayerIntegratedGradientsCVExplainer(LayerCaptumExplainer):
    """Layer Integrated Gradients: Integrated Gradients of a layer's output (or input).

    The path still runs in input space (from ``baselines`` to the input); the attribution is
    given to the neurons of ``layer``.

    Options: those of :class:`IntegratedGradientsCVExplainer`, plus

    * ``layer`` — the layer to attribute to, or a list of layers (the result is then a list);
      ``None`` (default): the model's last ``nn.Conv2d`` (a model without one raises
      ``ValueError``). For a text model, the embedding: ``input_data`` are then token ids
      (N, T) and ``baselines`` token ids too (an int such as the pad token, or (N, T)/(1, T)).
    * ``grad_kwargs`` — keyword arguments for ``torch.autograd.grad``.
    * ``attribute_to_layer_input`` (``False``) — attribute to the layer's input instead of its
      output.

    Returns:
        Attributions of the layer output's shape (the layer input's with
        ``attribute_to_layer_input=True``), e.g. (N, C', H', W') for a convolution or
        (N, T, E) for an embedding; a list of them for a list of layers; with
        ``return_convergence_delta`` a tuple ``(attributions, delta)``.
    """

    algorithm_name = "Layer Integrated Gradients"
    captum_class = LayerIntegratedGradients
    accepts_layer_list = True

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: LayerLike = None,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Union[int, str, None] = "auto",
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        multiply_by_inputs: bool = True,
        grad_kwargs: Optional[dict] = None,
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
        options["grad_kwargs"] = check_grad_kwargs(grad_kwargs)
        algorithm = self.create_explainer(model, layer=layer, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(algorithm, options)
