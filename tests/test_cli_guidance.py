"""What the command line says to a newcomer, each checked in a subprocess as a user meets it:
a misspelt method, the methods under their short names, a grey image for an RGB model, and the
recommended way to save a model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "foxcem", *argv], capture_output=True, text=True, timeout=300,
        env=env,
    )  # fmt: skip


class RGBNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("guidance")
    torch.manual_seed(0)
    model = RGBNet().eval()
    program = torch.export.export(model, (torch.rand(2, 3, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("n")},))  # fmt: skip
    torch.export.save(program, str(root / "rgb.pt2"))
    np.save(root / "grey.npy", np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32))
    return {"model": root / "rgb.pt2", "grey": root / "grey.npy", "root": root}


def test_a_misspelt_method_gets_a_suggestion(files: dict[str, Path]) -> None:
    done = _cli("explain", str(files["model"]), str(files["grey"]), "--rgb",
                "--method", "integrated_gradient")  # fmt: skip
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1
    assert "did you mean 'integrated_gradients'?" in err[0]


def test_list_methods_names_the_short_names() -> None:
    done = _cli("explain", "--list-methods")
    assert done.returncode == 0
    line = next(row for row in done.stdout.splitlines() if row.startswith("layer_gradcam"))
    assert "gradcam" in line.split("(also:", 1)[1]
    assert any(
        row.startswith("integrated_gradients (also: ig)") for row in done.stdout.splitlines()
    )


def test_a_grey_image_for_an_rgb_model_says_what_to_do(files: dict[str, Path]) -> None:
    out = files["root"] / "out"
    done = _cli("explain", str(files["model"]), str(files["grey"]), "--output", str(out))
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert "the model expects 3 channels; the images have 1 (use --rgb)" in err[0]
    done = _cli("explain", str(files["model"]), str(files["grey"]), "--rgb", "--output", str(out),
                "--method", "saliency")  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = torch.load(out / "attributions.pt", weights_only=True)
    assert saved["inputs"].shape == (2, 3, 8, 8)
    assert torch.equal(saved["inputs"][:, 0], saved["inputs"][:, 2])


def test_help_recommends_torch_export_and_onnx_first() -> None:
    done = _cli("explain", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    first = min(text.find("exported program"), text.find("ONNX"))
    assert 0 <= first < text.find("TorchScript")
    assert "--rgb" in text and "deprecated" in text


def test_forward_only_models_are_offered_the_perturbation_methods() -> None:
    from foxcem.cli.explain import forward_only

    offered = forward_only()
    for name in ("cem", "occlusion", "feature_ablation", "kernel_shap", "lime",
                 "shapley_value_sampling", "feature_permutation"):  # fmt: skip
        assert name in offered, name
    assert "integrated_gradients" not in offered and "saliency" not in offered
