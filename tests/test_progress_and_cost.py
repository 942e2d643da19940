"""Long runs are announced before they happen; progress reads well in a terminal and in a log."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import foxcem.core.cost as cost
from foxcem import CEMExplainer, get_explainer
from foxcem.core.cost import CostWatch, LongRunWarning, format_duration
from foxcem.core.progress import progress_bar

pytestmark = pytest.mark.filterwarnings("ignore:CEM found no feasible")


class _Clock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now


def test_cost_watch_warns_once_with_the_estimate_and_what_is_cheaper() -> None:
    clock = _Clock(1.0)
    watch = CostWatch(1000, "CEM PN · URV on 4 inputs", cheaper=["a GPU"], clock=clock)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(10):
            clock.now += 1.0  # one second per step
            watch.update()
    long = [w for w in caught if issubclass(w.category, LongRunWarning)]
    assert len(long) == 1
    text = str(long[0].message)
    assert "CEM PN · URV on 4 inputs" in text and "17 min" in text and "a GPU" in text
    assert watch.estimate == pytest.approx(1000.0)


def test_cost_watch_is_silent_for_a_short_run() -> None:
    clock = _Clock(0.01)
    watch = CostWatch(1000, "short", clock=clock)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongRunWarning)
        for _ in range(1000):
            clock.now += 0.01  # 10 s in all
            watch.update()
    assert watch.estimate == pytest.approx(10.0)


def test_format_duration() -> None:
    assert format_duration(42) == "42 s"
    assert format_duration(600) == "10 min"
    assert format_duration(4 * 3600) == "4.0 h"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def test_a_long_cem_run_is_announced_once_and_a_short_one_not(monkeypatch) -> None:
    x = torch.rand(2, 1, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CEMExplainer().calculate_features(_model(), x, 0, num_iter=30, c_steps=2, progress=False)
    assert not [w for w in caught if issubclass(w.category, LongRunWarning)]
    monkeypatch.setattr(cost, "LONG_RUN", 1e-9)  # any run is "long" now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CEMExplainer().calculate_features(
            _model(), x, 0, num_iter=30, c_steps=2, gradient="urv", progress=False
        )
    long = [str(w.message) for w in caught if issubclass(w.category, LongRunWarning)]
    assert len(long) == 1
    assert "CEM PN · URV" in long[0] and "1×8×8" in long[0] and "num_directions" in long[0]


def test_progress_in_a_log_is_a_few_plain_lines(capsys: pytest.CaptureFixture) -> None:
    x = torch.rand(2, 1, 8, 8)
    CEMExplainer().calculate_features(
        _model(), x, 0, mode="PP", num_iter=40, c_steps=3, progress=True
    )
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 4, lines
    assert all(line.startswith("CEM PP · autograd") for line in lines), lines
    assert "round 3/3" in lines[-1] and "120/120 step" in lines[-1]


def test_progress_off_writes_nothing(capsys: pytest.CaptureFixture) -> None:
    x = torch.rand(2, 1, 8, 8)
    CEMExplainer().calculate_features(_model(), x, 0, num_iter=40, c_steps=1, progress=False)
    get_explainer("integrated_gradients").calculate_features(_model(), x, 0, n_steps=300)
    assert capsys.readouterr().err == ""


def test_the_plain_reporter_has_the_bar_interface(capsys: pytest.CaptureFixture) -> None:
    bar = progress_bar(8, "work", unit="pass")
    bar.set_description("work · part 2")
    bar.set_postfix(loss=1.0)
    for _ in range(8):
        bar.update()
    bar.close()
    assert capsys.readouterr().err.splitlines()[-1].startswith("work · part 2: 8/8 pass (100%")


def test_a_long_captum_run_is_announced_and_shows_progress_when_asked(
    monkeypatch, capsys: pytest.CaptureFixture
) -> None:
    x = torch.rand(4, 1, 8, 8)
    ig = get_explainer("integrated_gradients")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ig.calculate_features(_model(), x, 0, n_steps=64, internal_batch_size=16)
    assert not [w for w in caught if issubclass(w.category, LongRunWarning)]
    monkeypatch.setattr(cost, "LONG_RUN", 1e-9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ig.calculate_features(
            _model(), x, 0, n_steps=64, internal_batch_size=16, show_progress=True
        )
    long = [str(w.message) for w in caught if issubclass(w.category, LongRunWarning)]
    assert len(long) == 1
    assert "integrated_gradients on 4 inputs of 1×8×8" in long[0] and "n_steps" in long[0]
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("integrated_gradients on 4 inputs of 1×8×8: 16/16 pass")
    with pytest.raises(ValueError, match="show_progress"):
        ig.calculate_features(_model(), x, 0, show_progress="yes")


def test_cost_watch_does_not_extrapolate_the_first_units_warm_up() -> None:
    clock = _Clock(0.0)
    watch = CostWatch(1000, "warm-up", clock=clock)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongRunWarning)
        clock.now += 10.0  # the first step pays for kernel selection and allocation
        watch.update()
        for _ in range(999):
            clock.now += 0.01
            watch.update()
    assert watch.estimate == pytest.approx(10.0 + 999 * 0.01)


def test_cost_watch_warns_at_once_when_the_first_unit_alone_is_slow() -> None:
    clock = _Clock(0.0)
    watch = CostWatch(100, "slow", clock=clock)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clock.now += 30.0
        watch.update()
    assert [w for w in caught if issubclass(w.category, LongRunWarning)]
    assert watch.estimate == pytest.approx(3000.0)
