"""Choosing explainers by name."""

from __future__ import annotations

import re

import pytest

import foxcem
from foxcem.attribution import CaptumExplainer
from foxcem.core.registry import get_explainer_class

EXPECTED = {
    "integrated_gradients": "IntegratedGradientsCVExplainer",
    "layer_integrated_gradients": "LayerIntegratedGradientsCVExplainer",
    "gradient": "GradientCVExplainer",
    "saliency": "SaliencyCVExplainer",
    "input_x_gradient": "InputXGradientCVExplainer",
    "layer_input_x_gradient": "LayerInputXGradientCVExplainer",
    "guided_backprop": "GuidedBackpropCVExplainer",
    "deconvolution": "DeconvolutionCVExplainer",
    "deeplift": "DeepLIFTCVExplainer",
    "layer_deeplift": "LayerDeepLIFTCVExplainer",
    "deeplift_shap": "DeepLIFTSHAPCVExplainer",
    "layer_deeplift_shap": "LayerDeepLIFTSHAPCVExplainer",
    "gradient_shap": "GradientSHAPCVExplainer",
    "layer_gradient_shap": "LayerGradientSHAPCVExplainer",
    "occlusion": "OcclusionCVExplainer",
    "layer_gradcam": "LayerGradCAMCVExplainer",
    "guided_gradcam": "GuidedGradCAMCVExplainer",
    "lrp": "LRPCVExplainer",
    "layer_lrp": "LayerLRPCVExplainer",
    "layer_conductance": "LayerConductanceCVExplainer",
    "noise_tunnel": "NoiseTunnelCVExplainer",
}


def test_every_captum_explainer_is_registered_and_exported():
    names = foxcem.available_explainers()
    assert names == sorted(names)
    for name, class_name in EXPECTED.items():
        assert name in names
        cls = get_explainer_class(name)
        assert cls.__name__ == class_name
        assert getattr(foxcem, class_name) is cls  # exported from the package
        assert class_name in foxcem.__all__
        assert issubclass(cls, foxcem.Explainer) and issubclass(cls, CaptumExplainer)
        assert cls.registry_name == name
        assert cls.algorithm_name
        assert cls.__doc__ and "Returns" in cls.__doc__
        explainer = foxcem.get_explainer(name)
        assert isinstance(explainer, cls)


def test_registered_names_are_snake_case():
    for name in foxcem.available_explainers():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name), name


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown explainer 'smoothgrad'") as info:
        foxcem.get_explainer("smoothgrad")
    for name in EXPECTED:
        assert name in str(info.value)
    with pytest.raises(TypeError, match="name"):
        foxcem.get_explainer(3)


def test_names_are_normalised_and_constructor_arguments_pass_through():
    assert isinstance(
        foxcem.get_explainer("Integrated-Gradients"), foxcem.IntegratedGradientsCVExplainer
    )
    tunnel = foxcem.get_explainer("noise_tunnel", explainer="gradient_shap")
    assert isinstance(tunnel.explainer, foxcem.GradientSHAPCVExplainer)
    assert "GradientSHAPCVExplainer" in repr(tunnel)
    assert isinstance(
        foxcem.get_explainer("noise_tunnel").explainer, foxcem.IntegratedGradientsCVExplainer
    )
    with pytest.raises(TypeError, match="n_steps"):
        foxcem.get_explainer("integrated_gradients", n_steps=3)


def test_registering_a_second_class_under_a_taken_name_fails():
    with pytest.raises(ValueError, match="already registered"):

        @foxcem.register_explainer("saliency")
        class Other(foxcem.SaliencyCVExplainer):
            pass


def test_resolve_explainer_takes_a_name_or_an_instance():
    from foxcem.core.registry import resolve_explainer

    assert isinstance(resolve_explainer("Saliency"), foxcem.SaliencyCVExplainer)
    instance = foxcem.GradientCVExplainer()
    assert resolve_explainer(instance) is instance
    with pytest.raises(TypeError, match="`explainer` must be a registered name"):
        resolve_explainer(foxcem.GradientCVExplainer)  # the class, not an instance
    with pytest.raises(ValueError, match="unknown explainer 'magic'"):
        resolve_explainer("magic")


def test_class_names_are_accepted() -> None:
    from foxcem.core.registry import get_explainer_class

    assert (
        get_explainer_class("IntegratedGradientsExplainer").registry_name == "integrated_gradients"
    )
    # FoXAI's spelling of the same classes.
    for name, expected in [
        ("IntegratedGradientsCVExplainer", "integrated_gradients"),
        ("LayerGradCAMCVExplainer", "layer_gradcam"),
        ("DeepLIFTSHAPCVExplainer", "deeplift_shap"),
        ("CEMExplainer", "cem"),
    ]:
        assert get_explainer_class(name).registry_name == expected, name
    with pytest.raises(ValueError, match="unknown explainer"):
        get_explainer_class("IntegratedGradiantsCVExplainer")
