"""The CPU paths are fast for every caller: no subnormal numbers from the proximal step, threads
chosen by the library per call and the caller's settings left as they were."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from foxcem import CEMExplainer, get_explainer
from foxcem.cem import AdaExpGrad, AoExpGrad, exp_grad_prox
from foxcem.core.threads import SMALL_CALL, check_threads, choose_threads, cpu_threads
from foxcem.demo.digits import DigitsSplit

TINY = torch.finfo(torch.float32).tiny


def _subnormals(tensor: torch.Tensor) -> int:
    if not tensor.is_floating_point():
        return 0
    tiny = torch.finfo(tensor.dtype).tiny
    return int(((tensor != 0) & (tensor.abs() < tiny)).sum())


def test_the_proximal_step_returns_no_subnormal_numbers() -> None:
    # z = −G/α = 1e-36 makes v = β·expm1(1e-36) ≈ 1.3e-39: a subnormal float32 unless flushed.
    x = torch.zeros(2, 784)
    G = torch.full((2, 784), -1e-36)
    alpha = torch.ones(2)
    out = exp_grad_prox(x, G, alpha, 0.0, 0.0, torch.ones(2), 1.0 / 784)
    reference = (1.0 / 784) * torch.expm1(torch.tensor(1e-36, dtype=torch.float64))
    assert 0 < reference < TINY  # the exact value is subnormal in float32
    assert _subnormals(out) == 0 and bool((out == 0).all())
    # Normal values are untouched: the same step with a larger gradient.
    big = exp_grad_prox(x, G * 1e30, alpha, 0.0, 0.0, torch.ones(2), 1.0 / 784)
    assert bool((big > TINY).all())


@pytest.mark.parametrize("cls", [AdaExpGrad, AoExpGrad])
@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_the_optimizers_keep_no_subnormal_numbers(cls: type, l2: float) -> None:
    generator = torch.Generator().manual_seed(0)
    # A start with subnormal entries, gradients with subnormal and tiny normal entries.
    delta = torch.full((3, 64), 1e-39)
    delta[:, :8] = 0.3
    opt = cls([delta], l1=0.0, l2=l2, lower=-1.0, upper=1.0, zero_tol=0.0)
    for step in range(60):
        grad = torch.randn(3, 64, generator=generator) * 1e-37
        grad[:, :4] = 1e-40
        grad[:, 8:16] = 0.5 if step % 2 else -0.5
        opt.zero_grad()
        delta.grad = grad
        opt.step()
        assert _subnormals(delta) == 0
        for key, value in opt.state[delta].items():
            if isinstance(value, torch.Tensor):
                assert _subnormals(value) == 0, (step, key)
    assert _subnormals(opt.output(delta)) == 0


def test_thread_choice_follows_the_size_of_a_model_call() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_threads("auto", SMALL_CALL - 1, cpu) == 1
    assert choose_threads("auto", SMALL_CALL, cpu) is None
    assert choose_threads(3, 10, cpu) == 3
    assert choose_threads(None, 10, cpu) is None
    assert choose_threads("auto", 10, cuda) is None  # nothing changes for a GPU loop
    for bad in ("2", True, 1.5):
        with pytest.raises(TypeError, match="threads"):
            check_threads(bad)
    with pytest.raises(ValueError, match="threads"):
        check_threads(0)


class _ThreadSpy(nn.Module):
    """A small classifier that records the torch thread count of every forward pass."""

    def __init__(self, features: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 10))
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.net(x)


def test_cem_runs_small_calls_on_one_thread_and_restores_the_callers_setting() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        model = _ThreadSpy().eval()
        x = torch.rand(4, 1, 8, 8)
        CEMExplainer().calculate_features(model, x, 0, num_iter=5, c_steps=1, progress=False)
        assert set(model.seen[-6:]) == {1}  # the optimisation's model calls
        assert torch.get_num_threads() == 2
        model.seen.clear()
        CEMExplainer().calculate_features(
            model, x, 0, num_iter=5, c_steps=1, progress=False, threads=None
        )
        assert set(model.seen) == {2}  # the caller's setting, as asked
        with pytest.raises(ValueError):  # the setting is restored when the call raises
            CEMExplainer().calculate_features(model, x, 0, num_iter=5, c=-1.0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_large_model_calls_keep_the_callers_threads() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        side = 224
        model = _ThreadSpy(3 * side * side).eval()
        x = torch.rand(2, 3, side, side)
        assert 2 * x[0].numel() >= SMALL_CALL
        CEMExplainer().calculate_features(model, x, 0, num_iter=2, c_steps=1, progress=False)
        assert set(model.seen[-3:]) == {2}
    finally:
        torch.set_num_threads(before)


def test_attribution_methods_choose_threads_too(digits_split: DigitsSplit) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = _ThreadSpy().eval()
        x = digits_split.x_test[:4]
        get_explainer("integrated_gradients").calculate_features(model, x, 0, n_steps=8)
        assert model.seen[-1] == 1 and torch.get_num_threads() == 2
        get_explainer("saliency").calculate_features(model, x, 0, threads=2)
        assert model.seen[-1] == 2
    finally:
        torch.set_num_threads(before)


def test_the_thread_scope_belongs_to_the_calling_thread() -> None:
    """A concurrent explanation on another thread neither sees nor undoes the scope."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inside, outside = threading.Event(), threading.Event()
        seen: dict[str, int] = {}

        def worker() -> None:
            with cpu_threads(1):
                seen["worker"] = torch.get_num_threads()
                inside.set()
                outside.wait(10)

        thread = threading.Thread(target=worker)
        thread.start()
        inside.wait(10)
        seen["main"] = torch.get_num_threads()
        outside.set()
        thread.join()
        assert seen == {"worker": 1, "main": 2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _flushes() -> bool:
    """Whether the process flushes subnormal results to zero right now."""
    return float(torch.tensor([1e-39]) * 1.0) == 0.0


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="no flush-to-zero control here")
@pytest.mark.parametrize("flush", [False, True])
def test_the_callers_flush_setting_is_left_alone(digits_model: nn.Module, flush: bool) -> None:
    torch.set_flush_denormal(flush)
    try:
        assert _flushes() == flush
        x = torch.rand(2, 1, 8, 8)
        CEMExplainer().calculate_features(digits_model, x, num_iter=5, c_steps=1, progress=False)
        assert _flushes() == flush
    finally:
        torch.set_flush_denormal(False)
