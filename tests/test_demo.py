"""``foxcem demo``: end to end on the real digits (tiny settings), the model's accuracy, the cache."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.io import read_image

from foxcem.cli import main
from foxcem.demo.digits import DigitsCNN, accuracy, load_digits_split
from foxcem.demo.run import (
    DEFAULT_METHODS,
    DemoConfig,
    default_cache_dir,
    format_table,
    parse_methods,
    run_demo,
    select_images,
)

NUM_ITER = 12
NUM_IMAGES = 2

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the command, default seed and training, tiny explanation settings."""
    root = tmp_path_factory.mktemp("demo")
    argv = [
        "demo", "--num-images", str(NUM_IMAGES), "--num-iter", str(NUM_ITER),
        "--output", str(root / "out"), "--cache-dir", str(root / "cache"), "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    return {"root": root, "out": root / "out", "cache": root / "cache"}


def test_demo_writes_every_file(demo_run: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    out = demo_run["out"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == set(DEFAULT_METHODS)
    assert summary["files"] == ["explanations.png", "cem_savepoints.png", "summary.json"]
    assert summary["num_images"] == NUM_IMAGES and summary["num_iter"] == NUM_ITER
    for key, stats in summary["methods"].items():
        assert stats["seconds"] >= 0
        if key.startswith("cem"):
            assert 0.0 <= stats["success_rate"] <= 1.0
            assert stats["mean_l1"] >= 0 and 0 <= stats["mean_l0"] <= 64
            assert stats["options"]["num_iter"] == NUM_ITER
        if key in ("ig", "layer_ig"):
            assert stats["mean_abs_convergence_delta"] >= 0
    assert summary["methods"]["cem_pn_urv"]["options"]["gradient"] == "urv"
    assert summary["methods"]["cem_pp"]["mode"] == "PP"

    # 7 columns (input, 3 heatmaps, PP, 2 PNs) x 2 rows of 1.7-inch panels at 80 dpi
    grid = read_image(str(out / "explanations.png"))
    assert grid.shape[1:] == (round((1.7 * 2 + 0.4) * 80), round(1.7 * 7 * 80))
    # savepoints "1", every num_iter // 4 = 3 iterations, and the last, plus input+PN
    strip = read_image(str(out / "cem_savepoints.png"))
    assert strip.shape[1:] == (round((1.8 + 0.6) * 80), round(1.8 * 6 * 80))
    assert grid.float().std() > 10 and strip.float().std() > 10  # not blank

    table = format_table(summary)
    for label in ("IG", "Layer IG", "Saliency", "CEM PP", "CEM PN", "CEM PN (URV)"):
        assert label in table


def test_demo_model_accuracy_and_cache(demo_run: dict[str, Any]) -> None:
    """The demo's own training (default seed) reaches >= 95% on the held-out real digits."""
    summary = json.loads((demo_run["out"] / "summary.json").read_text())
    assert summary["seed"] == 0 and summary["model"]["cached"] is False
    assert summary["model"]["test_accuracy"] >= 0.95
    weights = Path(summary["model"]["weights"])
    assert weights.parent == demo_run["cache"] and weights.is_file()
    # recompute independently from the cached weights
    model = DigitsCNN()
    model.load_state_dict(torch.load(weights, weights_only=True)["state_dict"])
    split = load_digits_split(seed=0)
    assert accuracy(model.eval(), split.x_test, split.y_test) == pytest.approx(
        summary["model"]["test_accuracy"]
    )
    assert len(split.y_test) == 359

    # a second run loads the weights instead of training
    again = run_demo(
        DemoConfig(
            methods=["saliency"],
            num_images=1,
            output=demo_run["root"] / "again",
            cache_dir=demo_run["cache"],
            progress=False,
        )
    )
    assert again["model"]["cached"] is True
    assert again["model"]["test_accuracy"] == summary["model"]["test_accuracy"]
    assert list(again["methods"]) == ["saliency"]
    assert "cem_savepoints.png" not in again["files"]


def test_default_cache_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "foxcem"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "foxcem"


def test_method_selection_and_images() -> None:
    assert parse_methods("ig, integrated_gradients,pn") == ["ig", "cem_pn"]
    assert parse_methods("all") == list(DEFAULT_METHODS)
    with pytest.raises(ValueError, match="unknown demo method 'magic'"):
        parse_methods("ig,magic")
    labels = torch.tensor([3, 1, 1, 0, 3, 2])
    assert select_images(labels, 5) == [3, 1, 5, 0, 2]  # first of each class, then repeat
    assert select_images(labels, 10) == [3, 1, 5, 0, 2, 4]  # no more than there are


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--methods", "ig,magic"], "unknown demo method 'magic'"),
        (["--num-images", "0"], "--num-images"),
        (["--num-iter", "-3"], "--num-iter"),
    ],
)
def test_demo_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foxcem demo: error:") and message in err[0]


@pytest.mark.slow
def test_demo_cem_defaults_succeed(demo_run: dict[str, Any]) -> None:
    """With the demo's default CEM settings, PN flips and PP keeps the class of real digits, and
    the savepoint strip shows a round that found its PN (no warning on the demo's own figure)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_demo(
            DemoConfig(
                methods=["cem_pp", "cem_pn", "cem_pn_urv"],
                num_images=3,
                output=demo_run["root"] / "cem",
                cache_dir=demo_run["cache"],
                progress=False,
            )
        )
    assert not [w for w in caught if "savepoint" in str(w.message)]
    assert summary["savepoints"]["found"] and summary["savepoints"]["success"]
    assert summary["model"]["cached"] is True
    for key in ("cem_pp", "cem_pn", "cem_pn_urv"):
        assert summary["methods"][key]["success_rate"] >= 2 / 3, key
    # a PP keeps part of the input, a PN is a genuine perturbation
    assert 0 < summary["methods"]["cem_pp"]["mean_l1"] < 10
    assert summary["methods"]["cem_pn"]["mean_l1"] > 0


def test_demo_trains_an_autoencoder_and_its_cem_runs_use_it(demo_run: dict[str, Any]) -> None:
    summary = json.loads((demo_run["out"] / "summary.json").read_text())
    ae = summary["model"]["autoencoder"]
    assert Path(ae["weights"]).is_file() and ae["weights"] != summary["model"]["weights"]
    for key in ("cem_pp", "cem_pn", "cem_pn_urv"):
        stats = summary["methods"][key]
        assert stats["autoencoder"] is True and stats["options"]["gamma"] == 100.0
    # the autoencoder reconstructs held-out digits better than a blank guess does
    from foxcem.demo.digits import DigitsAutoencoder

    split = load_digits_split(seed=0)
    model = DigitsAutoencoder()
    model.load_state_dict(torch.load(ae["weights"], weights_only=True)["state_dict"])
    with torch.no_grad():
        error = (model.eval()(split.x_test) - split.x_test).pow(2).mean()
    assert error < 0.2 * split.x_test.pow(2).mean()


def test_lower_case_mode_in_extra_options_is_scored_as_that_mode(
    digits_model: torch.nn.Module, digits_split: Any
) -> None:
    from foxcem.demo.run import _run_cem

    x = digits_split.x_test[:4]
    targets = digits_model(x).argmax(dim=1)
    config = DemoConfig(num_iter=20, progress=False, extra={"cem_pn": {"mode": "pp"}})
    delta, stats = _run_cem("cem_pn", digits_model, x, targets, config)
    from foxcem.cem.explainer import MODE_DEFAULTS

    assert stats["mode"] == "PP" and stats["defaults"] == MODE_DEFAULTS["PP"]
    predicted = digits_model(delta).argmax(dim=1)  # a PP is scored on δ alone, not on x + δ
    assert stats["predictions"] == predicted.tolist()
    assert stats["successes"] == int((predicted == targets).sum())
