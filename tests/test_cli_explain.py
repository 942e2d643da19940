"""``foxcem explain``: a saved model explained from the command line, and its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.io import read_image, write_png

from foxcem import get_explainer
from foxcem.cli import main

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)

pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning"),
]


class SmallNet(nn.Module):
    """conv-relu-pool-linear, three classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class NotAClassifier(nn.Module):
    """Returns feature maps (N, 4, H, W), not class scores."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explain")
    torch.manual_seed(0)
    net = SmallNet().eval()
    torch.jit.save(torch.jit.script(net), str(root / "model.pt"))
    torch.jit.save(torch.jit.script(NotAClassifier().eval()), str(root / "features.pt"))
    generator = torch.Generator().manual_seed(1)
    for name in ("a.png", "b.png"):
        image = torch.randint(0, 256, (3, 10, 12), dtype=torch.uint8, generator=generator)
        write_png(image, str(root / name))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    np.save(root / "c.npy", torch.rand(3, 10, 12, generator=generator).numpy())
    torch.save(torch.rand(2, 3, 10, 12, generator=generator), root / "d.pt")
    (root / "notes.txt").write_text("not an input")
    return {
        "root": root,
        "model": root / "model.pt",
        "features": root / "features.pt",
        "a": root / "a.png",
        "b": root / "b.png",
        "broken": root / "broken.png",
        "npy": root / "c.npy",
        "pt": root / "d.pt",
        "txt": root / "notes.txt",
    }


def _normalised(paths: list[Path]) -> torch.Tensor:
    images = torch.stack([read_image(str(p)).float() / 255.0 for p in paths])
    return (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.mark.slow
def test_round_trip_subprocess_matches_library(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "foxcem", "explain", str(files["model"]), str(files["a"]),
        str(files["b"]), "--method", "integrated_gradients", "--n-steps", "16",
        "--option", "method=riemann_trapezoid", "--target", "2",
        "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)),
        "--output", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for stem in ("a", "b"):
        for kind in ("heatmap", "overlay"):
            png = read_image(str(out / f"{stem}_{kind}.png"))
            assert png.shape == (3, 130, 156)  # enlarged by an integer factor (13)
    saved = torch.load(out / "attributions.pt", weights_only=True)
    assert saved["files"] == [str(files["a"]), str(files["b"])]
    assert saved["method"] == "integrated_gradients"
    assert saved["targets"].tolist() == [2, 2]

    model = torch.jit.load(str(files["model"]))
    x = _normalised([files["a"], files["b"]])
    torch.testing.assert_close(saved["inputs"], x)
    expected = get_explainer("integrated_gradients").calculate_features(
        model, x, 2, n_steps=16, method="riemann_trapezoid"
    )
    assert saved["attributions"].shape == (2, 3, 10, 12)
    torch.testing.assert_close(saved["attributions"], expected)


def test_exported_program_tensors_and_preprocessing(files: dict[str, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SmallNet().eval()
    example = torch.rand(2, 3, 8, 8)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(tmp_path / "model.pt2"),
            str(files["npy"]),
            str(files["pt"]),
            "--method",
            "gradient",
            "--option",
            "aggregate='abs_max'",
            "--size",
            "8",
            "--output",
            str(out),
            "--sign",
            "all",
        ]  # fmt: skip
    )
    assert code == 0
    saved = torch.load(out / "attributions.pt", weights_only=True)
    assert saved["names"] == ["c.npy", "d.pt[0]", "d.pt[1]"]
    assert saved["attributions"].shape == (3, 1, 8, 8)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        f"{stem}_{kind}.png"
        for stem in ("c", "d_0", "d_1")
        for kind in ("heatmap", "overlay", "figure")
    )
    expected = get_explainer("gradient").calculate_features(
        net, saved["inputs"], aggregate="abs_max"
    )
    torch.testing.assert_close(saved["attributions"], expected)
    assert saved["targets"].tolist() == net(saved["inputs"]).argmax(dim=1).tolist()


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


BAD = {
    "missing model": (["{root}/nope.pt", "{a}"], "model file not found"),
    "missing image": (["{model}", "{root}/nope.png"], "input file not found"),
    "unreadable image": (["{model}", "{broken}"], "cannot read image"),
    "unsupported input": (["{model}", "{txt}"], "unsupported input"),
    "not a model": (["{a}", "{a}"], "cannot load model"),
    "not class scores": (["{features}", "{a}"], "(N, classes)"),
    "unknown method": (["{model}", "{a}", "--method", "magic"], "unknown explainer 'magic'"),
    "misspelt option": (["{model}", "{a}", "--option", "n_step=3"], "n_step"),
    "bad option syntax": (["{model}", "{a}", "--option", "n_steps"], "KEY=VALUE"),
    "bad option value": (["{model}", "{a}", "--n-steps", "0"], "--n-steps"),
    "wrong target": (["{model}", "{a}", "--target", "7"], "--target must be in [0, 2]"),
    "bad mean": (["{model}", "{a}", "--mean", "0.1,0.2"], "--mean"),
    "mixed sizes": (["{model}", "{a}", "{npy}", "--grayscale", "--size", "x"], "--size"),
    "unknown flag": (["{model}", "{a}", "--colour"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_invocations_exit_2_with_one_line(
    case: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, expected = BAD[case]
    args = ["explain"] + [a.format(**files) for a in argv] + ["--output", str(tmp_path)]
    assert main(args) == 2
    line = _error_line(capsys)
    assert line.startswith("foxcem explain: error: ")
    assert expected in line


@pytest.mark.slow
def test_bad_invocation_subprocess(files: dict[str, Path], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "foxcem", "explain", str(files["features"]), str(files["a"])]
    done = subprocess.run(
        cmd + ["--output", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "(N, classes)" in lines[0], done.stderr


def test_missing_explain_dataset_or_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "explain", "explain-dataset"):
        assert name in out
    assert main([]) == 2


def test_explain_dataset_without_lightning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The subcommand is listed; using it without Lightning names the extra to install."""
    monkeypatch.delitem(sys.modules, "foxcem.cli.explain_dataset", raising=False)
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    assert main(["explain-dataset", "model.pt", "data.pt"]) == 2
    line = _error_line(capsys)
    assert line.startswith("foxcem explain-dataset: error:")
    assert "needs lightning" in line and "pip install 'foxcem[lightning]'" in line


def test_tensor_suffixes_are_case_insensitive(files: dict[str, Path], tmp_path: Path) -> None:
    upper = tmp_path / "C.NPY"
    upper.write_bytes(files["npy"].read_bytes())
    outputs = {}
    for path in (files["npy"], upper):
        out = tmp_path / f"out-{path.name}"
        assert main(["explain", str(files["model"]), str(path), "--output", str(out)]) == 0
        outputs[path.name] = torch.load(out / "attributions.pt", weights_only=True)
    torch.testing.assert_close(
        outputs["C.NPY"]["attributions"], outputs["c.npy"]["attributions"], rtol=0, atol=0
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_model_black_box_pn_and_one_line_refusal_of_gradient_methods(
    digits_model: nn.Module, digits_split, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "digits.onnx"
    x = digits_split.x_test[:4]
    torch.onnx.export(
        digits_model, (x,), str(path), input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    inputs = tmp_path / "digits.npy"
    np.save(inputs, x.numpy())
    out = tmp_path / "out"
    code = main(["explain", str(path), str(inputs), "--method", "cem", "--output", str(out),
                 "--option", "num_iter=100", "--option", "c_steps=3",
                 "--option", "num_directions=30"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = torch.load(out / "attributions.pt", weights_only=True)
    options = __import__("json").loads(saved["options"])
    assert options["gradient"] == "urv"  # chosen for a forward-only model
    with torch.no_grad():
        flipped = digits_model(x + saved["attributions"]).argmax(1) != digits_model(x).argmax(1)
    assert flipped.float().mean() >= 0.75
    capsys.readouterr()
    code = main(["explain", str(path), str(inputs), "--method", "integrated_gradients",
                 "--output", str(tmp_path / "ig")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs gradients" in err[0] and "occlusion" in err[0]


def test_an_exported_program_with_a_fixed_batch_explains_any_batch(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    net = SmallNet().eval()
    program = torch.export.export(net, (torch.rand(1, 3, 10, 12),))  # batch fixed to 1
    path = tmp_path / "one.pt2"
    torch.export.save(program, str(path))
    out = tmp_path / "out"
    code = main(["explain", str(path), str(files["pt"]), str(files["npy"]), "--method",
                 "integrated_gradients", "--n-steps", "4", "--output", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = torch.load(out / "attributions.pt", weights_only=True)
    expected = get_explainer("integrated_gradients").calculate_features(
        net, saved["inputs"], n_steps=4
    )
    torch.testing.assert_close(saved["attributions"], expected, rtol=1e-4, atol=1e-5)


def test_methods_that_hook_modules_are_refused_before_the_model_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "never-read.pt"  # does not exist: the method is refused first
    for method in ("layer_gradcam", "guided_backprop", "deeplift", "lrp"):
        assert main(["explain", str(missing), str(missing), "--method", method]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "hooks the model's modules" in err[0] and "occlusion" in err[0]


def test_error_lines_carry_no_cpp_source_locations() -> None:
    from foxcem.io.files import first_line

    raw = RuntimeError(
        "Could not decode image [/src/torchvision/csrc/io/decode.cpp:42]\nlibpng ..."
    )
    assert first_line(raw) == "Could not decode image"
    raw = RuntimeError("boom (Triggered internally at /pytorch/aten/src/ATen/x.cpp:12.)")
    assert first_line(raw) == "boom"
