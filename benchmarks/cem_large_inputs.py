"""CEM's defaults at 224×224: time and success for a batch of 4 images, white box and black box.

Two models, neither trained here nor tuned for:

* IBM's MNIST classifier (``../shared/ibm_mnist``, skipped when absent) upsampled to 224×224:
  the model averages 8×8 blocks back to 28×28; four MNIST test images upsampled (nearest) to
  224×224 — a real model on real data at ImageNet size, and cheap enough to run every setting;
* torchvision's ResNet-18 (10 classes) trained here for one epoch on 1,500 scikit-learn digits
  upsampled to 3×224×224 (no weights can be downloaded; random weights give logits too flat for
  a margin of κ = 5), explaining four held-out digits — an ImageNet-sized network, whose
  forward passes set the cost.

Each row is one ``CEMExplainer.calculate_features`` call with the defaults (those sized for
large images, :func:`foxcem.cem.defaults.size_defaults`) and no other setting. It reports the
seconds, the model's forward passes, the share of images whose explanation holds with margin κ
(``found``), the mean pixels of δ above 0.01, and what the 28×28 defaults (200 × 5 steps, 100
directions, no segments) would take, extrapolated from the measured seconds per model call.

Usage::

    python benchmarks/cem_large_inputs.py --output benchmarks/results/cem_large_inputs_cpu.json
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ibm_mnist  # noqa: E402
from common import report_header, write_report  # noqa: E402

from foxcem import CEMExplainer  # noqa: E402
from foxcem.cem.defaults import MODE_DEFAULTS  # noqa: E402


class Upsampled(nn.Module):
    """A 28×28 classifier taking 224×224 images: 8×8 blocks averaged first."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(F.avg_pool2d(x, 8))


class Counted(nn.Module):
    """Counts the images the wrapped model sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.model(x)


def digits_224(images: torch.Tensor) -> torch.Tensor:
    return F.interpolate(images, 224, mode="bilinear").repeat(1, 3, 1, 1)


def train_resnet18() -> tuple[nn.Module, torch.Tensor]:
    """ResNet-18 after one epoch on 1,500 upsampled digits; four held-out digits."""
    from sklearn.datasets import load_digits
    from torchvision.models import resnet18

    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(data.target)
    model = resnet18(num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    order = torch.randperm(1500)
    for start in range(0, 1500, 50):
        batch = order[start : start + 50]
        loss = F.cross_entropy(model(digits_224(x[batch])), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # BatchNorm statistics of the trained weights (the running ones trail the training).
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for start in range(0, 1500, 100):
            model(digits_224(x[order[start : start + 100]]))
    model.eval()
    with torch.no_grad():
        held_out = digits_224(x[1500:1700])
        accuracy = float((model(held_out).argmax(1) == y[1500:1700]).float().mean())
    print(f"ResNet-18 trained: held-out accuracy {accuracy:.0%}")
    return model, held_out[:4]


def models() -> list[tuple[str, nn.Module, torch.Tensor]]:
    found = []
    loaded = ibm_mnist.load_models()
    if loaded is None:
        print("IBM's model: ../shared/ibm_mnist is not beside the checkout; skipped")
    else:
        images, _ = ibm_mnist.load_images(0, 4)
        found.append(("IBM MNIST ×8", Upsampled(loaded[0]).eval(), F.interpolate(images, 224)))
    resnet, digits = train_resnet18()
    found.append(("ResNet-18 (digits)", resnet, digits))
    return found


def old_default_calls(gradient: str, images: int) -> int:
    """Images the model would see under the 28×28 defaults (upper bound: no early end)."""
    steps = MODE_DEFAULTS["PN"]["num_iter"] * MODE_DEFAULTS["PN"]["c_steps"]
    return int(steps * images * (101 if gradient == "urv" else 1))


def run(name: str, model: nn.Module, x: torch.Tensor, mode: str, gradient: str) -> dict[str, Any]:
    counted = Counted(model)
    explainer = CEMExplainer()
    start = time.perf_counter()
    delta = explainer.calculate_features(counted, x, mode=mode, gradient=gradient)
    seconds = time.perf_counter() - start
    meta = explainer.meta_data
    per_image = seconds / max(counted.images, 1)
    return {
        "model": name,
        "mode": mode,
        "gradient": gradient,
        "size_defaults": {k: str(v) for k, v in meta["size_defaults"].items()},
        "seconds": round(seconds, 1),
        "model_images": counted.images,
        "found": float(meta["found"].float().mean()),
        "pixels": float((delta.abs() > 0.01).flatten(1).sum(1).float().mean()),
        "old_defaults_seconds_estimate": round(per_image * old_default_calls(gradient, len(x))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="cem_large_inputs_cpu.json")
    parser.add_argument("--skip-resnet-urv", action="store_true", help="the slowest row")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    report = report_header("cem_large_inputs", torch.device("cpu"))
    rows = []
    print(
        f"{'model':28} {'mode':4} {'gradient':8} {'s':>7} {'images':>7} {'found':>6} "
        f"{'pixels':>7} {'old defaults (est.)':>20}"
    )
    for name, model, x in models():
        settings = [("PN", "autograd"), ("PP", "autograd"), ("PN", "urv")]
        if name.startswith("IBM"):
            settings.append(("PP", "urv"))
        for mode, gradient in settings:
            if args.skip_resnet_urv and gradient == "urv" and name.startswith("ResNet"):
                continue
            row = run(name, model, x, mode, gradient)
            rows.append(row)
            print(
                f"{name:28} {mode:4} {gradient:8} {row['seconds']:7.1f} "
                f"{row['model_images']:7d} {row['found']:6.0%} {row['pixels']:7.0f} "
                f"{row['old_defaults_seconds_estimate'] / 60:17.0f} min",
                flush=True,
            )
    report["rows"] = rows
    write_report(report, args.output)


if __name__ == "__main__":
    main()
