"""ExplanationCallback in a real Lightning fit: images in TensorBoard, PNGs, scalars, and a
training that ends bitwise where the same fit without the callback ends."""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from foxcem.attribution import IntegratedGradientsCVExplainer  # noqa: E402
from foxcem.demo.digits import DigitsSplit  # noqa: E402
from foxcem.integrations.lightning.callback import ExplanationCallback  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """``Trainer(deterministic=True)`` and ``seed_everything`` change process-wide settings
    (deterministic algorithms, cuDNN flags, environment variables, the global RNGs) and leave them
    so; put them back for the tests that run after these."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    names = ("CUBLAS_WORKSPACE_CONFIG", "PL_GLOBAL_SEED", "PL_SEED_WORKERS")
    env = {name: os.environ.get(name) for name in names}
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class DigitsModule(pl.LightningModule):
    """conv-BN-ReLU-dropout-linear on (N, 1, 8, 8) digits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Flatten(),
            nn.Linear(8 * 64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class RecordingIG(IntegratedGradientsCVExplainer):
    """Integrated Gradients that records the autograd mode it was called in."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[tuple[bool, bool]] = []  # (inference mode, grad enabled)

    def calculate_features(self, *args: Any, **kwargs: Any) -> Any:
        self.modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return super().calculate_features(*args, **kwargs)


def _fit(split: DigitsSplit, root: Path, callbacks: list) -> tuple[DigitsModule, Any, Any]:
    pl.seed_everything(0, verbose=False)
    module = DigitsModule()
    train = DataLoader(
        TensorDataset(split.x_train[:256], split.y_train[:256]), batch_size=32, shuffle=True
    )
    val = DataLoader(TensorDataset(split.x_test[:64], split.y_test[:64]), batch_size=16)
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=4,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        deterministic=True,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(str(root), name="tb"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train, val)
    return module, trainer, val


def test_callback_logs_images_and_leaves_training_unchanged(
    digits_split: DigitsSplit, tmp_path: Path
) -> None:
    ig = RecordingIG()
    cem_samples = digits_split.x_test[100:103]
    callbacks = [
        # IG by instance on the first 6 validation digits, explaining their labels.
        ExplanationCallback(ig, num_samples=6, explainer_kwargs={"n_steps": 8}, use_labels=True),
        # Gradient saliency by name, on given samples, every second epoch only.
        ExplanationCallback(
            "gradient",
            samples=digits_split.x_test[:4],
            every_n_epochs=2,
            explainer_kwargs={"aggregate": "abs_max"},
        ),
        # CEM pertinent negatives on given samples with fixed targets.
        ExplanationCallback(
            "cem",
            samples=cem_samples,
            targets=digits_split.y_test[100:103],
            explainer_kwargs={"mode": "PN", "num_iter": 20},
        ),
    ]
    with_cb, trainer, val = _fit(digits_split, tmp_path / "with", callbacks)
    without_cb, trainer_plain, _ = _fit(digits_split, tmp_path / "without", [])

    # Training: weights, BatchNorm statistics and optimizer state are bitwise identical.
    for (key, a), (_, b) in zip(with_cb.state_dict().items(), without_cb.state_dict().items()):
        assert torch.equal(a, b), key
    opt_a = trainer.optimizers[0].state_dict()["state"]
    opt_b = trainer_plain.optimizers[0].state_dict()["state"]
    for index in opt_a:
        for name in opt_a[index]:
            assert torch.equal(
                torch.as_tensor(opt_a[index][name]), torch.as_tensor(opt_b[index][name])
            )
    assert trainer.global_step == trainer_plain.global_step == 8

    # Validation inside fit runs under no_grad: the explainer still got its gradients.
    assert ig.modes == [(False, False), (False, False)]
    assert torch.equal(callbacks[0].samples, digits_split.x_test[:6])
    assert torch.equal(callbacks[0].targets, digits_split.y_test[:6])

    # TensorBoard holds the grids (one per explanation) and the heatmaps.
    log_dir = Path(trainer.log_dir)
    (event_file,) = log_dir.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    images = events.Tags()["images"]
    for tag in (
        "explanations/integrated_gradients",
        "explanations/integrated_gradients/heatmaps",
        "explanations/gradient",
        "explanations/cem",
    ):
        assert tag in images, tag
    assert [e.step for e in events.Images("explanations/integrated_gradients")] == [4, 8]
    assert [e.step for e in events.Images("explanations/gradient")] == [8]  # every 2nd epoch
    grid = events.Images("explanations/integrated_gradients")[0]
    assert (grid.width, grid.height) == (6 * 64 + 7 * 2, 3 * 64 + 4 * 2)  # 3 rows, enlarged 8x

    # Scalar summaries.
    scalars = events.Tags()["scalars"]
    for tag in (
        "explanations/integrated_gradients/mean_abs_attribution",
        "explanations/integrated_gradients/abs_convergence_delta",
        "explanations/gradient/mean_abs_attribution",
        "explanations/cem/success_rate",
    ):
        assert tag in scalars, tag
    success = events.Scalars("explanations/cem/success_rate")[-1].value
    last = callbacks[2].last
    assert last is not None
    model = with_cb.eval()
    with torch.no_grad():
        flipped = model(cem_samples + last["attributions"]).argmax(1) != last["targets"]
    assert success == pytest.approx(float(flipped.float().mean()))
    delta = events.Scalars("explanations/integrated_gradients/abs_convergence_delta")[-1].value
    assert 0 <= delta < 0.1

    # PNGs under the log directory.
    pngs = sorted(p.relative_to(log_dir).as_posix() for p in log_dir.rglob("*.png"))
    assert "explanations/integrated_gradients/epoch=0-step=4/grid.png" in pngs
    assert "explanations/integrated_gradients/epoch=1-step=8/overlay_005.png" in pngs
    assert "explanations/cem/epoch=1-step=8/grid.png" in pngs
    assert not any(p.startswith("explanations/gradient/epoch=0") for p in pngs)
    from torchvision.io import read_image

    png = read_image(str(log_dir / "explanations/integrated_gradients/epoch=0-step=4/grid.png"))
    assert png.shape == (3, grid.height, grid.width) and png.dtype == torch.uint8

    # A standalone validation runs under inference mode: explanations work there too.
    trainer.validate(with_cb, val, verbose=False)
    assert ig.modes[-1] == (True, False)
    assert callbacks[0].last is not None and callbacks[0].last["step"] == 8
    assert torch.isfinite(callbacks[0].last["attributions"]).all()


def _stub_trainer(rank_zero: bool, loggers: list) -> SimpleNamespace:
    return SimpleNamespace(
        is_global_zero=rank_zero,
        sanity_checking=False,
        current_epoch=0,
        global_step=3,
        loggers=loggers,
        log_dir=None,
        default_root_dir=".",
    )


def test_only_global_rank_zero_captures_and_explains(digits_split: DigitsSplit) -> None:
    calls = []

    class Counting(IntegratedGradientsCVExplainer):
        def calculate_features(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return super().calculate_features(*args, **kwargs)

    callback = ExplanationCallback(Counting(), num_samples=2, save_png=False, log_images=False)
    trainer = _stub_trainer(False, [])
    batch = (digits_split.x_test[:4], digits_split.y_test[:4])
    callback.on_validation_batch_end(trainer, None, None, batch, 0)  # type: ignore[arg-type]
    callback.on_validation_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert callback.samples is None and not calls


def test_loggers_without_images_are_skipped_with_one_warning(tmp_path: Path) -> None:
    received = []

    class ImageLogger:  # the `log_image(key, images, step)` API of e.g. Weights & Biases
        def log_image(self, key: str, images: list, step: int) -> None:
            received.append((key, images[0].shape, step))

    csv = CSVLogger(str(tmp_path))
    callback = ExplanationCallback("gradient")
    trainer = _stub_trainer(True, [csv, ImageLogger()])
    images = {
        "grid": torch.rand(3, 20, 30),
        "heatmaps": torch.rand(2, 3, 8, 8),
        "overlays": torch.rand(2, 3, 8, 8),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback._log_images(trainer, images, 3)  # type: ignore[arg-type]
        callback._log_images(trainer, images, 4)  # type: ignore[arg-type]
    messages = [str(w.message) for w in caught if "CSVLogger" in str(w.message)]
    assert len(messages) == 1 and "cannot log images" in messages[0]
    assert received == [
        ("explanations/gradient", (20, 30, 3), 3),
        ("explanations/gradient", (20, 30, 3), 4),
    ]


def test_callback_rejects_bad_arguments(digits_split: DigitsSplit) -> None:
    with pytest.raises(ValueError, match="unknown explainer"):
        ExplanationCallback("no_such_method")
    with pytest.raises(ValueError, match="every_n_epochs"):
        ExplanationCallback("gradient", every_n_epochs=0)
    with pytest.raises(ValueError, match="samples"):
        ExplanationCallback("gradient", targets=[1, 2])
    with pytest.raises(ValueError, match="sign"):
        ExplanationCallback("gradient", sign="both")
    with pytest.raises(ValueError, match="targets"):
        ExplanationCallback("gradient", samples=digits_split.x_test[:3], targets=[1, 2])


def test_importing_foxcem_does_not_import_lightning() -> None:
    code = (
        "import sys, foxcem, foxcem.dataset, foxcem.metrics\n"
        "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules, "
        "sorted(m for m in sys.modules if 'lightning' in m)\n"
        "assert callable(foxcem.explain_dataset) and 'lightning' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_callbacks_without_lightning_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "lightning" or m.startswith("lightning.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "lightning", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "foxcem.integrations.lightning.callback")
    with pytest.raises(ImportError, match=r"pip install 'foxcem\[lightning\]'"):
        importlib.import_module("foxcem.integrations.lightning.callback")
    monkeypatch.undo()
    assert (
        sys.modules["foxcem.integrations.lightning.callback"].ExplanationCallback
        is ExplanationCallback
    )


class _QuietValidation(DigitsModule):
    """Validation that reads nothing from its batch (its labels may have any shape)."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass


def _fit_with_validation_batches(
    split: DigitsSplit, root: Path, batches: list, callbacks: list
) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    train = DataLoader(TensorDataset(split.x_train[:64], split.y_train[:64]), batch_size=32)
    val = DataLoader(batches, batch_size=None)  # each item is one ready batch
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0, accelerator="cpu",
        devices=1, logger=False, callbacks=callbacks, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(_QuietValidation(), train, val)
    return trainer


@pytest.mark.parametrize("shape", ["(N,)", "(N, 1)", "one-hot"])
def test_callback_takes_the_label_shapes_users_have_and_skips_empty_batches(
    digits_split: DigitsSplit, tmp_path: Path, shape: str
) -> None:
    x, y = digits_split.x_test[:8], digits_split.y_test[:8]
    labels = {"(N,)": y, "(N, 1)": y[:, None], "one-hot": nn.functional.one_hot(y, 10).float()}
    batches = [(x[:0], labels[shape][:0]), (x, labels[shape])]  # an empty batch comes first
    callback = ExplanationCallback(
        "saliency", num_samples=4, use_labels=True, dirpath=tmp_path, log_images=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing to warn about
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
        _fit_with_validation_batches(digits_split, tmp_path, batches, [callback])
    assert callback.last is not None
    assert torch.equal(callback.last["targets"], y[:4])


def test_a_failing_explanation_warns_once_and_training_goes_on(
    digits_split: DigitsSplit, tmp_path: Path
) -> None:
    class Broken(IntegratedGradientsCVExplainer):
        def calculate_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            raise RuntimeError("the explainer broke")

    x, y = digits_split.x_test[:8], digits_split.y_test[:8]
    bad_labels = ExplanationCallback("saliency", num_samples=4, use_labels=True, dirpath=tmp_path)
    broken = ExplanationCallback(Broken(), num_samples=4, dirpath=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _fit_with_validation_batches(
            digits_split, tmp_path, [(x, y[:, None, None])] * 2, [bad_labels, broken]
        )
    assert trainer.current_epoch == 1 and trainer.state.finished  # fit ran to its end
    messages = [str(w.message) for w in caught if "ExplanationCallback" in str(w.message)]
    assert sum("cannot read a validation batch" in m for m in messages) == 1
    assert sum("the explainer broke" in m for m in messages) == 1
    assert "labels must be (N,), (N, 1) or one-hot" in " ".join(messages)
