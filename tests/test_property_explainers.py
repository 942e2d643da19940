"""Property-based: every registered explainer, on drawn shapes, dtypes, targets and options,
either returns a result of the right shape or raises TypeError/ValueError naming the argument —
never another exception — and leaves the model exactly as it was."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import foxcem

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

NAMES = foxcem.available_explainers()

#: A pool of options, valid and invalid values; each explainer is offered those it knows.
OPTION_VALUES = {
    "n_steps": [1, 3, 0, -2, 2.5, "four"],
    "baselines": [None, 0.0, "zeros", "random", "bogus", 1],
    "internal_batch_size": [None, 2, 0, -1],
    "return_convergence_delta": [False, True, "yes"],
    "method": ["gausslegendre", "riemann_left", "simpson"],
    "abs": [True, False, 1],
    "aggregate": ["abs_max", "sum", "nope"],
    "stdevs": [0.1, 0.0, -1.0, math.nan],
    "nt_samples": [2, 0],
    "n_samples": [2, 0],
    "sliding_window_shapes": [(1, 2, 2), (1, 1), (9, 9, 9)],
    "strides": [1, (1, 1, 1), 0],
    "seed": [0, None, -1, 1.5],
    "mode": ["PN", "PP", "pp", "XX"],
    "num_iter": [1, 2, 0],
    "c_steps": [1, 0],
    "c": [1.0, -1.0, math.inf],
    "K": [0.0, 2.0, -1.0, math.nan],
    "l1": [0.5, -0.5, math.nan],
    "gradient": ["autograd", "urv", "fd"],
    "num_directions": [3, 0],
    "zero_tol": [0.0, 1e-3, -1.0],
    "no_info_value": ["min", None, 0.5, "median"],
    "relu_attribution": [False, True],
    "attribute_to_layer_input": [False, True, None],
    "misspelt_option": [1],
}


class Net(nn.Module):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def _options_of(name: str) -> list[str]:
    explainer = foxcem.get_explainer(name)
    known = explainer.options() if hasattr(explainer, "options") else []
    return [k for k in OPTION_VALUES if k in known or k == "misspelt_option"]


def _snapshot(model: nn.Module) -> tuple:
    return (
        copy.deepcopy(model.state_dict()),
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        [len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()],
    )


@st.composite
def cases(draw: st.DrawFn, name: str) -> dict:
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(4, 7)), draw(st.integers(4, 7))
    classes = draw(st.integers(2, 4))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16]))
    target = draw(
        st.one_of(
            st.none(),
            st.integers(-1, classes),
            st.lists(st.integers(0, classes - 1), min_size=n, max_size=n),
            st.lists(st.integers(0, classes - 1), min_size=n + 1, max_size=n + 1),
            st.just("zero"),
        )
    )
    chosen = draw(st.lists(st.sampled_from(_options_of(name)), max_size=3, unique=True))
    options = {key: draw(st.sampled_from(OPTION_VALUES[key])) for key in chosen}
    if name == "cem":  # keep it short
        options.setdefault("num_iter", 2)
        options.setdefault("c_steps", 1)
        options.setdefault("num_directions", 3)
    return {"shape": (n, c, h, w), "classes": classes, "dtype": dtype, "target": target,
            "options": options}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_every_explainer_returns_or_names_the_argument(name: str) -> None:
    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
    @hypothesis.given(case=cases(name))
    def check(case: dict) -> None:
        torch.manual_seed(0)
        n, c, h, w = case["shape"]
        model = Net(c, case["classes"]).eval()
        model.train(bool(n % 2))  # sometimes in training mode: restored either way
        before = _snapshot(model)
        x = torch.rand(case["shape"], generator=torch.Generator().manual_seed(1))
        x = x.to(case["dtype"])
        try:
            result = foxcem.get_explainer(name).calculate_features(
                model, x, case["target"], **case["options"]
            )
        except (TypeError, ValueError) as exc:
            message = str(exc)
            named = ["input_data", "pred_label_idx", "target", "model", "layer", "delta"]
            named += list(case["options"])
            assert any(k in message for k in named) or "option" in message, message
        else:
            attributions = result[0] if isinstance(result, tuple) else result
            assert attributions.shape[0] == n
            assert (
                attributions.shape[-2:] == (h, w)
                or name == "layer_gradcam"
                or (attributions.dim() == 4)
            )
        after = _snapshot(model)
        for key, value in before[0].items():
            assert torch.equal(value, after[0][key]), key
        assert before[1:] == after[1:]

    check()
