"""DeepLIFT and DeepLIFT-SHAP (Shrikumar et al. 2017; Lundberg & Lee 2017) and their layer forms.

Captum implements the Rescale rule through hooks on the model's non-linearity *modules*
(``nn.ReLU``, ``nn.Sigmoid``, ``nn.Tanh``, ``nn.MaxPool2d``…); a module used twice in one forward
pass is not supported by DeepLIFT. The baselines are deterministic by default (zeros); a random
reference is drawn only on request, from a seeded generator.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from captum.attr import DeepLift, DeepLiftShap, LayerDeepLift, LayerDeepLiftShap
from torch import nn

from foxcem.attribution.baselines import (
    BaselineLike,
    resolve_baseline_distribution,
    resolve_baselines,
)
from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.attribution.layers import check_grad_kwargs, require_module
from foxcem.core.checks import check_bool
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = [
    "DeepLIFTCVExplainer",
    "LayerDeepLIFTCVExplainer",
    "DeepLIFTSHAPCVExplainer",
    "LayerDeepLIFTSHAPCVExplainer",
]


def _options(
    return_convergence_delta: bool,
    additional_forward_args: Any,
    custom_attribution_func: Optional[Callable[..., tuple[torch.Tensor, ...]]],
) -> dict[str, Any]:
    if custom_attribution_func is not None and not callable(custom_attribution_func):
        raise TypeError(
            "`custom_attribution_func` must be callable, "
            f"got {type(custom_attribution_func).__name__}"
        )
    return {
        "additional_forward_args": additional_forward_args,
        "return_convergence_delta": check_bool(
            return_convergence_delta, "return_convergence_delta"
        ),
        "custom_attribution_func": custom_attribution_func,
    }


def _layer_options(
    return_convergence_delta: bool,
    additional_forward_args: Any,
    custom_attribution_func: Optional[Callable[..., tuple[torch.Tensor, ...]]],
    attribute_to_layer_input: bool,
) -> dict[str, Any]:
    options = _options(return_convergence_delta, additional_forward_args, custom_attribution_func)
    options["attribute_to_layer_input"] = check_bool(
        attribute_to_layer_input, "attribute_to_layer_input"
    )
    return options


@register_explainer("deeplift")
class DeepLIFTCVExplainer(CaptumExplainer):
    """DeepLIFT (Rescale rule) against a reference input.

    Options:

    * ``baselines`` — the reference: ``None``/``"zeros"`` (default), a number, a tensor
      (N, C, H, W) or (1, C, H, W), or ``"random"`` (standard normal, seeded by ``seed``).
    * ``return_convergence_delta`` (``False``) — also return ``Σ attr − (f_t(x) − f_t(x'))``.
    * ``custom_attribution_func`` — Captum's hook to combine multipliers differently.
    * ``multiply_by_inputs`` (``True``), ``eps`` (1e-10) — Captum's constructor arguments.
    * ``additional_forward_args``, ``seed`` (0).

    Returns:
        Attributions of the input's shape (N, C, H, W) (with the delta: a tuple).
    """

    hooks_modules = True

    algorithm_name = "DeepLIFT"
    captum_class = DeepLift

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        custom_attribution_func: Optional[Callable[..., tuple[torch.Tensor, ...]]] = None,
        multiply_by_inputs: bool = True,
        eps: float = 1e-10,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        options = _options(
            return_convergence_delta, additional_forward_args, custom_attribution_func
        )
        options["baselines"] = resolve_baselines(baselines, input_data, seed)
        algorithm = self.create_explainer(model, multiply_by_inputs=multiply_by_inputs, eps=eps)
        return CaptumCall(algorithm, options)


@register_explainer("layer_deeplift")
class LayerDeepLIFTCVExplainer(LayerCaptumExplainer):
    """DeepLIFT attributions of a layer's neurons.

    Options: those of :class:`DeepLIFTCVExplainer` (without ``eps``), plus ``layer`` (default:
    the model's last ``nn.Conv2d``), ``attribute_to_layer_input`` (``False``) and
    ``grad_kwargs``.

    Returns:
        Attributions of the layer output's (or input's) shape.
    """

    algorithm_name = "Layer DeepLIFT"
    captum_class = LayerDeepLift

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: Optional[nn.Module] = None,
        baselines: BaselineLike = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        custom_attribution_func: Optional[Callable[..., tuple[torch.Tensor, ...]]] = None,
        multiply_by_inputs: bool = True,
        grad_kwargs: Optional[dict] = None,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        options = _layer_options(
            return_convergence_delta,
            additional_forward_args,
            custom_attribution_func,
            attribute_to_layer_input,
        )
        options["grad_kwargs"] = check_grad_kwargs(grad_kwargs)
        options["baselines"] = resolve_baselines(baselines, input_data, seed)
        algorithm = self.create_explainer(model, layer=layer, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(algorithm, options)


@register_explainer("deeplift_shap")
class DeepLIFTSHAPCVExplainer(CaptumExplainer):
    """DeepLIFT-SHAP: DeepLIFT averaged over a distribution of references.

    Options:

    * ``baselines`` — the reference distribution (K, C, H, W): ``None``/``"zeros"`` (default: a
      zero image, repeated to the two rows Captum requires, which equals DeepLIFT with a zero
      baseline), a number (constant image), a tensor (K, C, H, W) with K ≥ 2 or one image
      (C, H, W)/(1, C, H, W), or ``"random"``: ``n_baselines`` (10) standard-normal images drawn
      from a ``torch.Generator`` seeded with ``seed`` (0).
    * ``n_baselines`` (10), ``seed`` (0) — size and seed of a ``"random"`` distribution.
    * ``return_convergence_delta``, ``custom_attribution_func``, ``multiply_by_inputs``,
      ``additional_forward_args`` — as for :class:`DeepLIFTCVExplainer`.

    Returns:
        Attributions of the input's shape (N, C, H, W) (with the delta: a tuple, delta (N·K,)).
    """

    hooks_modules = True

    algorithm_name = "DeepLIFT SHAP"
    captum_class = DeepLiftShap
    takes_baseline_distribution = True

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        n_baselines: int = 10,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        custom_attribution_func: Optional[Callable[..., tuple[torch.Tensor, ...]]] = None,
        multiply_by_inputs: bool = True,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        options = _options(
            return_convergence_delta, additional_forward_args, custom_attribution_func
        )
        options["baselines"] = resolve_baseline_distribution(
            baselines, input_data, seed, n_baselines, min_count=2
        )
        algorithm = self.create_explainer(model, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(algorithm, options)


@register_explainer("layer_deeplift_shap")
class LayerDeepLIFTSHAPCVExplainer(LayerCaptumExplainer):
    """DeepLIFT-SHAP attributions of a layer's neurons.

    Options: those of :class:`DeepLIFTSHAPCVExplainer`, plus ``layer`` (default: the model's
    last ``nn.Conv2d``) and ``attribute_to_layer_input`` (``False``).

    Returns:
        Attributions of the layer output's (or input's) shape.
    """

    algorithm_name = "Layer DeepLIFT SHAP"
    captum_class = LayerDeepLiftShap
    takes_baseline_distribution = True

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: Optional[nn.Module] = None,
        baselines: BaselineLike = None,
        n_baselines: int = 10,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        custom_attribution_func: Optional[Callable[..., tuple[torch.Tensor, ...]]] = None,
        multiply_by_inputs: bool = True,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        options = _layer_options(
            return_convergence_delta,
            additional_forward_args,
            custom_attribution_func,
            attribute_to_layer_input,
        )
        options["baselines"] = resolve_baseline_distribution(
            baselines, input_data, seed, n_baselines, min_count=2
        )
        algorithm = self.create_explainer(model, layer=layer, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(algorithm, options)
