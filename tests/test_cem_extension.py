"""The CEM parts extend like an ordinary training loop: a custom gradient source, a plain-callable loss,
any torch.optim optimizer."""

from __future__ import annotations

import copy
from typing import Optional

import pytest
import torch
from torch import nn

from foxcem.cem import (
    AoExpGrad,
    CEMLoss,
    ExplanationGenerator,
    GradientSource,
    PerSampleLoss,
    URVGradientEstimator,
)
from foxcem.demo.digits import DigitsSplit


class CentralDifferences(GradientSource):
    """The worked example of the docs: central differences along every coordinate, all 2·d
    points of all samples in one loss call (the loss takes leading dimensions)."""

    def __init__(self, loss: PerSampleLoss, h: float = 1e-3) -> None:
        super().__init__(loss)
        self.h = h

    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        d = delta[0].numel()
        eye = torch.eye(d, dtype=delta.dtype, device=delta.device).reshape(d, 1, *delta.shape[1:])
        steps = torch.cat([eye, -eye]) * self.h  # (2d, 1, ...)
        with torch.no_grad():
            values = self.loss(delta.unsqueeze(0) + steps)  # (2d, n)
        grad = (values[:d] - values[d:]) / (2 * self.h)  # (d, n)
        return grad.T.reshape(delta.shape).to(delta.dtype)


@pytest.fixture(scope="module")
def model64(digits_model: nn.Module) -> nn.Module:
    return copy.deepcopy(digits_model).double().eval().requires_grad_(False)


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def test_a_custom_gradient_source_drives_a_pn_to_success(
    model64: nn.Module, digits_split: DigitsSplit
) -> None:
    x = digits_split.x_test[:6].double()
    generator = ExplanationGenerator(
        gradient=CentralDifferences,
        loss_kwargs={"mode": "PN", "K": 2.0, "c": 10.0},
        optimizer_kwargs={"l1": 1.0, "l2": 0.5},
        num_iter=60,
        keep_best=True,
    )
    savepoints, meta = generator.run(image=x, inference_call=model64)
    delta = next(reversed(savepoints.values()))
    assert meta["found"].all()
    assert (_predict(model64, x + delta) != _predict(model64, x)).all()
    assert (delta >= 0).all()  # PN adds ink only


def test_a_plain_callable_loss_works_with_urv_in_an_ordinary_loop(
    model64: nn.Module, digits_split: DigitsSplit
) -> None:
    x = digits_split.x_test[:6].double()
    cem = CEMLoss(model64, x, mode="PN", K=2.0, c=10.0)
    plain = lambda z: cem(z)  # noqa: E731 - no `samples=`: one candidate per sample per call
    urv = URVGradientEstimator(plain, num_directions=40, seed=0)
    assert not urv.takes_samples
    delta = cem.start()
    opt = AoExpGrad([delta], l1=1.0, l2=0.5, lower=cem.lower, upper=cem.upper)
    for _ in range(150):
        opt.zero_grad()
        delta.grad = urv(delta)
        opt.step()
    assert urv.last_num_calls == 40 + 1  # F(δ) once, then one call per direction
    flipped = cem.success(opt.output(delta))
    assert flipped.float().mean() >= 5 / 6, flipped


@pytest.mark.parametrize("optimizer", ["adam", "aoexpgrad"])
def test_any_torch_optimizer_keeps_delta_inside_the_bounds(
    model64: nn.Module, digits_split: DigitsSplit, optimizer: str
) -> None:
    x = digits_split.x_test[:8].double()
    options = (
        {"optimizer": torch.optim.Adam, "optimizer_kwargs": {"lr": 0.2}}
        if optimizer == "adam"
        else {"optimizer": AoExpGrad, "optimizer_kwargs": {"l1": 1.0}}
    )
    from foxcem.cem import AutogradGradient

    generator = ExplanationGenerator(
        gradient=AutogradGradient,
        loss_kwargs={"mode": "PN", "K": 2.0, "c": 10.0},
        num_iter=40,
        save_freq=5,
        keep_best=True,
        **options,
    )
    savepoints, meta = generator.run(image=x, inference_call=model64)
    bounds = CEMLoss(model64, x, mode="PN")
    assert len(savepoints) > 5
    for delta in savepoints.values():
        assert (delta >= bounds.lower - 1e-12).all() and (delta <= bounds.upper + 1e-12).all()
    assert meta["found"].float().mean() >= 0.75
    # an optimizer without l1/l2: "best" is the smallest ‖δ‖₁
    if optimizer == "adam":
        assert "found" in meta
