"""Black-box CEM on large inputs: segment space beside pixel space, same budget of queries.

IBM's MNIST classifier (``../shared/ibm_mnist``) behind an 8× nearest-neighbour upsampling front
end: inputs are 1×224×224 and the front end averages 8×8 blocks back to 28×28, so the model is
one nobody here trained, at a size where pixel-space URV has d = 50,176. Both modes are run with
the URV estimator on the same test images and the same settings, once over a 28×28 grid of
segments (``segments="grid:28"``, d = 784) and once over pixels. Each row gives the success rate
(on the model's own predictions), how many were reported found, the model queries per image
(rows sent through the model) and forward calls, ‖δ‖₀ (entries above 0.01), ‖δ‖₁ and seconds
per image.

Usage::

    python benchmarks/cem_segments.py --output benchmarks/results/cem_segments_cpu.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ibm_mnist  # noqa: E402
from cem_quality import foxcem_run, measure  # noqa: E402
from common import device_name, report_header, write_report  # noqa: E402

#: Settings shared by both spaces (the segment test in ``tests/test_cem_quality.py``).
SETTINGS = {
    "PN": {"num_directions": 30, "num_iter": 100, "c_steps": 3, "eta": 0.5},
    "PP": {"num_directions": 20, "num_iter": 100, "c_steps": 2},
}


class CountingModel(nn.Module):
    """Counts the forward calls and rows that reach ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += len(x)
        return self.model(x)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="cem_segments_cpu.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = ibm_mnist.load_models()
    if models is None:
        print("../shared/ibm_mnist is not beside the checkout; nothing to run")
        return {}
    clf, _ = models
    large = nn.Sequential(nn.AvgPool2d(8), clf).eval()
    images, _ = ibm_mnist.load_images(0, args.images)
    x = nn.functional.interpolate(images, scale_factor=8)  # nearest: (N, 1, 224, 224)
    print(f"device: {device_name(torch.device('cpu'))} | torch {torch.__version__} | "
          f"threads {torch.get_num_threads()} | {len(x)} images 1×224×224")  # fmt: skip
    header = (f"{'mode':<4} {'space':<22} {'success':>7} {'found':>6} {'queries/img':>11} "
              f"{'calls':>6} {'‖δ‖₀':>8} {'‖δ‖₁':>8} {'s/image':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    rows = []
    for mode, options in SETTINGS.items():
        for space, segments in (("grid:28 (d = 784)", "grid:28"), ("pixels (d = 50,176)", None)):
            counting = CountingModel(large)
            found: list[torch.Tensor] = []
            run = foxcem_run(counting, x, mode, gradient="urv", segments=segments, **options)

            def explain(run: Any = run, found: list = found) -> tuple[torch.Tensor, torch.Tensor]:
                delta, ok = run()
                found.append(ok)
                return delta, ok

            result = measure(explain, large, x, mode)
            row = {"mode": mode, "space": space, "segments": segments, "options": options,
                   "found": float(found[0].float().mean()), "queries_per_image":
                   counting.rows / len(x), "model_calls": counting.calls, **result}  # fmt: skip
            rows.append(row)
            print(f"{mode:<4} {space:<22} {100 * row['success']:6.1f}% "
                  f"{100 * row['found']:5.1f}% {row['queries_per_image']:11.0f} "
                  f"{row['model_calls']:6d} {row['l0']:8.1f} {row['l1']:8.2f} "
                  f"{row['seconds_per_image']:8.2f}", flush=True)  # fmt: skip
    report = {
        **report_header("cem_segments", torch.device("cpu")),
        "rows": rows,
    }
    write_report(report, args.output)
    return report


if __name__ == "__main__":
    main()
