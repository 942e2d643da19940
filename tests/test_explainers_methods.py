"""Grad-CAM, Occlusion, LRP, DeepLIFT, SHAP and NoiseTunnel against independent references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule
from torch import nn

import foxcem
from foxcem import (
    DeepLIFTCVExplainer,
    DeepLIFTSHAPCVExplainer,
    GradientCVExplainer,
    GradientSHAPCVExplainer,
    GuidedBackpropCVExplainer,
    GuidedGradCAMCVExplainer,
    LayerDeepLIFTCVExplainer,
    LayerGradCAMCVExplainer,
    LayerGradientSHAPCVExplainer,
    LayerLRPCVExplainer,
    LRPCVExplainer,
    NoiseTunnelCVExplainer,
    OcclusionCVExplainer,
    SaliencyCVExplainer,
    get_explainer,
)
from foxcem.attribution import CaptumExplainer
from foxcem.core.registry import get_explainer_class


class ConvNet(nn.Module):
    """conv -> relu -> conv -> relu -> linear, float64, optionally without biases."""

    def __init__(self, bias: bool = True, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1, bias=bias)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1, bias=bias)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(3 * 6 * 6, classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).flatten(1))


def conv_setup(device: str = "cpu", bias: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    model = ConvNet(bias=bias).double().to(device).eval()
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    return model, x.to(device)


class LinearNet(nn.Module):
    def __init__(self, shape=(2, 3, 3), classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def linear_setup(device: str = "cpu"):
    torch.manual_seed(1)
    model = LinearNet().double().to(device).eval()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return model, x.to(device)


def linear_weights(model: LinearNet, target: torch.Tensor) -> torch.Tensor:
    return model.fc.weight.detach()[target].view(-1, 2, 3, 3)


# ------------------------------------------------------------------ Grad-CAM


def reference_grad_cam(model, layer, x, target, size):
    activations = {}
    handle = layer.register_forward_hook(lambda m, i, o: activations.__setitem__("a", o))
    scores = model(x)
    handle.remove()
    a = activations["a"]
    rows = torch.arange(x.shape[0], device=x.device)
    grads = torch.autograd.grad(scores[rows, target].sum(), a)[0]
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False).detach()


def test_layer_gradcam_matches_manual_per_sample_reference(device):
    model, x = conv_setup(device)
    target = torch.tensor([0, 3, 1], device=device)
    cam = LayerGradCAMCVExplainer().calculate_features(model, x, target)
    assert cam.shape == (3, 1, 6, 6)
    torch.testing.assert_close(cam, reference_grad_cam(model, model.conv2, x, target, (6, 6)))


def test_layer_gradcam_explains_each_sample_for_its_own_target():
    model, x = conv_setup()
    target = torch.tensor([2, 0, 3])
    batch = LayerGradCAMCVExplainer().calculate_features(model, x, target)
    for i in range(3):
        alone = LayerGradCAMCVExplainer().calculate_features(model, x[i : i + 1], int(target[i]))
        torch.testing.assert_close(batch[i : i + 1], alone)
    # None explains each sample's own prediction.
    predicted = model(x).argmax(dim=1)
    by_prediction = LayerGradCAMCVExplainer().calculate_features(model, x)
    torch.testing.assert_close(
        by_prediction, LayerGradCAMCVExplainer().calculate_features(model, x, predicted)
    )


def test_layer_gradcam_options():
    model, x = conv_setup()
    small = LayerGradCAMCVExplainer().calculate_features(
        model, x, 1, layer=model.conv1, upsample=False, relu_attributions=False
    )
    assert small.shape == (3, 1, 6, 6)
    assert (small < 0).any()  # signed without the ReLU
    per_channel = LayerGradCAMCVExplainer().calculate_features(
        model, x, 1, attr_dim_summation=False, relu_attributions=False
    )
    assert per_channel.shape == (3, 3, 6, 6)
    with pytest.raises(ValueError, match="interpolate_mode"):
        LayerGradCAMCVExplainer().calculate_features(model, x, 1, interpolate_mode="cubic")


def test_guided_gradcam_is_guided_backprop_times_gradcam():
    model, x = conv_setup()
    target = torch.tensor([1, 2, 0])
    guided_cam = GuidedGradCAMCVExplainer().calculate_features(model, x, target)
    guided = GuidedBackpropCVExplainer().calculate_features(model, x, target)
    cam = LayerGradCAMCVExplainer().calculate_features(model, x, target, interpolate_mode="nearest")
    torch.testing.assert_close(guided_cam, guided * cam)


# ------------------------------------------------------------------ Occlusion


def test_occlusion_of_a_linear_model_is_weight_times_input_change():
    model, x = linear_setup()
    target = torch.tensor([2, 0])
    weights = linear_weights(model, target)
    pixel = {"sliding_window_shapes": (1, 1, 1)}
    occlusion = OcclusionCVExplainer().calculate_features(model, x, target, **pixel)
    # Captum divides by float32 window counts, so a float64 input gives float32 attributions.
    assert occlusion.dtype == torch.float32
    torch.testing.assert_close(occlusion, (weights * x).float())
    shifted = OcclusionCVExplainer().calculate_features(model, x, target, baselines=0.5, **pixel)
    torch.testing.assert_close(shifted, (weights * (x - 0.5)).float())
    # A whole-channel window gives every pixel of the channel the channel's total effect.
    window = OcclusionCVExplainer().calculate_features(
        model, x, target, sliding_window_shapes=(1, 3, 3), strides=(1, 3, 3)
    )
    expected = (weights * x).sum(dim=(2, 3), keepdim=True).expand_as(x)
    torch.testing.assert_close(window, expected.float())


def test_occlusion_default_window_scales_with_the_image():
    """All channels, about 1/14 of each side, half-window strides: a few hundred positions."""
    from foxcem.attribution.occlusion import default_window

    assert default_window((1, 8, 8)) == ((1, 1, 1), (1, 1, 1))
    assert default_window((3, 224, 224)) == ((3, 16, 16), (3, 8, 8))
    calls = []
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 5))
    model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    x = torch.rand(2, 3, 224, 224)
    result = OcclusionCVExplainer().calculate_features(model, x, 0)
    assert result.shape == x.shape and sum(calls) <= 2 * 27 * 27 + 2 * 2 + 256  # positions
    assert len(calls) < 20  # several positions per forward pass


def test_occlusion_rejects_bad_windows():
    model, x = linear_setup()
    with pytest.raises(ValueError, match="sliding_window_shapes"):
        OcclusionCVExplainer().calculate_features(model, x, 0, sliding_window_shapes=(1, 1))
    with pytest.raises(ValueError, match="sliding_window_shapes"):
        OcclusionCVExplainer().calculate_features(model, x, 0, sliding_window_shapes=(1, 9, 9))
    with pytest.raises(ValueError, match="strides"):
        OcclusionCVExplainer().calculate_features(model, x, 0, strides=(1, 1))


# ------------------------------------------------------------------ LRP


def test_lrp_conserves_relevance_without_biases():
    model, x = conv_setup(bias=False)
    target = torch.tensor([0, 1, 2])
    relevance = LRPCVExplainer().calculate_features(model, x, target)
    with torch.no_grad():
        scores = model(x)[torch.arange(3), target]
    assert relevance.shape == x.shape
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), scores, rtol=1e-6, atol=1e-8)
    layer = LayerLRPCVExplainer().calculate_features(model, x, target)
    assert layer.shape == (3, 3, 6, 6)
    torch.testing.assert_close(layer.sum(dim=(1, 2, 3)), scores, rtol=1e-6, atol=1e-8)


def test_lrp_leaves_parameters_and_rules_untouched():
    model, x = conv_setup()
    params = {name: (p, p.data_ptr(), p.detach().clone()) for name, p in model.named_parameters()}
    own_rule = EpsilonRule(epsilon=1e-6)
    model.fc.rule = own_rule

    plain = LRPCVExplainer().calculate_features(model, x, 1, auto_rules=False)
    loss = model(x).sum()  # a backward pending through the weights the rule rewrites
    gamma = LRPCVExplainer().calculate_features(
        model, x, 1, rules={model.conv1: GammaRule()}, auto_rules=False
    )
    loss.backward()

    assert not torch.allclose(plain, gamma)  # the rule was applied
    assert model.fc.rule is own_rule  # Captum deletes `rule` attributes; the caller's is back
    assert "rule" not in vars(model.conv1)  # the per-call rule is gone
    for name, p in model.named_parameters():
        original, pointer, values = params[name]
        assert p is original, name
        assert p.data_ptr() == pointer, name
        assert torch.equal(p, values), name
        assert p.grad is not None, name
    with pytest.raises(TypeError, match="rules"):
        LRPCVExplainer().calculate_features(model, x, 1, rules={model.conv1: "gamma"})


# ------------------------------------------------------------------ DeepLIFT and SHAP


def test_deeplift_is_complete_and_exact_on_linear_models(device):
    model, x = conv_setup(device)
    target = torch.tensor([3, 3, 1], device=device)
    attributions = DeepLIFTCVExplainer().calculate_features(model, x, target)
    with torch.no_grad():
        rows = torch.arange(3, device=device)
        change = model(x)[rows, target] - model(torch.zeros_like(x))[rows, target]
    torch.testing.assert_close(attributions.sum(dim=(1, 2, 3)), change, rtol=1e-6, atol=1e-8)

    linear, z = linear_setup(device)
    t = torch.tensor([1, 2], device=device)
    torch.testing.assert_close(
        DeepLIFTCVExplainer().calculate_features(linear, z, t, baselines=0.25),
        linear_weights(linear, t) * (z - 0.25),
    )


def test_deeplift_shap_default_is_deeplift_with_zero_baseline():
    model, x = conv_setup()
    target = torch.tensor([0, 2, 1])
    shap = DeepLIFTSHAPCVExplainer().calculate_features(model, x, target)
    deeplift = DeepLIFTCVExplainer().calculate_features(model, x, target)
    torch.testing.assert_close(shap, deeplift)
    layer_dl = LayerDeepLIFTCVExplainer().calculate_features(model, x, target)
    assert layer_dl.shape == (3, 3, 6, 6)
    random = DeepLIFTSHAPCVExplainer().calculate_features(
        model, x, target, baselines="random", n_baselines=4, seed=1
    )
    assert not torch.allclose(random, shap)


def test_gradient_shap_of_a_linear_model_is_weight_times_input():
    # The gradient of a linear model is constant, so without input noise every random draw
    # (interpolation point, baseline row) gives W_t · (x − x').
    model, x = linear_setup()
    target = torch.tensor([0, 2])
    weights = linear_weights(model, target)
    shap = GradientSHAPCVExplainer().calculate_features(model, x, target, n_samples=7)
    torch.testing.assert_close(shap, weights * x)
    constant = torch.full((3, 2, 3, 3), 0.5, dtype=torch.float64)
    shap = GradientSHAPCVExplainer().calculate_features(model, x, target, baselines=constant)
    torch.testing.assert_close(shap, weights * (x - 0.5))
    # With input noise Captum multiplies by the noisy input, so the result moves.
    noisy = GradientSHAPCVExplainer().calculate_features(model, x, target, stdevs=0.3)
    assert noisy.shape == x.shape and not torch.allclose(noisy, weights * x)
    conv_model, z = conv_setup()
    layer = LayerGradientSHAPCVExplainer().calculate_features(conv_model, z, 1)
    assert layer.shape == (3, 3, 6, 6)


# ------------------------------------------------------------------ NoiseTunnel


def test_noise_tunnel_of_a_linear_model(device):
    model, x = linear_setup(device)
    target = torch.tensor([1, 0], device=device)
    weights = linear_weights(model, target)
    tunnel = NoiseTunnelCVExplainer("gradient")
    smooth = tunnel.calculate_features(model, x, target, stdevs=0.7, nt_samples=6)
    torch.testing.assert_close(smooth, weights)
    squared = tunnel.calculate_features(
        model, x, target, nt_type="smoothgrad_sq", stdevs=0.7, nt_samples=6
    )
    torch.testing.assert_close(squared, weights**2)
    variance = tunnel.calculate_features(model, x, target, nt_type="vargrad", stdevs=0.7)
    torch.testing.assert_close(variance, torch.zeros_like(x), rtol=0, atol=1e-12)


def test_noise_tunnel_wraps_by_name_instance_or_class():
    model, x = conv_setup()
    target = torch.tensor([0, 1, 2])
    by_name = NoiseTunnelCVExplainer("saliency").calculate_features(model, x, target, stdevs=0.1)
    by_instance = NoiseTunnelCVExplainer(SaliencyCVExplainer()).calculate_features(
        model, x, target, stdevs=0.1
    )
    by_class = get_explainer("noise_tunnel", explainer=SaliencyCVExplainer).calculate_features(
        model, x, target, stdevs=0.1
    )
    torch.testing.assert_close(by_name, by_instance, rtol=0, atol=0)
    torch.testing.assert_close(by_name, by_class, rtol=0, atol=0)
    # No noise: SmoothGrad is the inner method itself.
    noiseless = NoiseTunnelCVExplainer("saliency").calculate_features(model, x, target, stdevs=0.0)
    torch.testing.assert_close(
        noiseless, SaliencyCVExplainer().calculate_features(model, x, target)
    )
    # Options of the inner explainer pass through, post-processing included.
    smoothed_map = NoiseTunnelCVExplainer("gradient").calculate_features(
        model, x, target, aggregate="abs_max", stdevs=0.0
    )
    torch.testing.assert_close(
        smoothed_map,
        GradientCVExplainer().calculate_features(model, x, target, aggregate="abs_max"),
    )
    cam = NoiseTunnelCVExplainer("layer_gradcam").calculate_features(model, x, target, stdevs=0.1)
    assert cam.shape == (3, 1, 6, 6)


def test_noise_tunnel_rejects_bad_explainers_and_options():
    with pytest.raises(TypeError, match="explainer"):
        NoiseTunnelCVExplainer(object())
    with pytest.raises(ValueError, match="noise tunnel"):
        NoiseTunnelCVExplainer("noise_tunnel")
    with pytest.raises(ValueError, match="known explainers"):
        NoiseTunnelCVExplainer("smoothgrad")
    model, x = conv_setup()
    with pytest.raises(ValueError, match="nt_type"):
        NoiseTunnelCVExplainer("saliency").calculate_features(model, x, 0, nt_type="smooth")
    with pytest.raises(TypeError, match="n_stepz"):
        NoiseTunnelCVExplainer().calculate_features(model, x, 0, n_stepz=3)
    with pytest.raises(ValueError, match="stdevs"):
        NoiseTunnelCVExplainer("saliency").calculate_features(model, x, 0, stdevs=-1.0)


NOISELESS_OPTIONS = {
    "integrated_gradients": {"n_steps": 4},
    "layer_integrated_gradients": {"n_steps": 4},
    "layer_conductance": {"n_steps": 4},
    "occlusion": {"sliding_window_shapes": (2, 3, 3), "strides": (2, 3, 3)},
}


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in foxcem.available_explainers()
        if issubclass(get_explainer_class(name), CaptumExplainer)
        # GradientSHAP draws its interpolation points per copy even without noise, and the
        # sampling perturbation methods draw their coalitions/orderings per copy too.
        and name not in ("noise_tunnel", "layer_noise_tunnel", "gradient_shap")
        and name != "layer_gradient_shap"
        and not getattr(get_explainer_class(name), "sampling", False)
    ],
)
def test_noiseless_noise_tunnel_reproduces_every_method(name):
    model, x = conv_setup()
    target = torch.tensor([0, 3, 1])
    options = NOISELESS_OPTIONS.get(name, {})
    direct = get_explainer(name).calculate_features(model, x, target, **options)
    tunnel = NoiseTunnelCVExplainer(name).calculate_features(
        model, x, target, stdevs=0.0, nt_samples=2, **options
    )
    torch.testing.assert_close(tunnel, direct)


def test_noise_tunnel_over_a_baseline_distribution():
    model, x = conv_setup()
    distribution = torch.rand(5, 2, 6, 6, dtype=torch.float64)
    tunnel = NoiseTunnelCVExplainer("deeplift_shap")
    with pytest.raises(ValueError, match="draw_baseline_from_distrib"):
        tunnel.calculate_features(model, x, 0, draw_baseline_from_distrib=False)
    # Drawing one baseline per copy from a distribution of identical rows is DeepLIFT itself.
    same = distribution[:1].expand(5, 2, 6, 6)
    drawn = NoiseTunnelCVExplainer("deeplift_shap").calculate_features(
        model, x, 0, baselines=same, stdevs=0.0, nt_samples=3
    )
    torch.testing.assert_close(
        drawn, DeepLIFTCVExplainer().calculate_features(model, x, 0, baselines=same[:1])
    )
    shap = NoiseTunnelCVExplainer("gradient_shap").calculate_features(
        model, x, 0, baselines=distribution, stdevs=0.1, seed=4
    )
    assert shap.shape == x.shape
