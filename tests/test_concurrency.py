"""Threads explaining one model at the same time get their sequential results, and the model and
the global random streams end exactly as they started."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from foxcem import CEMExplainer, get_explainer

pytestmark = pytest.mark.filterwarnings("ignore:CEM found no feasible")


class Net(nn.Module):
    """Train-mode BatchNorm and Dropout: a model an unguarded overlap would visibly change."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(6 * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


def _tasks(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    cem = CEMExplainer()  # one instance shared by every thread

    def run_cem(mode: str) -> Any:
        delta = cem.calculate_features(model, x, mode=mode, num_iter=30, c_steps=2)
        return delta, cem.meta_data["found"]  # this thread's own meta data

    return {
        "ig": lambda: get_explainer("ig").calculate_features(model, x, n_steps=16),
        "layer_ig": lambda: get_explainer("layer_ig").calculate_features(model, x, n_steps=8),
        "gradient_shap": lambda: get_explainer("gradient_shap").calculate_features(
            model, x, baselines="random", n_samples=4, stdevs=0.1, seed=3
        ),
        "cem_pn": lambda: run_cem("PN"),
        "cem_pp_urv": lambda: cem.calculate_features(
            model, x, mode="PP", gradient="urv", num_iter=10, c_steps=1, num_directions=8
        ),
    }


def _state(model: nn.Module) -> tuple:
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
        torch.get_rng_state(),
        np.random.get_state()[1].copy(),
    )


def _assert_same_state(before: tuple, after: tuple) -> None:
    assert before[0] == after[0] and before[1] == after[1]
    assert all(torch.equal(before[2][k], after[2][k]) for k in before[2])
    assert torch.equal(before[3], after[3]) and np.array_equal(before[4], after[4])


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return all(_equal(u, v) for u, v in zip(a, b))
    return torch.equal(a, b)


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_explanations_equal_their_sequential_results(workers: int) -> None:
    torch.manual_seed(0)
    model = Net().train()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    before = _state(model)
    tasks = _tasks(model, x)
    sequential = {name: task() for name, task in tasks.items()}
    _assert_same_state(before, _state(model))

    jobs = list(tasks.items()) * 2  # every method twice, overlapping with the others
    start = threading.Barrier(workers)

    def run(item: tuple[str, Callable[[], Any]]) -> tuple[str, Any]:
        name, task = item
        try:
            start.wait(timeout=5)  # the first wave starts together
        except threading.BrokenBarrierError:
            pass
        return name, task()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, jobs))
    for name, result in results:
        assert _equal(result, sequential[name]), name
    _assert_same_state(before, _state(model))
    assert model.training and model.bn.training


def test_a_long_call_does_not_run_in_train_mode_after_a_short_one_returns() -> None:
    """A short call starts first, a long call joins, the short call ends: its guard must not
    restore the model while the long call still runs it, and the model ends in train mode."""
    torch.manual_seed(0)
    model = Net().train()
    modes: list[bool] = []
    short_in, long_in, short_done = threading.Event(), threading.Event(), threading.Event()

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            name = threading.current_thread().name
            if name == "short" and not short_in.is_set():
                short_in.set()
                long_in.wait(5)
            elif name == "long":
                if not long_in.is_set():
                    long_in.set()
                    short_done.wait(5)
                else:
                    modes.append(self.net.training)
            return self.net(v)

    spy = Spy().train()
    x = torch.rand(2, 1, 8, 8)
    short = threading.Thread(
        target=lambda: get_explainer("saliency").calculate_features(spy, x, 0), name="short"
    )
    long = threading.Thread(
        target=lambda: get_explainer("ig").calculate_features(spy, x, 0, n_steps=4), name="long"
    )
    short.start()
    short_in.wait(5)
    long.start()
    short.join()
    short_done.set()
    long.join()
    assert modes and not any(modes)  # eval mode throughout the long call
    assert spy.training and model.training  # and train mode again once both are done
