"""Property-based: CEM's options and black-box models' answers, drawn from valid and hostile
values. Each call either gives the documented result or raises TypeError/ValueError whose message
names the argument; the model and the input are unchanged either way. And ``found`` is always
there and true to the model, for every combination of the options that shape a run."""

from __future__ import annotations

import itertools
import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from foxcem import CEMExplainer, InferenceWrapper

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

pytestmark = pytest.mark.filterwarnings("ignore:CEM found no feasible")

N = 3
BOOLS = ["add_only", "keep_best", "smooth", "history", "early_stop", "channels_first"]

#: option -> values, valid and hostile (types, NaN/inf, bool strings, wrong lengths).
VALUES = {
    **{name: [True, False, "False", "True", 1, None, np.bool_(True)] for name in BOOLS},
    "mode": ["PN", "PP", "pp", "XX", 1],
    "gradient": ["autograd", "urv", "URV", None],
    "c": [1.0, 10, -1.0, math.nan, math.inf, torch.ones(N), torch.ones(N + 1), "1"],
    "K": [0.0, 2.0, -1.0, math.nan, math.inf, "2"],
    "gamma": [0.0, 1.0, -1.0, math.nan],
    "l1": [0.5, -0.5, math.nan, math.inf],
    "l2": [0.5, -1.0, math.inf],
    "lower": [None, -0.5, 0.0, math.nan, -math.inf, torch.zeros(N + 1, 1, 8, 8), "0"],
    "upper": [None, 0.5, 1.0, math.inf, torch.ones(N, 1, 8, 8), torch.ones(2, 2)],
    "feature_range": [None, (0.0, 1.0), (0.0, math.inf), (1.0, 0.0), (0.0,), "01"],
    "no_info_value": ["min", None, 0.0, math.nan, torch.zeros(5), "median"],
    "pn_target": [None, 0, 3, [1] * N, [1] * (N + 1), 1.5, 99],
    "segments": [None, "grid:2", "grid:0", "grid:99", "slice:3", torch.zeros(N, 8, 8).long(),
                 torch.zeros(N, 4, 4).long(), 1.5],
    "num_iter": [1, 3, 0, -1, 2.5, "3", True],
    "c_steps": [1, 2, 0, 1.0],
    "seed": [0, None, -1, 2**64, 1.5, "0"],
    "zero_tol": [0.0, 1e-3, -1.0, math.nan],
    "num_directions": [2, 0, 2.5, "2"],
    "mu": [None, 0.01, 0.0, -1.0, math.inf],
    "batch_size": ["auto", None, 4, 0, "4", np.array([4])],
    "two_sided": ["auto", True, False, "yes", 1],
    "precision": [None, "fp32", "bf16", "fp16", 16],
    "threads": ["auto", None, 1, 0, "2"],
    "start_noise": [0.0, 0.1, -0.1, math.nan],
    "progress": [False, "auto", "False", 0],
    "callback": [None, lambda step, info: None, lambda step, info: info["success"], 3],
}  # fmt: skip


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _snapshot(model: nn.Module) -> tuple:
    return (
        model.training,
        [p.requires_grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _unchanged(model: nn.Module, before: tuple) -> bool:
    after = _snapshot(model)
    return (
        after[0] == before[0]
        and after[1] == before[1]
        and all(torch.equal(after[2][k], v) for k, v in before[2].items())
    )


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return Net().train(), torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@hypothesis.settings(
    max_examples=80, deadline=None, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)  # fmt: skip
@hypothesis.given(
    st.dictionaries(
        st.sampled_from(sorted(VALUES)),
        st.integers(min_value=0, max_value=7),
        min_size=1,
        max_size=4,
    )
)
def test_cem_options_give_a_result_or_name_the_argument(setup, drawn: dict) -> None:
    model, x = setup
    options = {name: VALUES[name][i % len(VALUES[name])] for name, i in drawn.items()}
    options.setdefault("num_iter", 3)
    options.setdefault("c_steps", 1)
    options.setdefault("num_directions", 2)
    options.setdefault("progress", False)
    before, x_before = _snapshot(model), x.clone()
    explainer = CEMExplainer()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            delta = explainer.calculate_features(model, x, **options)
    except (TypeError, ValueError) as exc:
        names = set(options) | {"AE", "input_data", "pred_label_idx", "target"}
        named = set(re.findall(r"`(\w+)", str(exc)))
        assert named & names, f"{exc!r} names none of {sorted(options)}"
    else:
        assert delta.shape == x.shape and bool(torch.isfinite(delta).all())
        assert explainer.meta_data["found"].shape == (N,)
    assert _unchanged(model, before) and torch.equal(x, x_before) and model.training


def _answers() -> st.SearchStrategy:
    shapes = st.sampled_from([(N, 3), (N,), (N, 3, 1), (N + 1, 3), (0, 3), (N, 0)])
    dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.complex64, object])
    arrays = st.builds(
        lambda shape, dtype, nan: _array(shape, dtype, nan), shapes, dtypes, st.booleans()
    )
    return st.one_of(
        arrays,
        arrays.map(lambda a: a.tolist() if a.dtype != object else a),
        arrays.map(lambda a: torch.as_tensor(a) if a.dtype.kind in "biuf" else a),
        st.sampled_from([None, "scores", {"logits": 1}, [[0.1, 0.2], [0.3]], 3.0, b"x"]),
        st.just([torch.zeros(3)] * N),
        st.just([torch.zeros(3), torch.zeros(2), torch.zeros(3)]),
    )


def _array(shape: tuple, dtype: type, nan: bool) -> np.ndarray:
    array = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) / 7.0
    if nan and array.size:
        array.flat[0] = np.nan
    if dtype is object:
        return array.astype(str).astype(object)
    return array.astype(dtype)


@hypothesis.settings(max_examples=150, deadline=None, derandomize=True)
@hypothesis.given(_answers())
def test_inference_wrapper_answers_are_scores_or_named(answer) -> None:
    x = torch.rand(N, 1, 4, 4)
    x_before = x.clone()
    wrapped = InferenceWrapper(lambda array: answer, numpy=True)
    try:
        scores = wrapped(x)
    except ValueError as exc:
        assert "wrapped model's answer" in str(exc), repr(exc)
    else:
        assert scores.shape[0] == N and scores.dim() == 2 and scores.dtype == torch.float32
        assert bool(torch.isfinite(scores).all())
        expected = torch.as_tensor(np.asarray(torch.stack(answer) if isinstance(answer, list)
                                              and isinstance(answer[0], torch.Tensor) else answer,
                                              dtype=np.float64)).float()  # fmt: skip
        assert torch.equal(scores, expected)
    assert torch.equal(x, x_before)


COMBINATIONS = list(
    itertools.product(
        [True, False],  # keep_best
        [1, 2],  # c_steps
        [False, True],  # early_stop
        [None, "grid:4"],  # segments
        ["autograd", "urv"],  # gradient
        ["fp32", "bf16"],  # precision
    )
)


@pytest.mark.parametrize("keep_best, c_steps, early_stop, segments, gradient, precision",
                         COMBINATIONS)  # fmt: skip
def test_found_is_there_and_true_to_the_model(
    setup, keep_best, c_steps, early_stop, segments, gradient, precision
) -> None:
    model, x = setup
    model = model.eval()  # judged below as the explainer runs it
    explainer = CEMExplainer()
    kappa = 2.0
    delta = explainer.calculate_features(
        model, x, K=kappa, keep_best=keep_best, c_steps=c_steps, early_stop=early_stop,
        segments=segments, gradient=gradient, precision=precision, num_iter=8,
        num_directions=4, progress=False,
    )  # fmt: skip
    model.train()
    found = explainer.meta_data["found"]
    assert found.dtype == torch.bool and found.shape == (N,)
    with torch.no_grad():
        clean = model.eval()(x).argmax(dim=1)
        context = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if precision == "bf16"
            else torch.autocast("cpu", enabled=False)
        )
        with context:
            scores = model(x + delta).float()
        model.train()
    other = scores.scatter(1, clean[:, None], -math.inf).amax(dim=1)
    margin = other - scores.gather(1, clean[:, None])[:, 0]
    assert torch.equal(found, margin >= kappa - 1e-3 * max(1.0, float(margin.abs().max())))
