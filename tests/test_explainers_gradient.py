"""Gradient saliency and the plain-gradient family against finite differences and closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from foxcem import (
    DeconvolutionCVExplainer,
    GradientCVExplainer,
    GuidedBackpropCVExplainer,
    InputXGradientCVExplainer,
    LayerInputXGradientCVExplainer,
    SaliencyCVExplainer,
)


class TanhNet(nn.Module):
    """A tiny smooth model: conv -> tanh -> linear (no ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def tanh_setup(device: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = TanhNet().double().to(device).eval()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x.to(device)


def finite_difference_gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, step: float = 1e-6
) -> torch.Tensor:
    """Central differences of f_t(x) for every input entry of every sample."""
    rows = torch.arange(x.shape[0], device=x.device)
    grad = torch.zeros_like(x)
    flat = grad.view(x.shape[0], -1)
    with torch.no_grad():
        for i in range(x[0].numel()):
            shift = torch.zeros_like(x).view(x.shape[0], -1)
            shift[:, i] = step
            shift = shift.view_as(x)
            plus = model(x + shift)[rows, target]
            minus = model(x - shift)[rows, target]
            flat[:, i] = (plus - minus) / (2 * step)
    return grad


def test_gradient_equals_finite_differences(device):
    model, x = tanh_setup(device)
    target = torch.tensor([4, 1], device=device)
    gradient = GradientCVExplainer().calculate_features(model, x, target)
    reference = finite_difference_gradient(model, x, target)
    assert gradient.shape == x.shape and gradient.dtype == torch.float64
    torch.testing.assert_close(gradient, reference, rtol=1e-6, atol=1e-8)
    assert gradient.abs().max() > 1e-3  # not a trivially zero comparison


def test_gradient_abs_max_map(device):
    model, x = tanh_setup(device)
    target = torch.tensor([0, 3], device=device)
    raw = finite_difference_gradient(model, x, target)
    saliency_map = GradientCVExplainer().calculate_features(model, x, target, aggregate="abs_max")
    assert saliency_map.shape == (2, 1, 4, 4)
    expected = torch.maximum(raw[:, 0].abs(), raw[:, 1].abs()).unsqueeze(1)
    torch.testing.assert_close(saliency_map, expected, rtol=1e-6, atol=1e-8)
    assert torch.all(saliency_map >= 0)


def test_gradient_rejects_unknown_aggregate():
    model, x = tanh_setup("cpu")
    with pytest.raises(ValueError, match="aggregate"):
        GradientCVExplainer().calculate_features(model, x, 0, aggregate="max")


class BatchNormNet(nn.Module):
    def __init__(self, channels: int = 3, size: int = 4, classes: int = 4) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(x).flatten(1))


def test_eval_batchnorm_gradient_is_exact_without_hooks(device):
    torch.manual_seed(2)
    model = BatchNormNet().double()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.2, 3.0)
        model.bn.weight.uniform_(-2, 2)
        model.bn.bias.uniform_(-1, 1)
    model = model.to(device).train()  # the explainer must use the running statistics
    running_mean = model.bn.running_mean.clone()
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64, device=device)
    target = torch.tensor([0, 3, 2], device=device)

    gradient = GradientCVExplainer().calculate_features(model, x, target)

    # Closed form: f = W · flatten(γ (x − μ) / sqrt(σ² + eps) + β) + b.
    scale = model.bn.weight / torch.sqrt(model.bn.running_var + model.bn.eps)
    weights = model.fc.weight.detach()[target].view(3, 3, 4, 4)
    expected = weights * scale.detach().view(1, 3, 1, 1)
    torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)
    model.eval()
    torch.testing.assert_close(gradient, finite_difference_gradient(model, x, target))
    assert model.bn.running_mean.equal(running_mean)


def test_saliency_and_input_x_gradient_follow_the_gradient(device):
    model, x = tanh_setup(device)
    target = torch.tensor([2, 2], device=device)
    reference = finite_difference_gradient(model, x, target)
    saliency = SaliencyCVExplainer().calculate_features(model, x, target)
    torch.testing.assert_close(saliency, reference.abs(), rtol=1e-6, atol=1e-8)
    signed = SaliencyCVExplainer().calculate_features(model, x, target, abs=False)
    torch.testing.assert_close(signed, reference, rtol=1e-6, atol=1e-8)
    input_x_gradient = InputXGradientCVExplainer().calculate_features(model, x, target)
    torch.testing.assert_close(input_x_gradient, x * reference, rtol=1e-6, atol=1e-8)


def test_layer_input_x_gradient_closed_form():
    # The last conv feeds tanh -> linear: ∂f_t/∂a = W_t · (1 − tanh(a)²).
    model, x = tanh_setup("cpu")
    target = torch.tensor([1, 4])
    attributions = LayerInputXGradientCVExplainer().calculate_features(model, x, target)
    with torch.no_grad():
        a = model.conv(x)
        weights = model.fc.weight[target].view(2, 3, 4, 4)
        expected = a * weights * (1 - torch.tanh(a) ** 2)
    torch.testing.assert_close(attributions, expected, rtol=1e-10, atol=1e-12)
    gradient_only = LayerInputXGradientCVExplainer().calculate_features(
        model, x, target, multiply_by_inputs=False
    )
    torch.testing.assert_close(gradient_only, expected / a, rtol=1e-8, atol=1e-10)


def test_modified_relu_methods_equal_gradient_without_relus():
    # Guided Backprop and Deconvolution only change the gradient at nn.ReLU modules.
    model, x = tanh_setup("cpu")
    target = torch.tensor([3, 0])
    reference = finite_difference_gradient(model, x, target)
    for explainer in (GuidedBackpropCVExplainer(), DeconvolutionCVExplainer()):
        result = explainer.calculate_features(model, x, target)
        torch.testing.assert_close(result, reference, rtol=1e-6, atol=1e-8)


def test_guided_backprop_clips_negative_gradients_at_relus():
    # f = w2 · relu(w1 x): guided backprop passes only positive gradient through the ReLU.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.ReLU())
    model.append(nn.Linear(3, 2, bias=False))
    model = model.double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1, 0, 2], [0.5, 0, 0, 0], [-1, 1, 1, 0]]))
        model[3].weight.copy_(torch.tensor([[1.0, -2, 3], [0.0, 1, 1]]))
    x = torch.tensor([[[[1.0, 0.5], [0.2, 0.3]]]], dtype=torch.float64)
    hidden = model[1](x.flatten(1))
    active = (hidden > 0).double()
    w1, w2 = model[1].weight.detach(), model[3].weight.detach()
    guided = GuidedBackpropCVExplainer().calculate_features(model, x, 0)
    # Gradient at the ReLU output is w2[0]; guided: relu(w2[0]) * active, then times w1.
    expected = ((torch.relu(w2[0]) * active[0]) @ w1).view(1, 1, 2, 2)
    torch.testing.assert_close(guided, expected)
    deconv = DeconvolutionCVExplainer().calculate_features(model, x, 0)
    expected_deconv = (torch.relu(w2[0]) @ w1).view(1, 1, 2, 2)
    torch.testing.assert_close(deconv, expected_deconv)
