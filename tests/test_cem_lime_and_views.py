"""The LIME loss and gradient against a brute-force weighted least-squares fit; the regulariser
search; the save-every callback; the denoised and contour views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from foxcem import CEMExplainer
from foxcem.cem import ExplanationGenerator, LimeGradient, LimeLoss, SuperpixelLimeLoss
from foxcem.cem.regularisers import SaveEvery, search_regularisers
from foxcem.viz import denoise, plot_contour


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()


def test_lime_gradient_is_the_weighted_least_squares_fit() -> None:
    model, x = linear_model(), torch.rand(2, 1, 4, 4)
    loss = SuperpixelLimeLoss(model, x, target=1, segments="grid:2")
    gradient = LimeGradient(loss, num_samples=40, kernel_width=0.5, seed=3)
    delta = 0.1 * torch.rand_like(x)
    grad = gradient(delta)
    z, values, weights = gradient.last_masks, gradient.last_values, gradient.last_weights
    for i in range(2):
        # Independent: NumPy's least squares on the same data, in float64.
        design = np.concatenate([np.ones((40, 1)), z[i].numpy()], 1)
        root = np.sqrt(weights[i].numpy())[:, None]
        beta = np.linalg.lstsq(root * design, root[:, 0] * values[i].numpy(), rcond=None)[0]
        labels = loss.labels[i]
        expected = torch.tensor(beta[1:], dtype=torch.float32)[labels]
        torch.testing.assert_close(grad[i, 0], expected, rtol=1e-4, atol=1e-5)
        # The values are the model's score with the switched-off segments at 0.
        mask = z[i, 5][labels].float()
        with torch.no_grad():
            direct = model(((x[i] + delta[i]) * mask).unsqueeze(0))[0, 1]
        torch.testing.assert_close(values[i, 5], direct)
    # Distances: cosine distance of each mask to the all-on one, as LIME's kernel uses.
    on = z.sum(2)
    torch.testing.assert_close(weights, torch.exp(-((1 - torch.sqrt(on / 4)) ** 2) / 0.25))


def test_lime_loss_and_gradient_run_in_the_generator_and_with_urv() -> None:
    model, x = linear_model(), torch.rand(2, 1, 4, 4)
    generator = ExplanationGenerator(
        loss=LimeLoss, gradient=LimeGradient, loss_kwargs={"target": 0},
        gradient_kwargs={"num_samples": 30}, optimizer=torch.optim.SGD,
        optimizer_kwargs={"lr": 0.01}, num_iter=5,
    )  # fmt: skip
    savepoints, meta = generator.run(image=x, inference_call=model)
    assert next(reversed(savepoints.values())).shape == x.shape
    assert meta["model_calls"] >= 5
    with pytest.raises(TypeError, match="LimeLoss"):
        LimeGradient(lambda d: d.sum(1))


def test_search_regularisers_keeps_the_sparsest_found_per_sample() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(3, 1, 4, 4)
    explainer = CEMExplainer()
    options = {"mode": "PN", "num_iter": 30, "c_steps": 2, "K": 0.5}
    delta, info = search_regularisers(explainer, model, x, l1=[0.1, 5.0], **options)
    runs = [explainer.calculate_features(model, x, l1=a, l2=0.5, **options) for a in (0.1, 5.0)]
    for i in range(3):
        if not bool(info["found"][i]):
            continue
        l0 = [int((r[i].abs() > 0.01).sum()) for r in runs]
        assert int(info["l0"][i]) == min(l0)
        assert int((delta[i].abs() > 0.01).sum()) == min(l0)
    with pytest.raises(ValueError, match="at least one"):
        search_regularisers(explainer, model, x, l1=[], **options)


def test_save_every_writes_the_explanation(tmp_path) -> None:
    model, x = linear_model(), torch.rand(2, 1, 4, 4)
    saver = SaveEvery(tmp_path / "deltas", every=10)
    CEMExplainer().calculate_features(
        model, x, mode="PN", num_iter=30, c_steps=1, callback=saver, pn_start="zeros"
    )
    assert [p.name for p in saver.saved] == ["delta_10.pt", "delta_20.pt", "delta_30.pt"]
    assert torch.load(saver.saved[0]).shape == x.shape


def test_denoise_and_contour() -> None:
    delta = torch.zeros(1, 1, 6, 6)
    delta[0, 0, 1:3, 1:3] = 1.0  # a blob
    delta[0, 0, 5, 5] = 0.9  # an isolated speck
    delta[0, 0, 4, 0] = 0.01  # faint
    clean = denoise(delta, fraction=0.1, min_neighbours=1)
    assert clean[0, 0, 5, 5] == 0 and clean[0, 0, 4, 0] == 0
    torch.testing.assert_close(clean[0, 0, 1:3, 1:3], delta[0, 0, 1:3, 1:3])
    fig = plot_contour(torch.rand(1, 6, 6), delta, title="PN")
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "PN"
    with pytest.raises(ValueError, match="differ"):
        plot_contour(torch.rand(1, 5, 5), delta)
