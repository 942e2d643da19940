"""KernelSHAP and LIME: a weighted linear surrogate of the model's score fitted on random
perturbations of feature groups (the perturbation family's shared options:
:mod:`foxcem.attribution.perturbation`)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from captum.attr import KernelShap, Lime

from foxcem.attribution.baselines import BaselineLike
from foxcem.attribution.captum_call import CaptumCall
from foxcem.attribution.interpretable import default_interpretable_model
from foxcem.attribution.perturbation import MaskLike, PerturbationExplainer
from foxcem.core.checks import check_bool, check_positive_int
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["KernelShapExplainer", "LimeExplainer"]


class _Surrogate(PerturbationExplainer):
    """KernelSHAP and LIME: a weighted linear model fitted on ``n_samples`` perturbations."""

    sampling = True
    per_example = True

    def _work(self, features: int, n_samples: int) -> int:
        return n_samples  # n_samples coalitions per example, whatever the number of features

    def _surrogate(
        self,
        model: Any,
        inputs: Inputs,
        baselines: BaselineLike,
        feature_mask: MaskLike,
        segments: Any,
        n_samples: int,
        additional_forward_args: Any,
        perturbations_per_eval: Union[int, str],
        return_input_shape: bool,
        seed: Optional[int],
        algorithm: Callable[[Any], Any],
    ) -> CaptumCall:
        n_samples = check_positive_int(n_samples, "n_samples")
        call = self._common(model, inputs, baselines, feature_mask, segments,
                            additional_forward_args, perturbations_per_eval, n_samples, seed)  # fmt: skip
        call.options["n_samples"] = n_samples
        call.options["return_input_shape"] = check_bool(return_input_shape, "return_input_shape")
        call.algorithm = algorithm(model)
        return call


@register_explainer("kernel_shap")
class KernelShapExplainer(_Surrogate):
    """KernelSHAP (Lundberg & Lee 2017): Shapley values from a weighted linear regression on
    ``n_samples`` random coalitions of features (Captum's ``KernelShap``; seeded). The
    regression is scikit-learn's, as Captum's, when installed, else an exact torch
    least-squares solve.

    Returns:
        Attributions of the input's shape (one value per feature of the mask, spread over its
        positions; ``return_input_shape=False``: (N, features)).
    """

    algorithm_name = "Kernel SHAP"
    captum_class = KernelShap

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        feature_mask: MaskLike = None,
        segments: Any = None,
        n_samples: int = 25,
        additional_forward_args: Any = None,
        perturbations_per_eval: Union[int, str] = "auto",
        return_input_shape: bool = True,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        def build(model: Any) -> Any:
            algorithm = KernelShap(model)
            algorithm.interpretable_model = default_interpretable_model("kernel_shap")
            return algorithm

        return self._surrogate(model, input_data, baselines, feature_mask, segments, n_samples,
                               additional_forward_args, perturbations_per_eval,
                               return_input_shape, seed, build)  # fmt: skip


@register_explainer("lime")
class LimeExplainer(_Surrogate):
    """LIME (Ribeiro et al. 2016): a sparse linear model of the score on ``n_samples`` random
    perturbations near x, weighted by their similarity to x (Captum's ``Lime``: Lasso with
    α = 0.01 from scikit-learn when installed, else a torch ridge fit; seeded).

    Returns:
        Attributions of the input's shape (``return_input_shape=False``: (N, features)).
    """

    algorithm_name = "LIME"
    captum_class = Lime

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        feature_mask: MaskLike = None,
        segments: Any = None,
        n_samples: int = 50,
        additional_forward_args: Any = None,
        perturbations_per_eval: Union[int, str] = "auto",
        return_input_shape: bool = True,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        def build(model: Any) -> Any:
            return Lime(model, interpretable_model=default_interpretable_model("lime"))

        return self._surrogate(model, input_data, baselines, feature_mask, segments, n_samples,
                               additional_forward_args, perturbations_per_eval,
                               return_input_shape, seed, build)  # fmt: skip
