"""CEMExplainer on the real digits CNN: success rates, sparsity, input checks, determinism."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import foxcem
from foxcem import CEMExplainer
from foxcem.cem import ExplanationGenerator
from foxcem.demo.digits import DigitsSplit


@pytest.fixture(scope="module")
def images(digits_split: DigitsSplit) -> torch.Tensor:
    return digits_split.x_test[:32]


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


@pytest.mark.parametrize(
    "gradient, num_iter, min_rate", [("autograd", 100, 0.9), ("urv", 100, 0.75)]
)
def test_pn_flips_the_prediction(
    digits_model: nn.Module, images: torch.Tensor, gradient: str, num_iter: int, min_rate: float
) -> None:
    extra = {"num_directions": 20} if gradient == "urv" else {}
    pn = CEMExplainer().calculate_features(
        digits_model, images, mode="PN", gradient=gradient, num_iter=num_iter, **extra
    )
    assert pn.shape == images.shape and pn.dtype == images.dtype
    flipped = _predict(digits_model, images + pn) != _predict(digits_model, images)
    assert flipped.float().mean() >= min_rate, f"{flipped.float().mean():.2f}"
    # x + δ stays in the batch's value range (the default feature range), and ink is only added
    lo, hi = images.min(), images.max()
    assert (pn >= 0).all()
    assert ((images + pn) >= lo - 1e-6).all() and ((images + pn) <= hi + 1e-6).all()
    assert (pn.flatten(1).abs().sum(1) < images.flatten(1).abs().sum(1)).all()


@pytest.mark.parametrize(
    "gradient, num_iter, min_rate", [("autograd", 100, 0.9), ("urv", 100, 0.75)]
)
def test_pp_keeps_the_prediction_and_is_sparse(
    digits_model: nn.Module, images: torch.Tensor, gradient: str, num_iter: int, min_rate: float
) -> None:
    extra = {"num_directions": 20} if gradient == "urv" else {}
    explainer = CEMExplainer()
    pp = explainer.calculate_features(
        digits_model, images, mode="PP", gradient=gradient, num_iter=num_iter, **extra
    )
    kept = _predict(digits_model, pp) == _predict(digits_model, images)
    assert kept.float().mean() >= min_rate, f"{kept.float().mean():.2f}"
    assert torch.equal(explainer.meta_data["success"], kept)
    # δ ⊆ x, and much sparser than the input
    assert (pp >= -1e-7).all() and (pp <= images + 1e-7).all()
    l1_pp, l1_x = pp.flatten(1).abs().sum(1), images.flatten(1).abs().sum(1)
    assert (l1_pp < l1_x).all()
    assert l1_pp.mean() < 0.5 * l1_x.mean()


def test_pn_target_moves_towards_the_requested_class(
    digits_model: nn.Module, images: torch.Tensor
) -> None:
    x = images[:8]
    pred = _predict(digits_model, x)
    pn_target = (pred + 1) % 10
    pn = CEMExplainer().calculate_features(
        digits_model, x, mode="PN", pn_target=pn_target, num_iter=150, c=5.0
    )
    assert (_predict(digits_model, x + pn) == pn_target).float().mean() >= 0.75


def test_seeded_calls_are_identical(digits_model: nn.Module, images: torch.Tensor) -> None:
    explainer = CEMExplainer()
    options = dict(mode="PN", gradient="urv", num_iter=10, num_directions=10, start_noise=0.1)
    a = explainer.calculate_features(digits_model, images[:6], seed=3, **options)
    b = explainer.calculate_features(digits_model, images[:6], seed=3, **options)
    c = explainer.calculate_features(digits_model, images[:6], seed=4, **options)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the caller's global RNG stream is not shifted
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    explainer.calculate_features(digits_model, images[:2], **options)
    assert torch.equal(torch.rand(3), expected)


def test_model_state_is_preserved(digits_model: nn.Module, images: torch.Tensor) -> None:
    model = copy.deepcopy(digits_model).train()
    marker = torch.full_like(model.classifier[3].weight, 0.5)
    model.classifier[3].weight.grad = marker.clone()
    x = images[:4].clone().requires_grad_(True)
    CEMExplainer().calculate_features(model, x, mode="PP", num_iter=5)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert torch.equal(model.classifier[3].weight.grad, marker)
    assert x.requires_grad


def test_explicit_class_and_inference_mode(digits_model: nn.Module, images: torch.Tensor) -> None:
    explainer = CEMExplainer()
    with torch.inference_mode():
        pp = explainer.calculate_features(
            digits_model, images[:4], pred_label_idx=3, mode="PP", num_iter=5
        )
    assert pp.shape == images[:4].shape


def test_channels_last_input(digits_model: nn.Module, images: torch.Tensor) -> None:
    x = images[:4]

    def nhwc_model(v: torch.Tensor) -> torch.Tensor:
        return digits_model(v.permute(0, 3, 1, 2))

    explainer = CEMExplainer()
    first = explainer.calculate_features(digits_model, x, mode="PN", num_iter=20)
    last = explainer.calculate_features(
        nhwc_model, x.permute(0, 2, 3, 1), mode="PN", num_iter=20, channels_first=False
    )
    assert last.shape == (4, 8, 8, 1)
    torch.testing.assert_close(last.permute(0, 3, 1, 2), first, rtol=1e-4, atol=1e-5)


def test_create_explainer_and_registry(digits_model: nn.Module) -> None:
    assert "cem" in foxcem.available_explainers()
    explainer = foxcem.get_explainer("cem")
    assert isinstance(explainer, CEMExplainer)
    gen = explainer.create_explainer(digits_model, mode="PP", gradient="urv", num_iter=7)
    assert isinstance(gen, ExplanationGenerator) and gen.num_iter == 7
    assert gen.loss_kwargs["mode"] == "PP" and gen.gradient_kwargs["num_directions"] == 100


def test_bad_input_raises_value_error_naming_it(
    digits_model: nn.Module, images: torch.Tensor
) -> None:
    explainer = CEMExplainer()
    x = images[:4]
    with pytest.raises(ValueError, match="mode"):
        explainer.calculate_features(digits_model, x, mode="XP")
    with pytest.raises(ValueError, match="lower"):
        explainer.calculate_features(digits_model, x, lower=torch.zeros(4, 1, 8))
    pred = _predict(digits_model, x)
    with pytest.raises(ValueError, match="pn_target"):
        explainer.calculate_features(digits_model, x, mode="PN", pn_target=pred)
    with pytest.raises(ValueError, match="model output"):
        explainer.calculate_features(lambda v: digits_model(v)[:, :, None], x)
    with pytest.raises(ValueError, match="gradient"):
        explainer.calculate_features(digits_model, x, gradient="numeric")
    with pytest.raises(ValueError, match="optimizer"):
        explainer.calculate_features(digits_model, x, optimizer="adam")
    with pytest.raises(TypeError, match="num_iters"):
        explainer.calculate_features(digits_model, x, num_iters=5)
    with pytest.raises(ValueError, match="pred_label_idx"):
        explainer.calculate_features(digits_model, x, pred_label_idx=12)
    with pytest.raises(TypeError, match="input_data"):
        explainer.calculate_features(digits_model, x.long())


def test_on_device(digits_model: nn.Module, images: torch.Tensor, device: str) -> None:
    model = copy.deepcopy(digits_model).to(device)
    x = images[:8].to(device)
    explainer = CEMExplainer()
    for gradient in ("autograd", "urv"):
        pn = explainer.calculate_features(
            model, x, mode="PN", gradient=gradient, num_iter=60, num_directions=20
        )
        assert pn.device.type == device
        flipped = _predict(model, x + pn) != _predict(model, x)
        assert flipped.float().mean() >= 0.75
    if device == "cuda":  # a seeded call is reproducible on the GPU too
        options = dict(mode="PP", gradient="urv", num_iter=5, num_directions=10, seed=1)
        a = explainer.calculate_features(model, x, **options)
        b = explainer.calculate_features(model, x, **options)
        torch.testing.assert_close(a, b)
