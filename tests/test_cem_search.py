"""The c search, the best feasible iterate, honest failure reports, and what PN/PP may change."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from foxcem import CEMExplainer
from foxcem.cem import CEMLoss, CSearch, ExplanationGenerator, fit_no_info_value
from foxcem.demo.digits import DigitsSplit


@pytest.fixture(scope="module")
def model64(digits_model: nn.Module) -> nn.Module:
    return copy.deepcopy(digits_model).double().eval().requires_grad_(False)


def test_c_search_follows_the_literal_schedule() -> None:
    """×10 until the first success, then bisection — IBM's loop, written out per sample, against
    the batched search over all samples at once, round by round."""
    outcomes = np.random.default_rng(0).random((7, 5)) < 0.5  # round × sample: success or not
    search = CSearch(torch.full((5,), 10.0, dtype=torch.float64))
    literal = [(10.0, 0.0, 1e10)] * 5  # (c, lower, upper) per sample
    for r in range(7):
        batched = search.update(torch.from_numpy(outcomes[r]))
        for k, (c, lo, hi) in enumerate(literal):
            if outcomes[r, k]:
                hi = min(hi, c)
                if hi < 1e9:
                    c = (lo + hi) / 2
            else:
                lo = max(lo, c)
                c = (lo + hi) / 2 if hi < 1e9 else c * 10
            literal[k] = (c, lo, hi)
        assert batched.tolist() == pytest.approx([c for c, _, _ in literal])


def test_best_feasible_iterate_across_rounds(model64: nn.Module, digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:8].double()
    explainer = CEMExplainer()
    delta = explainer.calculate_features(model64, x, mode="PN", num_iter=60, c_steps=3, K=3.0)
    meta = explainer.meta_data
    assert meta["found"].all() and meta["num_iter"] == 180
    loss = CEMLoss(model64, x, mode="PN", K=3.0)
    assert loss.feasible(loss.evaluate(delta)).all()  # the margin κ holds on what is returned
    assert meta["c"].shape == (8,) and not torch.equal(meta["c"], torch.full_like(meta["c"], 10))
    # exactly sparse: what is not zero is above the output's tolerance
    assert ((delta == 0) | (delta.abs() > 1e-3)).all() and (delta == 0).any()


def test_a_sample_without_feasible_explanation_is_reported(
    model64: nn.Module, digits_split: DigitsSplit
) -> None:
    x = digits_split.x_test[:4].double()
    upper = torch.full_like(x, 0.5)
    upper[1] = 0.0  # sample 1 may not change at all: it cannot flip
    explainer = CEMExplainer()
    with pytest.warns(UserWarning, match=r"no feasible explanation for 1 of 4 samples"):
        explainer.calculate_features(
            model64, x, mode="PN", num_iter=40, c_steps=2, lower=0.0, upper=upper, K=1.0
        )
    assert explainer.meta_data["found"].tolist() == [True, False, True, True]


def test_pn_adds_ink_only_and_a_blank_image_gets_one(
    model64: nn.Module, digits_split: DigitsSplit
) -> None:
    x = torch.cat([torch.zeros(1, 1, 8, 8, dtype=torch.float64), digits_split.x_test[:5].double()])
    explainer = CEMExplainer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every sample is explained
        delta = explainer.calculate_features(model64, x, mode="PN", num_iter=80, c_steps=3)
    assert (delta >= 0).all() and ((x + delta) <= 1.0 + 1e-12).all()
    assert delta[0].abs().sum() > 0  # the batch's range, not the blank image's empty one
    both_ways = CEMLoss(model64, x, mode="PN", no_info_value=None)
    assert (both_ways.lower < 0).any()  # the previous behaviour, on request


def test_no_information_values(model64: nn.Module, digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:4].double()
    median = fit_no_info_value(digits_split.x_train.double())
    assert median.shape == x.shape[1:]
    loss = CEMLoss(model64, x, mode="PN", no_info_value=median, feature_range=(0.0, 1.0))
    above, below = x > median, x < median
    assert (loss.lower[above] == 0).all() and (loss.upper[below] == 0).all()
    pp = CEMLoss(model64, x, mode="PP", no_info_value=0.25, feature_range=(0.0, 1.0))
    torch.testing.assert_close(pp.model_input(pp.start()), x)  # v + (x − v): all of x
    with pytest.raises(ValueError, match="no_info_value"):
        CEMLoss(model64, x, no_info_value="middle")


def test_autograd_on_a_model_without_graph_suggests_urv(digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:2]

    class NumpyModel(nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(v.detach().numpy().reshape(len(v), -1)[:, :10].copy())

    with pytest.raises(ValueError, match="gradient='urv'"):
        CEMExplainer().calculate_features(NumpyModel(), x, mode="PN", num_iter=2, c_steps=1)
    delta = CEMExplainer().calculate_features(
        NumpyModel(), x, mode="PN", gradient="urv", num_iter=2, c_steps=1, keep_best=False
    )
    assert delta.shape == x.shape


def test_autoencoder_output_shape_is_checked(model64: nn.Module, digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:2].double()
    with pytest.raises(ValueError, match="AE"):
        CEMLoss(model64, x, gamma=1.0, AE=lambda v: v.flatten(1))


def test_generator_without_search_keeps_the_seeds_behaviour(
    model64: nn.Module, digits_split: DigitsSplit
) -> None:
    x = digits_split.x_test[:3].double()
    from foxcem.cem import AutogradGradient

    gen = ExplanationGenerator(gradient=AutogradGradient, loss_kwargs={"mode": "PN"}, num_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five steps find few explanations; reported in `found`
        savepoints, meta = gen.run(image=x, inference_call=model64)
    assert list(savepoints) == ["5"] and meta["num_iter"] == 5
    # `found` is there without keep_best too, judged on the returned δ by the model
    assert torch.equal(
        meta["found"], meta["success"] & (meta["attack"] <= -gen.loss_kwargs.get("K", 10.0))
    )
