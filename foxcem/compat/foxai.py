"""FoXAI's spelling over foxcem's explainers: the migration path for FoXAI code.

FoXAI code keeps running with its import changed::

    from foxcem.compat.foxai import CVClassificationExplainers, ExplainerWithParams, FoXaiExplainer

    with FoXaiExplainer(
        model=classifier,
        explainers=[ExplainerWithParams(CVClassificationExplainers.CV_GRADIENT_SHAP_EXPLAINER,
                                        n_samples=100, stdevs=0.0005)],
        target=pred_label_idx,
    ) as xai_model:
        output, explanations = xai_model(img_tensor)

The explainers behind the names are foxcem's (Captum underneath, the model left as it was; the
class names are the same, e.g. ``foxcem.IntegratedGradientsCVExplainer``). One keyword set may be
passed to every method: an option another method takes, given as ``None`` (FoXAI loops pass
``baselines=None`` to Saliency and Grad-CAM alike), is accepted and unused; a misspelt name
still raises ``TypeError``.

Left out: FoXAI's ``*_OLD`` input-x-gradient variants (superseded in FoXAI itself) and its object
detection explainers (YOLO-specific).
"""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Any, Union

import torch
from torch import nn

from foxcem.core.explainer import Explainer
from foxcem.core.registry import get_explainer

__all__ = ["CVClassificationExplainers", "ExplainerWithParams", "FoXaiExplainer"]


class CVClassificationExplainers(Enum):
    """FoXAI's names of the image-classification explainers; the value is the class name (also
    accepted by :func:`foxcem.get_explainer`)."""

    CV_OCCLUSION_EXPLAINER = "OcclusionCVExplainer"
    CV_INTEGRATED_GRADIENTS_EXPLAINER = "IntegratedGradientsCVExplainer"
    CV_NOISE_TUNNEL_EXPLAINER = "NoiseTunnelCVExplainer"
    CV_GRADIENT_SHAP_EXPLAINER = "GradientSHAPCVExplainer"
    CV_LRP_EXPLAINER = "LRPCVExplainer"
    CV_FULL_GRADIENTS_EXPLAINER = "FullGradientCVExplainer"
    CV_GUIDEDGRADCAM_EXPLAINER = "GuidedGradCAMCVExplainer"
    CV_LAYER_INTEGRATED_GRADIENTS_EXPLAINER = "LayerIntegratedGradientsCVExplainer"
    CV_LAYER_NOISE_TUNNEL_EXPLAINER = "LayerNoiseTunnelCVExplainer"
    CV_LAYER_GRADIENT_SHAP_EXPLAINER = "LayerGradientSHAPCVExplainer"
    CV_LAYER_LRP_EXPLAINER = "LayerLRPCVExplainer"
    CV_LAYER_GRADCAM_EXPLAINER = "LayerGradCAMCVExplainer"
    CV_INPUT_X_GRADIENT_EXPLAINER = "InputXGradientCVExplainer"
    CV_LAYER_INPUT_X_GRADIENT_EXPLAINER = "LayerInputXGradientCVExplainer"
    CV_DEEPLIFT_EXPLAINER = "DeepLIFTCVExplainer"
    CV_LAYER_DEEPLIFT_EXPLAINER = "LayerDeepLIFTCVExplainer"
    CV_DEEPLIFT_SHAP_EXPLAINER = "DeepLIFTSHAPCVExplainer"
    CV_LAYER_DEEPLIFT_SHAP_EXPLAINER = "LayerDeepLIFTSHAPCVExplainer"
    CV_DECONVOLUTION_EXPLAINER = "DeconvolutionCVExplainer"
    CV_LAYER_CONDUCTANCE_EXPLAINER = "LayerConductanceCVExplainer"
    CV_SALIENCY_EXPLAINER = "SaliencyCVExplainer"
    CV_GUIDED_BACKPOPAGATION_EXPLAINER = "GuidedBackpropCVExplainer"
    CV_XRAI_EXPLAINER = "XRAICVExplainer"

    def explainer(self) -> Explainer:
        """A new foxcem explainer of this kind."""
        return get_explainer(self.value)


class ExplainerWithParams:
    """An explainer name and the keyword arguments of its ``calculate_features``."""

    def __init__(
        self, explainer_name: Union[CVClassificationExplainers, str], **kwargs: Any
    ) -> None:
        if isinstance(explainer_name, str):
            explainer_name = CVClassificationExplainers(explainer_name)
        if not isinstance(explainer_name, CVClassificationExplainers):
            raise TypeError(
                "`explainer_name` must be a CVClassificationExplainers member, got "
                f"{type(explainer_name).__name__}"
            )
        self.explainer_name = explainer_name
        self.kwargs = dict(kwargs)


class FoXaiExplainer:
    """Run a model and explain its inputs with several explainers, as a context manager.

    Args:
        model: the ``nn.Module`` to run and explain.
        explainers: the explainers and their options (at least one).
        target: the class explained, as ``pred_label_idx`` (default 0, as FoXAI's).

    Inside the block the model is in eval mode (a model in train mode is switched, with a
    warning) and gradients are on; on leaving, both are as they were. Calling the object with
    the model's input returns ``(output, explanations)``: the model's output (computed without
    gradients) and a dict ``{"<NAME>_<index>": attributions}`` on the CPU.
    """

    def __init__(
        self, model: nn.Module, explainers: list[ExplainerWithParams], target: int = 0
    ) -> None:
        if not explainers:
            raise ValueError("`explainers` must name at least one explainer")
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
        self.model, self.target = model, target
        self.explainer_map: dict[str, tuple[Explainer, dict[str, Any]]] = {}
        for index, item in enumerate(explainers):
            if not isinstance(item, ExplainerWithParams):
                raise TypeError(
                    f"`explainers[{index}]` must be an ExplainerWithParams, got "
                    f"{type(item).__name__}"
                )
            key = f"{item.explainer_name.name}_{index}"
            self.explainer_map[key] = (item.explainer_name.explainer(), item.kwargs)

    def __enter__(self) -> FoXaiExplainer:
        self._grad = torch.is_grad_enabled()
        self._training = self.model.training
        torch.set_grad_enabled(True)
        if self.model.training:
            warnings.warn(
                "the model was in train mode; it is in eval mode inside the block", stacklevel=2
            )
            self.model.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.set_grad_enabled(self._grad)
        self.model.train(self._training)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, torch.Tensor]]:
        if len(args) != 1 or kwargs:
            raise ValueError("FoXaiExplainer takes the model's one input tensor")
        with torch.no_grad():
            output = self.model(*args)
        explanations = {}
        for key, (explainer, options) in self.explainer_map.items():
            result = explainer.calculate_features(self.model, args[0], self.target, **options)
            explanations[key] = result.detach().cpu()
        return output, explanations
