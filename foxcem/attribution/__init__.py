"""Captum-backed explainers, one module per method family.

Every class is an :class:`~foxcem.Explainer` (``create_explainer`` builds the Captum object,
``calculate_features(model, input_data, pred_label_idx=None, **options)`` runs it under the
model-state guard) and is registered under a snake_case name for :func:`foxcem.get_explainer`:

==============================  ===============================================
registry name                   class
==============================  ===============================================
``integrated_gradients``        :class:`IntegratedGradientsCVExplainer`
``layer_integrated_gradients``  :class:`LayerIntegratedGradientsCVExplainer`
``gradient``                    :class:`GradientCVExplainer`
``saliency``                    :class:`SaliencyCVExplainer`
``input_x_gradient``            :class:`InputXGradientCVExplainer`
``layer_input_x_gradient``      :class:`LayerInputXGradientCVExplainer`
``guided_backprop``             :class:`GuidedBackpropCVExplainer`
``deconvolution``               :class:`DeconvolutionCVExplainer`
``deeplift``                    :class:`DeepLIFTCVExplainer`
``layer_deeplift``              :class:`LayerDeepLIFTCVExplainer`
``deeplift_shap``               :class:`DeepLIFTSHAPCVExplainer`
``layer_deeplift_shap``         :class:`LayerDeepLIFTSHAPCVExplainer`
``gradient_shap``               :class:`GradientSHAPCVExplainer`
``layer_gradient_shap``         :class:`LayerGradientSHAPCVExplainer`
``occlusion``                   :class:`OcclusionCVExplainer`
``layer_gradcam``               :class:`LayerGradCAMCVExplainer`
``guided_gradcam``              :class:`GuidedGradCAMCVExplainer`
``lrp``                         :class:`LRPCVExplainer`
``layer_lrp``                   :class:`LayerLRPCVExplainer`
``layer_conductance``           :class:`LayerConductanceCVExplainer`
``noise_tunnel``                :class:`NoiseTunnelCVExplainer`
``layer_noise_tunnel``          :class:`LayerNoiseTunnelCVExplainer`
``fullgrad``                    :class:`FullGradCVExplainer`
``xrai``                        :class:`XRAICVExplainer`
``feature_ablation``            :class:`FeatureAblationExplainer`
``feature_permutation``         :class:`FeaturePermutationExplainer`
``shapley_value_sampling``      :class:`ShapleyValueSamplingExplainer`
``kernel_shap``                 :class:`KernelShapExplainer`
``lime``                        :class:`LimeExplainer`
==============================  ===============================================

Options are keyword arguments named as in Captum; a misspelt one raises ``TypeError``. No method
draws a random baseline unless asked (``baselines="random"``), and every random draw is seeded
(``seed``, default 0) and leaves the caller's random streams untouched.

Example::

    import foxcem

    explainer = foxcem.get_explainer("integrated_gradients")
    # (N, C, H, W) attributions for each sample's predicted class; model state is untouched.
    attributions = explainer.calculate_features(model, images, n_steps=32)
    # Per-sample targets, Grad-CAM upsampled to the input: (N, 1, H, W).
    cam = foxcem.LayerGradCAMCVExplainer().calculate_features(model, images, labels)
    smooth = foxcem.get_explainer("noise_tunnel", explainer="saliency")(
        model, images, labels, stdevs=0.15, nt_samples=16
    )
"""

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.attribution.conductance import LayerConductanceCVExplainer
from foxcem.attribution.deeplift import (
    DeepLIFTCVExplainer,
    DeepLIFTSHAPCVExplainer,
    LayerDeepLIFTCVExplainer,
    LayerDeepLIFTSHAPCVExplainer,
)
from foxcem.attribution.fullgrad import FullGradCVExplainer
from foxcem.attribution.grad_cam import GuidedGradCAMCVExplainer, LayerGradCAMCVExplainer
from foxcem.attribution.gradient import GradientCVExplainer
from foxcem.attribution.gradient_shap import GradientSHAPCVExplainer, LayerGradientSHAPCVExplainer
from foxcem.attribution.guided_backprop import DeconvolutionCVExplainer, GuidedBackpropCVExplainer
from foxcem.attribution.input_x_gradient import (
    InputXGradientCVExplainer,
    LayerInputXGradientCVExplainer,
)
from foxcem.attribution.integrated_gradients import (
    IntegratedGradientsCVExplainer,
    LayerIntegratedGradientsCVExplainer,
)
from foxcem.attribution.layers import get_last_conv_layer
from foxcem.attribution.lrp import LayerLRPCVExplainer, LRPCVExplainer
from foxcem.attribution.noise_tunnel import LayerNoiseTunnelCVExplainer, NoiseTunnelCVExplainer
from foxcem.attribution.occlusion import OcclusionCVExplainer
from foxcem.attribution.perturbation import (
    FeatureAblationExplainer,
    FeaturePermutationExplainer,
    ShapleyValueSamplingExplainer,
)
from foxcem.attribution.saliency import SaliencyCVExplainer
from foxcem.attribution.surrogate import KernelShapExplainer, LimeExplainer
from foxcem.attribution.xrai import XRAICVExplainer

__all__ = [
    "CaptumCall",
    "CaptumExplainer",
    "LayerCaptumExplainer",
    "get_last_conv_layer",
    "IntegratedGradientsCVExplainer",
    "LayerIntegratedGradientsCVExplainer",
    "GradientCVExplainer",
    "SaliencyCVExplainer",
    "InputXGradientCVExplainer",
    "LayerInputXGradientCVExplainer",
    "GuidedBackpropCVExplainer",
    "DeconvolutionCVExplainer",
    "DeepLIFTCVExplainer",
    "LayerDeepLIFTCVExplainer",
    "DeepLIFTSHAPCVExplainer",
    "LayerDeepLIFTSHAPCVExplainer",
    "GradientSHAPCVExplainer",
    "LayerGradientSHAPCVExplainer",
    "OcclusionCVExplainer",
    "LayerGradCAMCVExplainer",
    "GuidedGradCAMCVExplainer",
    "LRPCVExplainer",
    "LayerLRPCVExplainer",
    "LayerConductanceCVExplainer",
    "NoiseTunnelCVExplainer",
    "LayerNoiseTunnelCVExplainer",
    "FullGradCVExplainer",
    "XRAICVExplainer",
    "FeatureAblationExplainer",
    "FeaturePermutationExplainer",
    "ShapleyValueSamplingExplainer",
    "KernelShapExplainer",
    "LimeExplainer",
]
