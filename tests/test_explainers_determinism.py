"""Seeded explanations repeat exactly, leave the global RNGs alone, and work in inference mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, NoiseTunnel, Saliency
from torch import nn

import foxcem
from foxcem.attribution import CaptumExplainer
from foxcem.core.registry import get_explainer_class

CAPTUM_EXPLAINERS = [
    name
    for name in foxcem.available_explainers()
    if issubclass(get_explainer_class(name), CaptumExplainer)
]


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 5 * 5, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


def setup(device: str = "cpu"):
    torch.manual_seed(0)
    model = SmallNet().to(device).eval()
    x = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(1)).to(device)
    return model, x


#: (registry name, options) of every explainer that draws random numbers.
RANDOM_CALLS = [
    ("integrated_gradients", {"baselines": "random", "n_steps": 8}),
    ("layer_integrated_gradients", {"baselines": "random", "n_steps": 8}),
    ("gradient_shap", {"baselines": "random", "stdevs": 0.2, "n_samples": 4}),
    ("layer_gradient_shap", {"baselines": "random", "stdevs": 0.2}),
    ("deeplift_shap", {"baselines": "random", "n_baselines": 3}),
    ("deeplift", {"baselines": "random"}),
    ("occlusion", {"baselines": "random", "sliding_window_shapes": (3, 2, 2)}),
    ("noise_tunnel", {"stdevs": 0.3, "n_steps": 4}),
]


@pytest.mark.parametrize(("name", "options"), RANDOM_CALLS)
def test_seeded_calls_repeat_and_seeds_matter(name, options):
    model, x = setup()
    explainer = foxcem.get_explainer(name)
    first = explainer.calculate_features(model, x, 2, seed=11, **options)
    torch.manual_seed(123)  # the global stream does not matter once seeded
    np.random.seed(123)
    second = explainer.calculate_features(model, x, 2, seed=11, **options)
    other = explainer.calculate_features(model, x, 2, seed=12, **options)
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize(("name", "options"), RANDOM_CALLS)
def test_explanations_do_not_advance_the_global_rngs(name, options, device):
    model, x = setup(device)
    torch.manual_seed(5)
    np.random.seed(5)
    expected_torch = torch.rand(4)
    expected_numpy = np.random.rand(4)
    torch.manual_seed(5)
    np.random.seed(5)
    if device == "cuda":
        cuda_state = torch.cuda.get_rng_state()
    for seed in (0, None):
        foxcem.get_explainer(name).calculate_features(model, x, 1, seed=seed, **options)
    assert torch.equal(torch.rand(4), expected_torch)
    assert np.array_equal(np.random.rand(4), expected_numpy)
    if device == "cuda":
        assert torch.equal(torch.cuda.get_rng_state(), cuda_state)


def test_seeded_gradient_shap_equals_captum_with_the_same_seed():
    # The seed seeds exactly the generators Captum draws from (NumPy's and torch's).
    model, x = setup()
    baselines = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    ours = foxcem.get_explainer("gradient_shap").calculate_features(
        model, x, 3, baselines=baselines, n_samples=6, stdevs=0.1, seed=7
    )
    np.random.seed(7)
    torch.manual_seed(7)
    reference = GradientShap(model).attribute(
        x.clone().requires_grad_(), baselines=baselines, n_samples=6, stdevs=0.1, target=3
    )
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_seeded_noise_tunnel_equals_captum_with_the_same_seed():
    model, x = setup()
    ours = foxcem.get_explainer("noise_tunnel", explainer="saliency").calculate_features(
        model, x, 4, nt_type="vargrad", nt_samples=5, stdevs=0.2, seed=3
    )
    torch.manual_seed(3)
    reference = NoiseTunnel(Saliency(model)).attribute(
        x.clone().requires_grad_(), nt_type="vargrad", nt_samples=5, stdevs=0.2, target=4
    )
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, options",
    [
        ("gradient_shap", {"baselines": torch.rand(4, 3, 5, 5), "stdevs": 0.2}),
        ("noise_tunnel", {"stdevs": 0.3, "nt_samples": 3}),
        (
            "cem",
            {
                "gradient": "urv",
                "num_iter": 5,
                "c_steps": 1,
                "num_directions": 5,
                "keep_best": False,
                "zero_tol": 0.0,
                "l1": 0.01,
            },
        ),  # fmt: skip
    ],
)
def test_seed_none_means_fresh_randomness_and_leaves_the_global_stream(name, options):
    """``seed=None``: every call draws anew (restoring the global RNG afterwards must not make
    calls repeat), and the caller's random streams are untouched."""
    model, x = setup()
    explainer = foxcem.get_explainer(name)
    torch.manual_seed(1)
    np.random.seed(1)
    state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = explainer.calculate_features(model, x, 0, seed=None, **options)
    b = explainer.calculate_features(model, x, 0, seed=None, **options)
    assert not torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)
    assert (np.random.get_state()[1] == np_state).all()


@pytest.mark.parametrize("name", CAPTUM_EXPLAINERS)
def test_works_under_inference_mode_and_returns_detached_tensors(name):
    model, x = setup()
    options = {"sliding_window_shapes": (3, 5, 5)} if name == "occlusion" else {}
    if name == "noise_tunnel":
        options = {"n_steps": 4}
    expected = foxcem.get_explainer(name).calculate_features(model, x, 1, **options)
    with torch.inference_mode():
        inference_x = x.clone()  # an inference tensor, as Lightning hands them over
        result = foxcem.get_explainer(name).calculate_features(model, inference_x, 1, **options)
    assert not result.requires_grad and result.grad_fn is None
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    with torch.no_grad():
        under_no_grad = foxcem.get_explainer(name).calculate_features(model, x, 1, **options)
    torch.testing.assert_close(under_no_grad, expected, rtol=0, atol=0)


def test_convergence_delta_is_returned_detached():
    model, x = setup()
    attributions, delta = foxcem.get_explainer("integrated_gradients").calculate_features(
        model, x, 0, n_steps=4, return_convergence_delta=True
    )
    assert attributions.shape == x.shape and delta.shape == (3,)
    assert not attributions.requires_grad and not delta.requires_grad
