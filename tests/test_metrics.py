"""Faithfulness and sparsity metrics: known answers, a brute-force reference, and the Quantus
adapter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import foxcem
from foxcem.metrics import (
    completeness_gap,
    deletion_auc,
    deletion_curve,
    gini_index,
    insertion_auc,
    insertion_curve,
    near_zero_fraction,
    quantus_explain_func,
    sparsity,
)


class Counting(nn.Module):
    """Wraps a model and counts the rows it is asked to score."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        self.calls += 1
        return self.model(x)


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 3)).eval()


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 25, 5),
    )


def _brute_force(
    model: nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    targets: list[int],
    n_steps: int,
    baseline: torch.Tensor,
    mode: str,
    output: str,
) -> np.ndarray:
    """One model call per sample and step; masks built from an explicit sort."""
    attributions = torch.broadcast_to(attributions, attributions.shape)  # as given
    scores = np.zeros((len(x), n_steps + 1))
    for i in range(len(x)):
        flat = attributions[i].flatten().tolist()
        order = sorted(range(len(flat)), key=lambda f: (-flat[f], f))
        for s in range(n_steps + 1):
            k = int(round(s * len(flat) / n_steps))
            chosen = torch.zeros(len(flat), dtype=torch.bool)
            chosen[order[:k]] = True
            mask = torch.broadcast_to(chosen.view(attributions[i].shape), x[i].shape)
            base = torch.broadcast_to(baseline, x.shape)[i]
            if mode == "deletion":
                image = torch.where(mask, base, x[i])
            else:
                image = torch.where(mask, x[i], base)
            with torch.no_grad():
                out = model(image[None])[0]
            if output == "probability":
                out = out.softmax(0)
            scores[i, s] = float(out[targets[i]])
    return scores


def test_deletion_ranks_the_true_attribution_first_on_a_linear_model() -> None:
    """For f(x) = Wx + b the exact contribution of feature j to class t is w_tj·x_j (baseline 0).
    Removing features in that order lowers the logit fastest, so its deletion curve lies below
    the curve of any other order at every step, and its insertion curve above."""
    model = _linear()
    torch.manual_seed(1)
    x = torch.rand(16, 1, 6, 6)
    target = model(x).argmax(1)
    weights = model[1].weight[target].view(16, 1, 6, 6).detach()
    true = weights * x
    random = torch.rand(16, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    opts: dict[str, Any] = {"n_steps": 36, "output": "logit"}
    del_true = deletion_curve(model, x, true, target, **opts)
    del_random = deletion_curve(model, x, random, target, **opts)
    assert (del_true.scores <= del_random.scores + 1e-5).all()
    assert (del_true.auc < del_random.auc).all()
    ins_true = insertion_auc(model, x, true, target, **opts)
    ins_random = insertion_auc(model, x, random, target, **opts)
    assert (ins_true > ins_random).all()
    # The same ranking on probabilities, on average.
    assert deletion_auc(model, x, true).mean() < deletion_auc(model, x, random).mean()
    assert insertion_auc(model, x, true).mean() > insertion_auc(model, x, random).mean()
    # Both curves start/end at the model's score for the input and for the baseline.
    with torch.no_grad():
        full = model(x).gather(1, target[:, None])[:, 0]
        empty = model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(del_true.scores[:, 0], full)
    torch.testing.assert_close(del_true.scores[:, -1], empty)
    torch.testing.assert_close(del_true.fractions, torch.linspace(0, 1, 37))


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("shape", ["per_element", "per_pixel"])
def test_curves_equal_a_brute_force_loop(mode: str, shape: str) -> None:
    model = _cnn().eval()
    torch.manual_seed(3)
    x = torch.rand(5, 3, 5, 5)
    attr_shape = (5, 3, 5, 5) if shape == "per_element" else (5, 1, 5, 5)
    attributions = torch.randn(attr_shape)
    attributions[0, 0, 0, :3] = 0.5  # ties: broken by position
    targets = [0, 4, 2, 1, 3]
    baseline = torch.full((3, 5, 5), 0.25)
    n_steps = 7
    counting = Counting(model)
    curve_fn = deletion_curve if mode == "deletion" else insertion_curve
    curve = curve_fn(
        counting, x, attributions, targets, n_steps=n_steps, baseline=baseline, batch_size=6
    )
    expected = _brute_force(model, x, attributions, targets, n_steps, baseline, mode, "probability")
    np.testing.assert_allclose(curve.scores.numpy(), expected, rtol=1e-5, atol=1e-6)
    widths = np.diff(curve.fractions.numpy())
    trapezoids = ((expected[:, 1:] + expected[:, :-1]) / 2 * widths).sum(axis=1)
    np.testing.assert_allclose(curve.auc.numpy(), trapezoids, rtol=1e-5)
    # The model was queried on every perturbed input, 6 at a time (plus once for the targets).
    assert counting.rows == len(x) * (n_steps + 1) + len(x)
    assert counting.calls == -(-len(x) * (n_steps + 1) // 6) + 1


def test_curves_leave_the_model_as_it_was() -> None:
    model = _cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, attributions = torch.rand(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    rng = torch.get_rng_state()
    deletion_curve(model, x, attributions, n_steps=4)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_curve_argument_checks() -> None:
    model = _linear()
    x = torch.rand(2, 1, 6, 6)
    with pytest.raises(ValueError, match="attributions"):
        deletion_curve(model, x, torch.rand(2, 2, 6, 6))
    with pytest.raises(ValueError, match="mode|output"):
        deletion_curve(model, x, torch.rand(2, 1, 6, 6), output="softmax")
    with pytest.raises(ValueError, match="targets"):
        deletion_curve(model, x, torch.rand(2, 1, 6, 6), [0, 1, 2])
    with pytest.raises(ValueError, match="baseline"):
        deletion_curve(model, x, torch.rand(2, 1, 6, 6), baseline=torch.zeros(3, 6, 6))
    # An (N, H, W) map is read as (N, 1, H, W).
    a = torch.rand(2, 6, 6)
    torch.testing.assert_close(deletion_auc(model, x, a), deletion_auc(model, x, a[:, None]))


def test_completeness_gap_equals_captum_convergence_delta() -> None:
    model = _cnn().eval()
    x = torch.rand(4, 3, 5, 5)
    ig = foxcem.get_explainer("integrated_gradients")
    attributions, delta = ig.calculate_features(
        model, x, [0, 1, 2, 3], n_steps=16, return_convergence_delta=True
    )
    gap = completeness_gap(model, x, attributions, [0, 1, 2, 3])
    torch.testing.assert_close(gap, delta.float(), rtol=1e-4, atol=1e-5)
    # With a constant baseline, and shrinking with more steps.
    coarse = ig.calculate_features(model, x, None, n_steps=2, baselines=0.5)
    fine = ig.calculate_features(model, x, None, n_steps=64, baselines=0.5)
    gap_coarse = completeness_gap(model, x, coarse, baselines=0.5).abs()
    gap_fine = completeness_gap(model, x, fine, baselines=0.5).abs()
    assert gap_fine.mean() < gap_coarse.mean() and gap_fine.max() < 1e-3


def test_sparsity_measures() -> None:
    uniform = torch.ones(1, 1, 4, 4)
    one_hot = torch.zeros(1, 1, 4, 4)
    one_hot[0, 0, 2, 1] = -3.0
    zeros = torch.zeros(1, 1, 4, 4)
    values = torch.cat([uniform, one_hot, zeros])
    torch.testing.assert_close(gini_index(values), torch.tensor([0.0, 15 / 16, 0.0]))
    # Against the definition (Hurley & Rickard) on random data.
    data = torch.randn(3, 2, 5, 5)
    for row, value in zip(data.flatten(1).abs().numpy(), gini_index(data).numpy()):
        v = np.sort(row)
        n = len(v)
        k = np.arange(1, n + 1)
        expected = 1 - 2 * np.sum(v / v.sum() * (n - k + 0.5) / n)
        assert value == pytest.approx(expected, abs=1e-6)
    torch.testing.assert_close(near_zero_fraction(values), torch.tensor([0.0, 15 / 16, 1.0]))
    ramp = torch.arange(100.0).view(1, 100)
    assert near_zero_fraction(ramp, threshold=0.1).item() == pytest.approx(0.10)
    torch.testing.assert_close(sparsity(values), gini_index(values))
    torch.testing.assert_close(
        sparsity(values, "near_zero", threshold=0.5), near_zero_fraction(values, 0.5)
    )


def test_quantus_adapter_returns_the_explainers_output_as_numpy() -> None:
    model = _cnn().eval()
    x = np.random.default_rng(0).random((3, 3, 5, 5), dtype=np.float32)
    y = np.array([1, 0, 4])
    explain = quantus_explain_func("integrated_gradients", n_steps=8)
    out = explain(model=model, inputs=x, targets=y)
    direct = foxcem.get_explainer("integrated_gradients").calculate_features(
        model, torch.from_numpy(x), torch.from_numpy(y), n_steps=8
    )
    assert isinstance(out, np.ndarray) and out.shape == (3, 3, 5, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out, direct.numpy())
    # Torch inputs, float64 NumPy inputs, a device option, call-time options, saliency's shape,
    # and a convergence delta dropped.
    saliency = quantus_explain_func(foxcem.get_explainer("gradient"), device="cpu")
    maps = saliency(model, torch.from_numpy(x), list(y), aggregate="abs_max")
    assert maps.shape == (3, 1, 5, 5)
    same = saliency(model, x.astype(np.float64), y, aggregate="abs_max", device="cpu")
    np.testing.assert_array_equal(maps, same)
    with_delta = explain(model, x, y, return_convergence_delta=True)
    np.testing.assert_array_equal(with_delta, out)
    with pytest.raises(TypeError, match="n_step"):
        explain(model, x, y, n_step=3)
