"""Bad input gives TypeError/ValueError naming the argument; empty results raise RuntimeError."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import foxcem
from foxcem import (
    DeepLIFTCVExplainer,
    IntegratedGradientsCVExplainer,
    LayerIntegratedGradientsCVExplainer,
    validate_result,
)
from foxcem.attribution import CaptumExplainer, LayerCaptumExplainer
from foxcem.core.registry import get_explainer_class

CAPTUM_EXPLAINERS = [
    name
    for name in foxcem.available_explainers()
    if issubclass(get_explainer_class(name), CaptumExplainer)
]
#: Explainers that attribute to a layer (the NoiseTunnel is checked around one of them).
LAYER_EXPLAINERS = [
    name
    for name in CAPTUM_EXPLAINERS
    if issubclass(get_explainer_class(name), LayerCaptumExplainer)
]


class SmallNet(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return SmallNet().eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(2, 3, 4, 4)


BAD_CALLS = {
    "non-tensor input": (lambda x: x.tolist(), None, TypeError, "input_data"),
    "integer input": (lambda x: (x * 10).long(), None, TypeError, "input_data"),
    # any shape is accepted; one the model cannot take is named with the model's reason
    "3-D input": (lambda x: x[0], None, ValueError, "model cannot run on `input_data`"),
    "empty batch": (lambda x: x[:0], None, ValueError, "input_data"),
    "float target": (None, torch.tensor([1.0, 2.0]), TypeError, "pred_label_idx"),
    "2-D target": (None, torch.tensor([[1], [2]]), ValueError, "pred_label_idx"),
    "wrong-length target": (None, torch.tensor([1, 2, 3]), ValueError, "pred_label_idx"),
    "target too large": (None, 5, ValueError, "pred_label_idx"),
    "negative target": (None, torch.tensor([0, -1]), ValueError, "pred_label_idx"),
    "string target": (None, "cat", TypeError, "pred_label_idx"),
    "bool target": (None, True, TypeError, "pred_label_idx"),
    "input on another device": (lambda x: x.to("meta"), None, ValueError, "input_data"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
@pytest.mark.parametrize("name", CAPTUM_EXPLAINERS)
def test_bad_input_names_the_argument(name, case, model, x):
    make_input, target, error, argument = BAD_CALLS[case]
    data = make_input(x) if make_input else x
    if case == "integer input" and foxcem.get_explainer(name).accepts_integers:
        error = (TypeError, ValueError)  # token ids are taken; this model cannot take them
    with pytest.raises(error, match=argument):
        foxcem.get_explainer(name).calculate_features(model, data, target)


@pytest.mark.parametrize("name", CAPTUM_EXPLAINERS)
def test_misspelt_option_raises_type_error_naming_it(name, model, x):
    with pytest.raises(TypeError, match="baseline_s"):
        foxcem.get_explainer(name).calculate_features(model, x, 0, baseline_s=None)


def test_input_on_another_cuda_device_names_the_argument(model, x):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with pytest.raises(ValueError, match="input_data"):
        IntegratedGradientsCVExplainer().calculate_features(model, x.cuda(), 0)


def test_model_that_is_not_callable(x):
    with pytest.raises(TypeError, match="model"):
        IntegratedGradientsCVExplainer().calculate_features("resnet", x, 0)


@pytest.mark.parametrize("name", LAYER_EXPLAINERS)
def test_layer_methods_need_a_conv_layer_or_an_explicit_one(name, x):
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    with pytest.raises(ValueError, match="Conv2d"):
        foxcem.get_explainer(name).calculate_features(model, x, 0)


def test_layer_argument_is_checked(model, x):
    explainer = LayerIntegratedGradientsCVExplainer()
    with pytest.raises(TypeError, match="layer"):
        explainer.calculate_features(model, x, 0, layer="conv")
    with pytest.raises(ValueError, match="layer.*not a submodule"):
        explainer.calculate_features(model, x, 0, layer=nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="Conv2d"):
        foxcem.get_explainer("noise_tunnel", explainer="layer_gradcam").calculate_features(
            nn.Sequential(nn.Flatten(), nn.Linear(48, 3)), x, 0
        )


@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"n_steps": 0}, ValueError, "n_steps"),
        ({"n_steps": 2.5}, TypeError, "n_steps"),
        ({"method": "simpson"}, ValueError, "method"),
        ({"internal_batch_size": 0}, ValueError, "internal_batch_size"),
        ({"baselines": torch.zeros(2, 3, 5, 5)}, ValueError, "baselines"),
        ({"baselines": torch.zeros(2, 3, 4, 4, dtype=torch.long)}, TypeError, "baselines"),
        ({"baselines": "rand"}, ValueError, "baselines"),
        ({"baselines": [0.0]}, TypeError, "baselines"),
        ({"baselines": "random", "seed": -1}, ValueError, "seed"),
        ({"return_convergence_delta": 1}, TypeError, "return_convergence_delta"),
    ],
)
def test_bad_option_values_name_the_option(options, error, argument, model, x):
    with pytest.raises(error, match=argument):
        IntegratedGradientsCVExplainer().calculate_features(model, x, 0, **options)


@pytest.mark.parametrize(
    ("name", "options", "error", "argument"),
    [
        ("gradient_shap", {"n_samples": 0}, ValueError, "n_samples"),
        ("gradient_shap", {"stdevs": "big"}, TypeError, "stdevs"),
        ("gradient_shap", {"baselines": torch.zeros(4, 3, 2, 2)}, ValueError, "baselines"),
        ("deeplift_shap", {"baselines": "random", "n_baselines": 1}, ValueError, "n_baselines"),
        ("deeplift_shap", {"baselines": torch.zeros(3, 3, 3, 4, 4)}, ValueError, "baselines"),
        ("occlusion", {"perturbations_per_eval": 0}, ValueError, "perturbations_per_eval"),
        ("noise_tunnel", {"nt_samples": 0}, ValueError, "nt_samples"),
        ("noise_tunnel", {"seed": "zero"}, TypeError, "seed"),
        ("saliency", {"abs": "yes"}, TypeError, "abs"),
        ("layer_gradcam", {"upsample": None}, TypeError, "upsample"),
        ("deeplift", {"custom_attribution_func": 3}, TypeError, "custom_attribution_func"),
    ],
)
def test_method_options_are_checked(name, options, error, argument, model, x):
    with pytest.raises(error, match=argument):
        foxcem.get_explainer(name).calculate_features(model, x, 0, **options)


def test_hooking_methods_need_a_module(x, model):
    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs)

    with pytest.raises(TypeError, match="model.*nn.Module"):
        DeepLIFTCVExplainer().calculate_features(forward, x, 0)
    # Methods that only call the model accept a plain function.
    attributions = IntegratedGradientsCVExplainer().calculate_features(forward, x, 0, n_steps=4)
    assert attributions.shape == x.shape


class Empty(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, :0]


class EmptyLayerNet(SmallNet):
    """A model with a zero-channel branch: a layer attribution there is empty."""

    def __init__(self) -> None:
        super().__init__()
        self.empty = Empty()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x))
        return self.fc(h.flatten(1)) + self.empty(h).sum()


@pytest.mark.parametrize(
    "name", ["layer_integrated_gradients", "layer_input_x_gradient", "layer_conductance"]
)
def test_empty_attribution_raises_runtime_error(name, x):
    model = EmptyLayerNet().eval()
    with pytest.raises(RuntimeError, match="empty attribution"):
        foxcem.get_explainer(name).calculate_features(model, x, 0, layer=model.empty)


def test_validate_result_directly():
    with pytest.raises(RuntimeError, match="empty"):
        validate_result(torch.zeros(2, 0, 3))
    with pytest.raises(RuntimeError, match="empty"):
        validate_result((torch.zeros(2, 3), torch.zeros(0)))
    validate_result(torch.zeros(2, 3))


def test_default_target_is_the_prediction_not_class_zero(model, x):
    predicted = model(x).argmax(dim=1)
    default = IntegratedGradientsCVExplainer().calculate_features(model, x, n_steps=4)
    explicit = IntegratedGradientsCVExplainer().calculate_features(model, x, predicted, n_steps=4)
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
    # Targets given as int, 0-D tensor, list and 1-D tensor agree.
    as_int = IntegratedGradientsCVExplainer().calculate_features(model, x, 3, n_steps=4)
    for target in (torch.tensor(3), [3, 3], torch.tensor([3, 3])):
        torch.testing.assert_close(
            IntegratedGradientsCVExplainer().calculate_features(model, x, target, n_steps=4),
            as_int,
            rtol=0,
            atol=0,
        )


def test_split_convergence_delta_with_and_without_a_delta(model, x):
    ig = foxcem.IntegratedGradientsCVExplainer()
    attributions, delta = foxcem.split_convergence_delta(
        ig.calculate_features(model, x, n_steps=8, return_convergence_delta=True)
    )
    alone, none = foxcem.split_convergence_delta(ig.calculate_features(model, x, n_steps=8))
    assert none is None and torch.equal(alone, attributions)
    assert delta.shape == (x.shape[0],)
