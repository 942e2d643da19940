"""Each silently wrong result and raw error found by trying foxcem as a demanding user would,
reproduced, and what happens now."""

from __future__ import annotations

import copy
import math
from typing import Optional

import pytest
import torch
import torchvision
from captum.attr import DeepLift, IntegratedGradients
from torch import nn

import foxcem
from foxcem import CEMExplainer, get_explainer
from foxcem.cem import AdaExpGrad, AoExpGrad, AutogradGradient, ExplanationGenerator


class ShiftedNet(nn.Module):
    """A model with an extra forward argument that changes its prediction."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor, shift: Optional[torch.Tensor] = None) -> torch.Tensor:
        scores = self.fc(x.flatten(1))
        return scores if shift is None else scores + shift


def _x(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 2, 2, generator=torch.Generator().manual_seed(1))


def test_additional_forward_args_are_used_to_find_the_explained_class() -> None:
    model, x = ShiftedNet().eval(), _x()
    shift = torch.full((4, 4), -100.0)
    shift[torch.arange(4), torch.tensor([3, 2, 1, 0])] = 100.0  # the argument decides the class
    ours = get_explainer("integrated_gradients").calculate_features(
        model, x, additional_forward_args=(shift,), n_steps=8
    )
    target = model(x, shift).argmax(dim=1)
    assert target.tolist() == [3, 2, 1, 0]
    theirs = IntegratedGradients(model).attribute(
        x, target=target, additional_forward_args=(shift,), n_steps=8
    )
    torch.testing.assert_close(ours, theirs)


def test_a_users_backward_hook_does_not_change_deeplift() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = _x()
    expected = DeepLift(copy.deepcopy(model)).attribute(x, target=0)
    seen = []
    handle = model[2].register_full_backward_hook(lambda m, gi, go: seen.append(1))
    try:
        ours = get_explainer("deeplift").calculate_features(model, x, 0)
    finally:
        handle.remove()
    torch.testing.assert_close(ours, expected)
    assert len(model[2]._backward_hooks) == 0  # the user's hook was restored, then removed


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["eta", "l1", "l2"])
def test_non_finite_hyper_parameters_are_refused(name: str, bad: float) -> None:
    delta = torch.zeros(2, 3)
    for cls in (AoExpGrad, AdaExpGrad):
        with pytest.raises(ValueError, match=name):
            cls([delta], **{name: bad})
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match=name):
        CEMExplainer().calculate_features(model, _x(), **{name: bad})


def test_generator_leaves_batchnorm_statistics_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 3))
    model.train()
    before = copy.deepcopy(model.state_dict())
    ExplanationGenerator(gradient=AutogradGradient, num_iter=5).run(
        image=_x(), inference_call=model
    )
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("cls", [AoExpGrad, AdaExpGrad])
def test_optimizer_state_round_trips_and_a_resumed_run_is_bitwise_identical(cls: type) -> None:
    a = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    delta = torch.zeros_like(a)
    opt = cls([delta], l1=0.2, l2=0.3, lower=-2.0, upper=2.0)
    for _ in range(7):
        delta.grad = delta - a
        opt.step()
    saved, saved_delta = copy.deepcopy(opt.state_dict()), delta.detach().clone()
    for _ in range(8):  # the uninterrupted run
        delta.grad = delta - a
        opt.step()
    resumed = saved_delta.clone()
    again = cls([resumed], l1=0.2, l2=0.3, lower=-2.0, upper=2.0)
    again.load_state_dict(saved)
    assert again.state[resumed]["active"].dtype == torch.bool
    assert again.state[resumed]["lam"].dtype == torch.float64
    for _ in range(8):
        resumed.grad = resumed - a
        again.step()
    assert torch.equal(resumed, delta) and torch.equal(again.output(resumed), opt.output(delta))


def test_add_param_group_then_step() -> None:
    first, second = torch.zeros(2, 3), torch.zeros(4, 2)
    opt = AoExpGrad([first], l1=0.1, lower=-1.0, upper=1.0)
    opt.add_param_group({"params": [second], "l1": 0.0})
    for p in (first, second):
        p.grad = -torch.ones_like(p)
    opt.step()
    assert (second > 0).all() and (first > 0).all()
    with pytest.raises(ValueError, match="l2"):
        opt.add_param_group({"params": [torch.zeros(1, 2)], "l2": math.nan})


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["integrated_gradients", "saliency", "occlusion", "deeplift"])
def test_an_input_of_another_dtype_is_cast_to_the_models(dtype: torch.dtype, name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)).eval()
    x = _x().to(dtype)
    result = get_explainer(name).calculate_features(model, x, 0)
    assert result.dtype == torch.float32 and result.shape[0] == 4
    assert torch.isfinite(result).all()


def test_a_model_without_autograd_graph_is_refused_up_front() -> None:
    class NoGrad(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return x.flatten(1)[:, :3] * 2

    for name in ("integrated_gradients", "saliency", "gradient_shap", "noise_tunnel"):
        with pytest.raises(ValueError, match=f"{name} needs gradients.*'occlusion'"):
            get_explainer(name).calculate_features(NoGrad(), _x())


def test_layer_integrated_gradients_with_in_place_relu() -> None:
    model = torchvision.models.alexnet(weights=None).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    result = get_explainer("layer_integrated_gradients").calculate_features(
        model, x, 0, layer=model.features[0], n_steps=4
    )
    assert result.shape == (2, 64, 15, 15) and torch.isfinite(result).all()
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))  # restored


def test_deeplift_on_a_model_that_reuses_its_relu_names_the_modules() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    with pytest.raises(ValueError, match=r"'layer1\.0\.relu'.*integrated_gradients"):
        get_explainer("deeplift").calculate_features(model, torch.rand(1, 3, 64, 64), 0)


def test_a_misspelt_option_names_the_valid_ones() -> None:
    model, x = ShiftedNet().eval(), _x()
    with pytest.raises(
        TypeError, match=r"occlusion has no option 'stride' \(did you mean 'strides'"
    ):
        get_explainer("occlusion").calculate_features(model, x, stride=2)
    with pytest.raises(TypeError, match="over integrated_gradients has no option 'n_step'"):
        get_explainer("noise_tunnel").calculate_features(model, x, n_step=3)
    with pytest.raises(TypeError, match="cem has no option 'num_iters'"):
        CEMExplainer().calculate_features(model, x, num_iters=3)


def test_target_is_accepted_as_in_captum() -> None:
    model, x = ShiftedNet().eval(), _x()
    a = foxcem.SaliencyCVExplainer().calculate_features(model, x, target=2)
    b = foxcem.SaliencyCVExplainer().calculate_features(model, x, 2)
    torch.testing.assert_close(a, b)
    with pytest.raises(TypeError, match="not both"):
        foxcem.SaliencyCVExplainer().calculate_features(model, x, 2, target=1)
