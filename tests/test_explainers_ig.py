"""Integrated Gradients and Layer IG: equal to Captum's own output, complete, deterministic."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn
from torchvision.models import resnet18

from foxcem import (
    IntegratedGradientsCVExplainer,
    LayerConductanceCVExplainer,
    LayerIntegratedGradientsCVExplainer,
    get_last_conv_layer,
)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=10).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


class SmoothNet(nn.Module):
    """conv -> tanh -> linear: smooth, so the IG integral converges."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 5 * 5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def smooth_setup(device: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    model = SmoothNet().double().to(device).eval()
    with torch.no_grad():
        model.conv.weight.mul_(3.0)  # make the path clearly non-linear
    x = torch.rand(3, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    return model, x.to(device)


# ------------------------------------------------------------------ equal to Captum


@pytest.mark.parametrize(
    "options",
    [
        {"n_steps": 4},
        {"n_steps": 3, "method": "riemann_trapezoid", "internal_batch_size": 4},
    ],
)
def test_ig_equals_captum_on_resnet18(resnet, images, options):
    target = torch.tensor([3, 7])
    ours = IntegratedGradientsCVExplainer().calculate_features(resnet, images, target, **options)
    reference = IntegratedGradients(resnet).attribute(
        images.clone().requires_grad_(),
        baselines=torch.zeros_like(images),
        target=target,
        **options,
    )
    assert ours.shape == images.shape
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


def test_ig_baseline_tensor_and_delta_equal_captum(resnet, images):
    baseline = torch.full((1, 3, 64, 64), 0.25)
    ours, delta = IntegratedGradientsCVExplainer().calculate_features(
        resnet, images, 5, baselines=baseline, n_steps=3, return_convergence_delta=True
    )
    ref, ref_delta = IntegratedGradients(resnet).attribute(
        images, baselines=baseline, target=5, n_steps=3, return_convergence_delta=True
    )
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(delta, ref_delta, rtol=1e-3, atol=1e-5)
    assert delta.shape == (2,)


def test_layer_ig_equals_captum_on_resnet18(resnet, images):
    target = torch.tensor([1, 8])
    ours = LayerIntegratedGradientsCVExplainer().calculate_features(
        resnet, images, target, n_steps=3
    )
    # The default layer is the last Conv2d: layer4[1].conv2 in resnet18.
    assert get_last_conv_layer(resnet) is resnet.layer4[1].conv2
    reference = LayerIntegratedGradients(resnet, resnet.layer4[1].conv2).attribute(
        images, target=target, n_steps=3
    )
    assert ours.shape == (2, 512, 2, 2)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


def test_layer_ig_explicit_layer_and_layer_input_equal_captum(resnet, images):
    layer = resnet.layer3[0].conv1
    ours = LayerIntegratedGradientsCVExplainer().calculate_features(
        resnet, images, 2, layer=layer, n_steps=2, attribute_to_layer_input=True
    )
    reference = LayerIntegratedGradients(resnet, layer).attribute(
        images, target=2, n_steps=2, attribute_to_layer_input=True
    )
    assert ours.shape == (2, 128, 8, 8)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ completeness


def _completeness_gap(model, x, target, **options) -> torch.Tensor:
    attributions = IntegratedGradientsCVExplainer().calculate_features(model, x, target, **options)
    with torch.no_grad():
        rows = torch.arange(x.shape[0], device=x.device)
        change = model(x)[rows, target] - model(torch.zeros_like(x))[rows, target]
    return (attributions.sum(dim=(1, 2, 3)) - change).abs(), change.abs()


def test_completeness_gap_shrinks_with_n_steps(device):
    model, x = smooth_setup(device)
    target = torch.tensor([0, 2, 3], device=device)
    for method, order in (("riemann_right", 1), ("riemann_middle", 2)):
        gaps = [
            _completeness_gap(model, x, target, n_steps=n, method=method)[0].max()
            for n in (2, 4, 8, 16, 32)
        ]
        assert all(later < earlier for earlier, later in zip(gaps, gaps[1:])), (method, gaps)
        # 16 times the steps: the error falls like n_steps**-order.
        assert gaps[-1] < gaps[0] / (16**order / 2), (method, gaps)


def test_completeness_at_large_n_steps(device):
    model, x = smooth_setup(device)
    target = torch.tensor([1, 1, 2], device=device)
    gap, change = _completeness_gap(model, x, target, n_steps=128)
    assert torch.all(change > 1e-2)  # a meaningful difference to explain
    assert torch.all(gap < 1e-3 * change), (gap, change)
    # Captum's own convergence delta agrees with the independent computation.
    _, delta = IntegratedGradientsCVExplainer().calculate_features(
        model, x, target, n_steps=128, return_convergence_delta=True
    )
    torch.testing.assert_close(delta.abs(), gap, rtol=1e-6, atol=1e-9)


def test_layer_conductance_sums_to_score_change():
    # Conductance of a layer that every path goes through is complete too (to first order in
    # 1/n_steps: Captum differences the layer's activations between consecutive steps).
    model, x = smooth_setup("cpu")
    target = torch.tensor([0, 1, 2])
    with torch.no_grad():
        rows = torch.arange(3)
        change = model(x)[rows, target] - model(torch.zeros_like(x))[rows, target]
    gaps = []
    for n_steps in (25, 100, 400):
        conductance = LayerConductanceCVExplainer().calculate_features(
            model, x, target, layer=model.conv, n_steps=n_steps, method="riemann_right"
        )
        assert conductance.shape == (3, 3, 5, 5)
        gaps.append(((conductance.sum(dim=(1, 2, 3)) - change).abs() / change.abs()).max())
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] < 5e-3, gaps


# ------------------------------------------------------------------ baselines


def test_local_attribution_equals_captum():
    model, x = smooth_setup("cpu")
    ours = IntegratedGradientsCVExplainer().calculate_features(
        model, x, 2, n_steps=6, multiply_by_inputs=False
    )
    reference = IntegratedGradients(model, multiply_by_inputs=False).attribute(
        x, target=2, n_steps=6
    )
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    global_ = IntegratedGradientsCVExplainer().calculate_features(model, x, 2, n_steps=6)
    torch.testing.assert_close(global_, reference * x, rtol=1e-10, atol=1e-12)


def test_none_baseline_means_zeros_and_is_deterministic():
    model, x = smooth_setup("cpu")
    explainer = IntegratedGradientsCVExplainer()
    first = explainer.calculate_features(model, x, 1, n_steps=8)
    second = explainer.calculate_features(model, x, 1, n_steps=8)
    zeros = explainer.calculate_features(model, x, 1, n_steps=8, baselines=torch.zeros_like(x))
    assert torch.equal(first, second)
    torch.testing.assert_close(first, zeros, rtol=0, atol=0)


def test_random_baseline_only_on_request_and_seeded():
    model, x = smooth_setup("cpu")
    explainer = IntegratedGradientsCVExplainer()
    zero = explainer.calculate_features(model, x, 1, n_steps=8)
    a = explainer.calculate_features(model, x, 1, n_steps=8, baselines="random", seed=5)
    b = explainer.calculate_features(model, x, 1, n_steps=8, baselines="random", seed=5)
    c = explainer.calculate_features(model, x, 1, n_steps=8, baselines="random", seed=6)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, zero)
    # The random baseline is the documented standard-normal draw from the seeded generator.
    baseline = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    explicit = explainer.calculate_features(model, x, 1, n_steps=8, baselines=baseline)
    torch.testing.assert_close(a, explicit, rtol=0, atol=0)


def test_layer_ig_without_conv_raises_value_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.rand(2, 3, 2, 2)
    with pytest.raises(ValueError, match="Conv2d.*layer="):
        LayerIntegratedGradientsCVExplainer().calculate_features(model, x, 0)
    with pytest.raises(ValueError, match="Conv2d"):
        LayerIntegratedGradientsCVExplainer().create_explainer(model)


def test_create_explainer_returns_configured_captum_objects():
    model, _ = smooth_setup("cpu")
    ig = IntegratedGradientsCVExplainer().create_explainer(model, multiply_by_inputs=False)
    assert isinstance(ig, IntegratedGradients) and not ig.multiplies_by_inputs
    lig = LayerIntegratedGradientsCVExplainer().create_explainer(model)
    assert isinstance(lig, LayerIntegratedGradients) and lig.layer is model.conv
    with pytest.raises(TypeError, match="multiply_by_input"):
        IntegratedGradientsCVExplainer().create_explainer(model, multiply_by_input=False)
