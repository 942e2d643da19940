"""CEM's defaults for large images (:func:`foxcem.cem.defaults.size_defaults`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foxcem import CEMExplainer
from foxcem.cem.defaults import LARGE_DEFAULTS, REFERENCE_PIXELS, mode_defaults, size_defaults


def test_small_images_tables_and_sequences_keep_the_mode_defaults() -> None:
    assert size_defaults((1, 28, 28), "autograd", "PN") == {}
    assert size_defaults((1, 64, 64), "urv", "PN") == {}
    assert size_defaults((30,), "urv", "PN") == {}
    assert size_defaults((3, 500), "autograd", "PP") == {}


def test_large_images_get_sized_steps_and_per_area_regularisers() -> None:
    white = size_defaults((3, 224, 224), "autograd", "PN", gamma=100.0)
    scale = REFERENCE_PIXELS / 224**2
    assert white["num_iter"] == LARGE_DEFAULTS["autograd"]["num_iter"]
    assert white["l1"] == pytest.approx(mode_defaults("PN", 100.0)["l1"] * scale)
    assert white["l2"] == pytest.approx(mode_defaults("PN")["l2"] * scale)
    black = size_defaults((224, 224, 3), "urv", "PP", channels_first=False)
    assert black["segments"] == "grid:14" and black["num_directions"] == 20
    assert "l1" not in black  # δ lives on segments: 196 values, no rescaling
    given = size_defaults((3, 224, 224), "autograd", "PN", given={"num_iter": 7, "l1": 1.0})
    assert "num_iter" not in given and "l1" not in given and "l2" in given
    assert "l1" not in size_defaults((3, 224, 224), "autograd", "PN", given={"segments": "grid:8"})


class Upsampled(nn.Module):
    """A linear 4-class model of 8×8 block means: 224×224 inputs, cheap to run."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(28 * 28, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * self.fc(F.avg_pool2d(x, 8).flatten(1))


def test_cem_on_a_large_image_uses_and_reports_the_sized_defaults() -> None:
    model = Upsampled().eval()
    x = torch.rand(2, 1, 224, 224, generator=torch.Generator().manual_seed(1))
    explainer = CEMExplainer()
    pn = explainer.calculate_features(model, x, mode="PN")
    meta = explainer.meta_data
    assert meta["size_defaults"]["num_iter"] == 100 and "l1" in meta["size_defaults"]
    assert meta["num_iter"] <= 100 * 3
    assert bool(meta["found"].all())
    with torch.no_grad():
        assert bool((model(x + pn).argmax(1) != model(x).argmax(1)).all())
    explainer.calculate_features(model, x, mode="PN", num_iter=5, c_steps=1, l1=1.0)
    assert "num_iter" not in explainer.meta_data["size_defaults"]
    assert "l1" not in explainer.meta_data["size_defaults"]
