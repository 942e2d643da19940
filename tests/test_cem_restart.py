"""``pn_start``: a PN search that stalls at δ = 0 is run again from the box's far corner, and
the samples the first search explained keep exactly its result."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from foxcem import CEMExplainer
from foxcem.cem.restart import far_corner

KAPPA = 1.0


class DeadZone(nn.Module):
    """Class 0 scores 2; class 1 scores 10·relu(Σx − 3.5): flat (zero gradient) far from the
    threshold, so a PN search from δ = 0 cannot move there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(dim=1)
        return torch.stack([torch.full_like(total, 2.0), 10.0 * torch.relu(total - 3.5)], dim=1)


#: Sample 0 in the dead zone (Σx = 0.8); sample 1 near the threshold (Σx = 3.55).
X = torch.tensor([[[[0.2, 0.2], [0.2, 0.2]]], [[[0.9, 0.9], [0.9, 0.85]]]])
OPTIONS = dict(mode="PN", gradient="autograd", K=KAPPA, feature_range=(0.0, 1.0), num_iter=60,
               c_steps=3, progress=False)  # fmt: skip


def explain(**options):
    explainer = CEMExplainer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the not-found warning of the plain search
        delta = explainer.calculate_features(DeadZone(), X, **{**OPTIONS, **options})
    return delta, explainer.meta_data


def margin(delta: torch.Tensor) -> torch.Tensor:
    scores = DeadZone()(X + delta)
    return scores[:, 1] - scores[:, 0]  # the PN's new class over the explained one


def test_the_stalled_sample_is_found_from_the_far_corner_and_the_other_kept() -> None:
    plain, plain_meta = explain(pn_start="zeros")
    assert plain_meta["found"].tolist() == [False, True]
    delta, meta = explain()  # the default: "auto"
    assert meta["found"].tolist() == [True, True]
    assert meta["restarted"].tolist() == [True, False]
    assert torch.equal(delta[1], plain[1])  # the first search's result, untouched
    assert (margin(delta) >= KAPPA - 1e-4).all()  # checked on the model
    assert ((X + delta >= -1e-6) & (X + delta <= 1 + 1e-6)).all()
    assert meta["model_calls"] > plain_meta["model_calls"]
    assert meta["num_iter"] == 2 * plain_meta["num_iter"]
    assert meta["loss_history"].shape[0] == 2 * plain_meta["loss_history"].shape[0]


def test_a_batch_explained_at_once_runs_one_search() -> None:
    delta, meta = explain()
    one = CEMExplainer()
    one.calculate_features(DeadZone(), X[1:], **OPTIONS)
    assert "restarted" not in one.meta_data
    assert one.meta_data["num_iter"] == meta["num_iter"] // 2


def test_the_full_start_is_the_far_corner() -> None:
    starts = []

    def record(step: int, info: dict) -> None:
        if step == 1:
            starts.append(info["delta"].clone())

    explain(pn_start="full", callback=record, num_iter=2, c_steps=1)
    explainer = CEMExplainer()
    generator = explainer.create_explainer(DeadZone(), **{**OPTIONS, "pn_start": "full"})
    loss = generator.loss(DeadZone(), X, **generator.loss_kwargs)
    corner = far_corner(loss, torch.zeros_like(X))
    assert torch.allclose(corner, 1.0 - X)  # PN adds up to the range's top
    assert starts and (starts[0] <= corner + 1e-6).all()  # one step from the corner, inward


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(pn_start="ones"), "pn_start"),
        (dict(pn_start=None), "pn_start"),
        (dict(pn_start="full", mode="PP"), "mode='PN'"),
        (dict(pn_start="full", start_noise=0.1), "start_noise"),
    ],
)
def test_bad_values_name_the_argument(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CEMExplainer().calculate_features(DeadZone(), X, **{**OPTIONS, **options})
