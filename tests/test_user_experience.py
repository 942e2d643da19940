"""What a new user meets: progress on long work only, a CLI that guides, Captum's way of
calling, Grad-CAM where pytorch-grad-cam puts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

import foxcem
from foxcem import CEMExplainer, get_explainer
from foxcem.cli import main
from foxcem.demo.digits import DigitsSplit

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture(scope="module")
def scripted(digits_model: nn.Module, digits_split: DigitsSplit, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ux")
    torch.jit.save(torch.jit.script(digits_model), str(root / "digits.pt"))
    np.save(root / "digits.npy", digits_split.x_test[:3].numpy())
    return {"root": root, "model": root / "digits.pt", "inputs": root / "digits.npy"}


def _cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "foxcem", *argv], capture_output=True, text=True,
        timeout=timeout, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_progress_on_stderr_for_a_long_cli_run(scripted: dict, tmp_path: Path) -> None:
    done = _cli("explain", str(scripted["model"]), str(scripted["inputs"]), "--method", "cem",
                "--option", "num_iter=40", "--output", str(tmp_path / "cem"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    # stderr is not a terminal here: a few plain lines saying what runs, no redrawn bar
    lines = [line for line in done.stderr.splitlines() if line.startswith("CEM PN · autograd")]
    assert 1 <= len(lines) <= 4 and "\r" not in done.stderr, done.stderr
    assert lines[-1].endswith("s)") and "200/200 step (100%" in lines[-1]
    assert "found for" in done.stdout
    quiet = _cli("explain", str(scripted["model"]), str(scripted["inputs"]), "--method", "cem",
                 "--option", "num_iter=40", "--quiet", "--output", str(tmp_path / "q"))  # fmt: skip
    assert quiet.returncode == 0 and "CEM PN" not in quiet.stderr


def test_no_progress_for_a_short_api_call(
    digits_model: nn.Module, digits_split: DigitsSplit, capsys: pytest.CaptureFixture
) -> None:
    x = digits_split.x_test[:2]
    CEMExplainer().calculate_features(digits_model, x, num_iter=5, c_steps=1)
    get_explainer("occlusion").calculate_features(digits_model, x)
    assert capsys.readouterr().err == ""
    CEMExplainer().calculate_features(digits_model, x, num_iter=5, c_steps=1, progress=True)
    assert "CEM" in capsys.readouterr().err


def test_list_methods_and_per_method_help() -> None:
    listed = _cli("explain", "--list-methods")
    assert listed.returncode == 0
    for name in foxcem.available_explainers():
        assert name in listed.stdout
    assert "options: n_steps" not in listed.stdout or "integrated_gradients" in listed.stdout
    helped = _cli("explain", "--method", "occlusion", "--help")
    assert helped.returncode == 0
    assert (
        "options of occlusion" in helped.stdout and "perturbations_per_eval = None" in helped.stdout
    )


@pytest.mark.slow
def test_resize_center_crop_batch_size_and_negative_means(scripted: dict, tmp_path: Path) -> None:
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    torchvision.io.write_png(image, str(tmp_path / "wide.png"))
    model = tmp_path / "rgb.pt"
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(16, 3)).eval()  # fmt: skip
    torch.jit.save(torch.jit.script(net), str(model))
    done = _cli("explain", str(model), str(tmp_path / "wide.png"), str(tmp_path / "wide.png"),
                "--resize", "10", "--center-crop", "8", "--mean", "-0.1,0,0.1", "--std", "0.5",
                "--batch-size", "1", "--method", "saliency", "--output", str(tmp_path / "o"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = torch.load(tmp_path / "o" / "attributions.pt", weights_only=True)
    assert saved["inputs"].shape == (2, 3, 8, 8)  # 20×30 -> 10×15 -> 8×8
    expected = torch.nn.functional.interpolate(
        image[None].float() / 255, size=(10, 15), mode="bilinear", antialias=True
    )[..., 1:9, 3:11]
    torch.testing.assert_close(saved["inputs"][0, 0], (expected[0, 0] + 0.1) / 0.5)
    assert (tmp_path / "o" / "wide_figure.png").is_file()


@pytest.mark.slow
def test_explain_dataset_n_steps_and_an_error_without_banners(scripted: dict, tmp_path: Path):
    pytest.importorskip("lightning.pytorch")
    done = _cli("explain-dataset", str(scripted["model"]), str(scripted["inputs"]),
                "--n-steps", "3", "--quiet", "--accelerator", "cpu", "--devices", "1",
                "--output", str(tmp_path / "ds"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "n_steps" in (tmp_path / "ds" / "manifest.json").read_text()
    bad = _cli("explain-dataset", str(scripted["model"]), str(scripted["inputs"]),
               "--method", "integrated_gradients", "--option", "n_stpes=3", "--accelerator",
               "cpu", "--devices", "1", "--output", str(tmp_path / "bad"))  # fmt: skip
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode != 0 and "GPU available" not in bad.stderr
    assert any("n_stpes" in line and "n_steps" in line for line in lines), bad.stderr


def test_registry_aliases_and_captum_class_names() -> None:
    assert isinstance(get_explainer("ig"), foxcem.IntegratedGradientsCVExplainer)
    assert isinstance(get_explainer("gradcam"), foxcem.LayerGradCAMCVExplainer)
    assert isinstance(get_explainer("IntegratedGradients"), foxcem.IntegratedGradientsCVExplainer)
    assert isinstance(get_explainer("InputXGradient"), foxcem.InputXGradientCVExplainer)
    assert isinstance(get_explainer("LayerGradCam"), foxcem.LayerGradCAMCVExplainer)


def test_gradcam_default_layer_on_resnet18_is_the_last_block() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = get_explainer("layer_gradcam").calculate_features(model, x, 3)
    theirs = LayerGradCam(model, model.layer4[-1]).attribute(x, target=3, relu_attributions=True)
    theirs = LayerAttribution.interpolate(theirs, (64, 64), interpolate_mode="bilinear")
    torch.testing.assert_close(ours, theirs)


def test_the_demo_figure_marks_samples_without_explanation(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from foxcem.viz import plot_explanation_grid

    images = torch.rand(2, 1, 8, 8)
    fig = plot_explanation_grid(images, pn={"CEM PN": torch.zeros(2, 1, 8, 8)},
                                found={"CEM PN": [True, False]})  # fmt: skip
    titles = [ax.get_title() for ax in fig.axes]
    assert "CEM PN: no PN found" in titles and main is not None
