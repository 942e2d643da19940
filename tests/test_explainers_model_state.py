"""Every registered explainer leaves a training model exactly as it found it, also on errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import foxcem
from foxcem.attribution import CaptumExplainer
from foxcem.core.registry import get_explainer_class

#: Every registered Captum-backed explainer (other packages may register native methods).
EXPLAINERS = [
    name
    for name in foxcem.available_explainers()
    if issubclass(get_explainer_class(name), CaptumExplainer)
]


class StateNet(nn.Module):
    """conv-BN-ReLU-conv-ReLU-maxpool-dropout-linear: layers every Captum method supports."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 3 * 3, 5)
        self.calls = 0
        self.fail_from_call = 0  # 0: never fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_from_call and self.calls >= self.fail_from_call:
            raise RuntimeError("model failed on purpose")
        x = self.relu1(self.bn(self.conv1(x)))
        x = self.pool(self.relu2(self.conv2(x)))
        return self.fc(self.drop(torch.flatten(x, 1)))


def training_model(device: str) -> StateNet:
    """A model mid-training: train mode, frozen parameters, pending gradients, a hook."""
    torch.manual_seed(0)
    model = StateNet().to(device).train()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    model.conv1.weight.requires_grad_(False)
    model.bn.bias.requires_grad_(False)
    model.conv2.weight.grad = torch.randn_like(model.conv2.weight)
    model.fc.bias.grad = torch.randn_like(model.fc.bias)
    model.drop.eval()  # a mixed mode tree, restored as it was
    model.relu1.register_forward_hook(lambda module, inputs, output: None)
    model.conv2.register_forward_pre_hook(lambda module, inputs: None)
    return model


def _hook_dicts(module: nn.Module) -> dict[str, dict]:
    return {
        name: dict(value)
        for name, value in vars(module).items()
        if "hooks" in name and isinstance(value, dict)
    }


def numpy_rng_state() -> tuple:
    """NumPy's global generator: key array, position, cached Gaussian."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    return keys.copy(), position, has_gauss, cached


def snapshot(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    params = list(model.parameters())
    return {
        "training": [m.training for m in model.modules()],
        "attributes": [set(vars(m)) for m in model.modules()],
        "hooks": [_hook_dicts(m) for m in model.modules()],
        "param_slots": [dict(m._parameters) for m in model.modules()],
        "params": params,
        "requires_grad": [p.requires_grad for p in params],
        "data_ptrs": [p.data_ptr() for p in params],
        "values": [p.detach().clone() for p in params],
        "grads": [p.grad for p in params],
        "grad_values": [None if p.grad is None else p.grad.clone() for p in params],
        "buffers": {name: b.clone() for name, b in model.named_buffers()},
        "input_requires_grad": x.requires_grad,
        "input_grad": x.grad,
        "input_values": x.detach().clone(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": numpy_rng_state(),
    }


def assert_unchanged(model: nn.Module, x: torch.Tensor, before: dict[str, Any]) -> None:
    after = snapshot(model, x)
    assert after["training"] == before["training"]
    assert after["attributes"] == before["attributes"]
    assert after["hooks"] == before["hooks"]
    for slots_after, slots_before in zip(after["param_slots"], before["param_slots"]):
        assert slots_after.keys() == slots_before.keys()
        assert all(slots_after[k] is slots_before[k] for k in slots_after)
    assert all(a is b for a, b in zip(after["params"], before["params"]))
    assert after["requires_grad"] == before["requires_grad"]
    assert after["data_ptrs"] == before["data_ptrs"]
    for a, b in zip(after["values"], before["values"]):
        assert torch.equal(a, b)
    for a, b in zip(after["grads"], before["grads"]):
        assert a is b
    for a, b in zip(after["grad_values"], before["grad_values"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert after["buffers"].keys() == before["buffers"].keys()
    for name, value in after["buffers"].items():
        assert torch.equal(value, before["buffers"][name]), name
    assert after["input_requires_grad"] == before["input_requires_grad"]
    assert after["input_grad"] is before["input_grad"]
    assert torch.equal(after["input_values"], before["input_values"])
    assert torch.equal(after["torch_rng"], before["torch_rng"])
    assert np.array_equal(after["numpy_rng"][0], before["numpy_rng"][0])
    assert after["numpy_rng"][1:] == before["numpy_rng"][1:]


def make_input(device: str, requires_grad: bool) -> torch.Tensor:
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(3)).to(device)
    return x.requires_grad_(requires_grad)


@pytest.mark.parametrize("name", EXPLAINERS)
def test_model_state_is_restored(name, device):
    model = training_model(device)
    x = make_input(device, True)  # the caller's leaf keeps its flag and gets no .grad
    explainer = foxcem.get_explainer(name)
    assert isinstance(explainer, CaptumExplainer)
    before = snapshot(model, x)
    result = explainer.calculate_features(model, x, torch.tensor([1, 4], device=device))
    assert isinstance(result, torch.Tensor) and not result.requires_grad
    assert result.grad_fn is None and result.shape[0] == 2
    assert_unchanged(model, x, before)
    # The model still trains normally: a train-mode forward updates BN statistics.
    model(x.detach())
    assert not torch.equal(model.bn.running_mean, before["buffers"]["bn.running_mean"])


@pytest.mark.parametrize("name", EXPLAINERS)
def test_model_state_is_restored_when_the_model_raises(name, device):
    model = training_model(device)
    model.fail_from_call = 2  # the prediction pass works, the explanation's first pass fails
    x = make_input(device, False)
    before = snapshot(model, x)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        foxcem.get_explainer(name).calculate_features(model, x, torch.tensor([0, 2], device=device))
    assert model.calls == 2
    assert_unchanged(model, x, before)


@pytest.mark.parametrize("name", EXPLAINERS)
def test_model_state_is_restored_after_a_misspelt_option(name, device):
    model = training_model(device)
    x = make_input(device, True)
    before = snapshot(model, x)
    with pytest.raises(TypeError, match="n_stepz"):
        foxcem.get_explainer(name).calculate_features(model, x, 1, n_stepz=3)
    assert_unchanged(model, x, before)


def test_explaining_inside_a_training_step_keeps_the_gradients():
    # Accumulated gradients survive an explanation between backward() and optimizer.step().
    model = training_model("cpu")
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = make_input("cpu", False)
    model(x).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    for name in ("integrated_gradients", "lrp", "deeplift", "layer_gradcam"):
        foxcem.get_explainer(name).calculate_features(model, x, 0)
    for name, p in model.named_parameters():
        if name in grads:
            assert torch.equal(p.grad, grads[name]), name
    weight = model.fc.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(model.fc.weight, weight)  # the optimizer still owns the parameters


@pytest.mark.parametrize("name", EXPLAINERS)
def test_explaining_between_forward_and_backward_keeps_the_graph(name):
    # The caller's autograd graph (which saved the weights and BatchNorm statistics) stays
    # valid: no explainer writes to a saved tensor in place.
    x = make_input("cpu", False)
    reference_model = training_model("cpu")
    reference_model(x).square().sum().backward()
    expected = [None if p.grad is None else p.grad.clone() for p in reference_model.parameters()]

    model = training_model("cpu")
    loss = model(x).square().sum()
    foxcem.get_explainer(name).calculate_features(model, x, 1)
    loss.backward()
    for p, grad in zip(model.parameters(), expected):
        assert (p.grad is None) == (grad is None)
        if grad is not None:
            torch.testing.assert_close(p.grad, grad, rtol=1e-6, atol=1e-7)
