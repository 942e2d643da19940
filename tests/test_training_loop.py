"""Explaining inside a plain PyTorch training loop changes nothing about the training.

A small CNN with BatchNorm and dropout is trained twice from the same seed on real digits — once
with an explanation call every step (between forward and backward, while the autograd graph is
alive, and again between backward and the optimizer step, while the gradients are pending), once
without. Final weights, BatchNorm statistics, optimizer state and the global RNG state must be
bitwise identical. The batch order (``torch.randperm``) and dropout draw from the global RNG, so an
explainer that consumed random numbers without isolating them would shift the training's stream.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytest
import torch
from torch import nn

import foxcem
from foxcem.demo.digits import DigitsSplit

STEPS = 6
BATCH = 32

#: (registry name, options): every explainer is called on 4 validation digits.
EXPLAINERS = {
    "integrated_gradients": {"n_steps": 8},
    "gradient": {"aggregate": "abs_max"},
    # PN with the black-box URV estimator and a Gaussian start: random numbers every iteration
    # (from CEM's own seeded generator).
    "cem": {
        "mode": "PN",
        "gradient": "urv",
        "num_iter": 4,
        "num_directions": 16,
        "start_noise": 0.1,
    },
    # Captum draws GradientShap's noise and baselines from the global torch and NumPy RNGs; with
    # seed=None they are not reseeded, so only the isolation keeps the training stream intact.
    "gradient_shap": {"n_samples": 4, "stdevs": 0.1, "seed": None},
}


class SmallNet(nn.Module):
    """conv-BN-ReLU-dropout-linear for (N, 1, 8, 8) digits; logits (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.25)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _train(
    split: DigitsSplit, explain: Optional[Callable[[nn.Module, torch.Tensor], Any]]
) -> dict[str, Any]:
    """Train STEPS Adam steps from seed 0; ``explain(model, images)`` is called twice per step."""
    torch.manual_seed(0)
    model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    probe = split.x_test[:4].clone()
    model.train()
    for _ in range(STEPS):
        index = torch.randperm(len(split.y_train))[:BATCH]  # global RNG
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(split.x_train[index]), split.y_train[index])
        if explain is not None:
            explain(model, probe)  # the graph of `loss` is alive
        loss.backward()
        if explain is not None:
            explain(model, probe)  # the parameters' .grad are pending
        optimizer.step()
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "training": model.training,
    }


def _assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["training"] == b["training"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:  # weights and BatchNorm running_mean / running_var / batches tracked
        assert torch.equal(a["model"][key], b["model"][key]), key
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for index in state_a:
        for name in state_a[index]:
            assert torch.equal(
                torch.as_tensor(state_a[index][name]), torch.as_tensor(state_b[index][name])
            ), (index, name)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert torch.equal(a["rng"], b["rng"])


@pytest.fixture(scope="module")
def reference(digits_split: DigitsSplit) -> dict[str, Any]:
    return _train(digits_split, None)


@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_training_is_bitwise_unchanged(
    name: str, digits_split: DigitsSplit, reference: dict[str, Any]
) -> None:
    explainer = foxcem.get_explainer(name)
    options = EXPLAINERS[name]
    calls = []

    def explain(model: nn.Module, images: torch.Tensor) -> None:
        result = explainer.calculate_features(model, images, None, **options)
        calls.append(result)

    _assert_identical(_train(digits_split, explain), reference)
    assert len(calls) == 2 * STEPS
    assert all(torch.isfinite(r).all() for r in calls)


def test_training_without_explainer_is_reproducible(
    digits_split: DigitsSplit, reference: dict[str, Any]
) -> None:
    _assert_identical(_train(digits_split, None), reference)


@pytest.mark.parametrize("leak", ["global_rng", "batchnorm_update"])
def test_the_comparison_detects_a_leaky_call(
    leak: str, digits_split: DigitsSplit, reference: dict[str, Any]
) -> None:
    """The test above is not vacuous: an unguarded call that draws one random number, or runs the
    model once in train mode, does change the training."""

    def leaky(model: nn.Module, images: torch.Tensor) -> None:
        if leak == "global_rng":
            torch.rand(1)
        else:
            with torch.no_grad():
                model(images)

    result = _train(digits_split, leaky)
    with pytest.raises(AssertionError):
        _assert_identical(result, reference)
