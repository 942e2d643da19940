"""The model-state guard on its own: everything it promises to restore, also after a raise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from foxcem.core.model_state import gradients_enabled, preserve_model_state


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )
    model.train()
    model[0].weight.requires_grad_(False)
    model[5].weight.grad = torch.full_like(model[5].weight, 0.25)
    model.register_forward_hook(lambda *args: None)
    return model


def _state(model: nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "params": [id(p) for p in model.parameters()],
        "grads": [
            (id(p.grad), None if p.grad is None else p.grad.clone()) for p in model.parameters()
        ],
        "buffers": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": [len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()],
        "attrs": [sorted(vars(m)) for m in model.modules()],
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["params"] == after["params"]
    assert before["hooks"] == after["hooks"]
    assert before["attrs"] == after["attrs"]
    for (id_b, g_b), (id_a, g_a) in zip(before["grads"], after["grads"]):
        assert id_b == id_a
        assert (g_b is None and g_a is None) or torch.equal(g_b, g_a)
    for key, value in before["buffers"].items():
        assert torch.equal(value, after["buffers"][key]), key


def _mutate(model: nn.Module, x: torch.Tensor) -> None:
    """Everything a careless attribution method might do to a model."""
    model.train()  # BatchNorm now updates its running statistics
    model(x)
    model[5].weight.requires_grad_(True)
    model(x).sum().backward()  # accumulates into the caller's .grad
    model[2].register_forward_hook(lambda *args: None)
    model[2].rule = "epsilon"
    model[5].bias = nn.Parameter(torch.zeros(3))
    x.requires_grad_(True)


@pytest.mark.parametrize("raises", [False, True])
def test_guard_restores_everything(raises: bool) -> None:
    model = _model()
    x = torch.randn(5, 1, 6, 6)
    before = _state(model)
    with pytest.raises(RuntimeError) if raises else _nullcontext():
        with preserve_model_state(model, inputs=x):
            assert not any(m.training for m in model.modules())
            assert not any(p.requires_grad for p in model.parameters())
            _mutate(model, x)
            if raises:
                raise RuntimeError("explanation failed")
    _assert_same(before, _state(model))
    assert not x.requires_grad


def test_guard_isolates_global_rng() -> None:
    model = _model()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with preserve_model_state(model):
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected)


def test_gradients_enabled_inside_inference_mode() -> None:
    with torch.inference_mode():
        x = torch.randn(2, 3)
        with gradients_enabled():
            y = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad((y**2).sum(), y)
    assert torch.allclose(grad, 2 * x)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
