"""``foxcem.compat.max``: MAX's tutorials run with the import changed, on IBM's MNIST model.

The seed tutorials' code is kept as written, translated only by the import and NumPy → torch
(``np.random.RandomState().normal`` → ``torch.randn``, ``np.linalg.norm`` → ``torch.linalg.norm``,
images as (1, 1, 28, 28) tensors for the torch port of the model). Tests on IBM's model skip when
``../shared/ibm_mnist`` is absent.
"""

from __future__ import annotations

from typing import Callable

import ibm_mnist
import numpy as np
import pytest
import torch
from torch import nn

import foxcem.compat.max as maxi
from foxcem.compat.max.gradient import BaseGradient

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def ibm() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    models = ibm_mnist.load_models()
    if models is None:
        pytest.skip("IBM's MNIST model (../shared/ibm_mnist) is not beside the checkout")
    images, _ = ibm_mnist.load_images(0, 16)
    return models[0], models[1], images


class Counting(nn.Module):
    """Counts the forward passes (of any batch size) of the wrapped model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)).eval()


# The custom gradient of the MAX tutorial, translated NumPy -> torch (seeded for the test).
class TutorialURV(BaseGradient):
    def __init__(
        self,
        loss: Callable[[torch.Tensor], float],
        img_size: int,
        mu: float = None,
        num_iter: int = 100,
    ) -> None:
        super().__init__(loss=loss)
        self.t, self.d, self.q = 0, img_size, num_iter
        self.mu = mu
        self.randomState = torch.Generator().manual_seed(0)

    def __call__(self, data: torch.Tensor) -> torch.Tensor:
        self.t += 1.0
        mu = 1.0 / np.sqrt(self.t) / np.sqrt(self.d) if self.mu is None else self.mu
        tilde_f_x_r = self.loss.get_loss(data)
        g = torch.zeros(data.shape)
        for _ in range(self.q):
            u = torch.randn(data.shape, generator=self.randomState)
            u_norm = torch.linalg.norm(u)
            u = u / u_norm
            tilde_f_x_l = self.loss.get_loss(data + mu * u)
            g += self.d / mu / self.q * (tilde_f_x_l - tilde_f_x_r) * u
        return g


@pytest.mark.slow
def test_mnist_tutorial_pp_and_pn_run_as_written_on_ibm_model() -> None:
    model, _, x_test = ibm()
    inputs = x_test[5].reshape(1, 1, 28, 28)
    loss_class = maxi.loss.TF_CEMLoss
    optimizer_class = maxi.optimizer.AdaExpGradOptimizer
    gradient_class = maxi.gradient.TF_Gradient
    loss_kwargs = {"mode": "PP", "gamma": 0.0, "K": 2}
    optimizer_kwargs = {"l1": 0.05, "l2": 0.005, "channels_first": False}
    gradient_kwargs = {}
    cem = maxi.ExplanationGenerator(
        loss=loss_class,
        optimizer=optimizer_class,
        gradient=gradient_class,
        loss_kwargs=loss_kwargs,
        optimizer_kwargs=optimizer_kwargs,
        gradient_kwargs=gradient_kwargs,
        num_iter=1000,
        save_freq=250,
        verbose=False,
    )
    results, _ = cem.run(image=inputs, inference_call=model)
    assert list(results) == ["1", "250", "500", "750", "1000"]  # MAX's savepoint keys
    with torch.no_grad():
        label = model(inputs).argmax(1)
        pp = results["1000"]
        assert model(pp).argmax(1).item() == label.item()  # the PP keeps the class
        assert (pp.abs() > 0.01).sum() < (inputs > 0.01).sum()  # with less than the image

    inputs = x_test[15].reshape(1, 1, 28, 28)
    loss_kwargs = {"mode": "PN", "gamma": 0.0, "K": 10}
    optimizer_kwargs = {"l1": 0.005, "l2": 0.0005, "channels_first": False}
    cem = maxi.ExplanationGenerator(
        loss=loss_class,
        optimizer=optimizer_class,
        gradient=gradient_class,
        loss_kwargs=loss_kwargs,
        optimizer_kwargs=optimizer_kwargs,
        gradient_kwargs=gradient_kwargs,
        num_iter=1000,
        save_freq=250,
        verbose=False,
    )
    results, _ = cem.run(image=inputs, inference_call=model)
    with torch.no_grad():
        label = model(inputs).argmax()
        for iter_, result in list(results.items())[1:]:
            pred = model(inputs + result)
            assert pred.argmax() != label, iter_  # the PN changes the class


def test_custom_gradient_tutorial_plugs_in_and_its_model_calls_are_counted() -> None:
    model, autoencoder, x_test = ibm()
    counting = Counting(model)
    loss_class = maxi.TF_CEMLoss
    optimizer_class = maxi.AoExpGradOptimizer
    gradient_class = TutorialURV
    loss_kwargs = {"mode": "PP", "c": 100, "gamma": 300, "K": 30, "AE": autoencoder}
    optimizer_kwargs = {"l1": 0.1, "l2": 30, "eta": 1.0}
    gradient_kwargs = {"mu": None, "num_iter": 5}  # the tutorial's 150, fewer for the test
    cem = maxi.ExplanationGenerator(
        loss=loss_class,
        optimizer=optimizer_class,
        gradient=gradient_class,
        loss_kwargs=loss_kwargs,
        optimizer_kwargs=optimizer_kwargs,
        gradient_kwargs=gradient_kwargs,
        num_iter=30,  # the tutorial's 1500, fewer for the test
        save_freq=10,
    )
    results, meta = cem.run(image=x_test[:1], inference_call=counting)
    assert list(results) == ["1", "10", "20", "30"]
    assert meta["model_calls"] == counting.calls
    assert counting.calls >= 30 * (5 + 1)  # every direction of every step was a model call
    assert results["30"].shape == (1, 1, 28, 28) and torch.isfinite(results["30"]).all()


def test_model_calls_equal_the_calls_made_with_the_built_in_gradients() -> None:
    model, x = small_model(), torch.rand(3, 1, 8, 8)
    for gradient, kwargs in (
        (maxi.Torch_Gradient, {}),
        (maxi.URVGradientEstimator, {"num_iter": 7}),
    ):
        counting = Counting(model)
        cem = maxi.ExplanationGenerator(
            gradient=gradient,
            loss_kwargs={"mode": "PN", "K": 1},
            gradient_kwargs=kwargs,
            num_iter=12,
        )
        _, meta = cem.run(image=x, inference_call=counting)
        assert meta["model_calls"] == counting.calls > 12


def test_save_freq_inf_smooth_modes_numpy_images_and_inference_model() -> None:
    model, x = small_model(), torch.rand(2, 1, 8, 8)
    wrapped = maxi.InferenceWrapper(inference_model=model)
    cem = maxi.ExplanationGenerator(
        gradient=maxi.Torch_Gradient,
        loss_kwargs={"mode": "PNSMOOTH", "K": 1},
        num_iter=8,
        save_freq=np.inf,
    )
    results, _ = cem.run(image=x.numpy(), inference_call=wrapped)
    assert list(results) == ["8"]  # only the result, as MAX with save_freq = inf
    loss = maxi.Torch_CEMLoss(mode="PPSMOOTH", org_img=x, inference=model, gamma=0.0, K=2)
    assert loss.mode == "PP" and loss.smooth
    values = loss.get_loss(torch.zeros_like(x))
    assert values.shape == (2, 1, 1, 1)  # broadcasts against a direction per sample
    with pytest.raises(TypeError, match="inference_model"):
        maxi.InferenceWrapper()


def test_a_loss_without_one_value_per_sample_is_named() -> None:
    class ElementLoss:  # MAX's test loss: x ** 2, one value per element
        def __init__(self, org_img: torch.Tensor, inference: nn.Module) -> None:
            self.x = org_img

        def get_loss(self, delta: torch.Tensor) -> torch.Tensor:
            return delta**2

    cem = maxi.ExplanationGenerator(loss=ElementLoss, gradient=maxi.Torch_Gradient, num_iter=3)
    with pytest.raises(ValueError, match="one value per sample"):
        cem.run(image=torch.rand(2, 1, 8, 8), inference_call=small_model())


def test_max_style_loss_class_plugs_in() -> None:
    class SquaredLoss:  # a MAX-style loss: keyword construction, get_loss
        def __init__(self, org_img: torch.Tensor, inference: nn.Module, scale: float) -> None:
            self.x, self.scale = org_img, scale

        def get_loss(self, delta: torch.Tensor) -> torch.Tensor:
            return self.scale * ((delta - 0.5) ** 2).flatten(1).sum(1, keepdim=True)

    cem = maxi.ExplanationGenerator(
        loss=SquaredLoss,
        gradient=maxi.Torch_Gradient,
        loss_kwargs={"scale": 1.0},
        optimizer=torch.optim.SGD,
        optimizer_kwargs={"lr": 0.25},
        num_iter=60,
    )
    results, meta = cem.run(image=torch.zeros(2, 3), inference_call=small_model())
    torch.testing.assert_close(results["60"], torch.full((2, 3), 0.5), atol=1e-4, rtol=0)
    assert meta["model_calls"] == 0  # this loss never calls the model
