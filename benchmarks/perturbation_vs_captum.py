"""Captum's perturbation methods through foxcem against raw Captum, on 3×224×224 inputs.

For ``feature_ablation`` and ``kernel_shap`` over a 16×16 grid of blocks (``segments="grid:16"``:
256 features per image, the same feature mask handed to Captum), one image, in one process with
the calls interleaved (medians of ``--reps``):

* ``captum ppe=1``: Captum's default, one perturbed copy per forward pass;
* ``captum ppe=k``: Captum with ``perturbations_per_eval`` k for each k of ``--ppe``; the best is
  the hand-picked setting a user would have to find;
* ``foxcem auto``: ``perturbations_per_eval="auto"`` (the default): cache-sized passes on the CPU
  (16 rows at this size), the whole run in one pass on a GPU.

Two forward-only models: a small CNN (two strided convolutions and a linear head: a cheap model,
where per-call overhead dominates) and torchvision's resnet18 (random weights: timing only), both
in eval mode under ``torch.no_grad`` as Captum runs them. The ratio columns are foxcem / best hand
setting (≤ 1.05 is the aim) and Captum ppe=1 / foxcem (the speed-up over Captum's default). Both
compute the same attributions (checked in the run: max abs difference printed).

Usage::

    python benchmarks/perturbation_vs_captum.py --output benchmarks/results/perturbation_cpu.json
    python benchmarks/perturbation_vs_captum.py --device cuda --output perturbation_cuda.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision
from captum.attr import FeatureAblation, KernelShap
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import report_header, synchronize, write_report  # noqa: E402

import foxcem  # noqa: E402
from foxcem.core.segments import resolve_labels  # noqa: E402


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 8, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 10),
    )  # fmt: skip


def interleaved(calls: dict[str, Callable[[], Any]], reps: int, device: torch.device) -> dict:
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():  # warm-up
        call()
    for _ in range(reps):
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="small,resnet18")
    parser.add_argument("--ppe", default="4,16,64", help="hand-picked perturbations_per_eval")
    parser.add_argument("--n-samples", type=int, default=256, help="kernel_shap's samples")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", default="perturbation_cpu.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    device = torch.device(args.device)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    mask = resolve_labels("grid:16", x, 1)[:, None]  # (1, 1, 224, 224): 256 blocks
    report = report_header("perturbation_vs_captum", device)
    report["rows"] = []
    hand = [int(k) for k in args.ppe.split(",")]
    print(f"{'model':9} {'method':17} {'ppe=1 s':>8} {'best hand s':>12} {'foxcem s':>9} "
          f"{'fox/best':>9} {'ppe1/fox':>9} {'max |diff|':>11}")  # fmt: skip
    for model_name in args.models.split(","):
        torch.manual_seed(0)
        model = small_cnn() if model_name == "small" else torchvision.models.resnet18()
        model = model.to(device).eval()
        for param in model.parameters():
            param.requires_grad_(False)
        target = int(model(x).argmax())
        for method in ("feature_ablation", "kernel_shap"):

            def captum(
                ppe: int, method: str = method, model: nn.Module = model, target: int = target
            ) -> torch.Tensor:
                with torch.no_grad():
                    if method == "feature_ablation":
                        return FeatureAblation(model).attribute(
                            x, target=target, feature_mask=mask, perturbations_per_eval=ppe
                        )
                    torch.manual_seed(0)
                    return KernelShap(model).attribute(
                        x, target=target, feature_mask=mask, n_samples=args.n_samples,
                        perturbations_per_eval=ppe,
                    )  # fmt: skip

            def ours(
                method: str = method, model: nn.Module = model, target: int = target
            ) -> torch.Tensor:
                extra = {"n_samples": args.n_samples, "seed": 0} if method == "kernel_shap" else {}
                return foxcem.get_explainer(method).calculate_features(
                    model, x, target, segments="grid:16", **extra
                )

            calls = {"ppe=1": lambda: captum(1)}
            calls.update({f"ppe={k}": (lambda k=k: captum(k)) for k in hand})
            calls["foxcem"] = ours
            seconds = interleaved(calls, args.reps, device)
            hand_times = {k: v for k, v in seconds.items() if k.startswith("ppe=")}
            best_name = min(hand_times, key=hand_times.get)
            diff = float((ours() - captum(1)).abs().max())
            row = {
                "model": model_name, "method": method, "seconds": seconds,
                "best_hand": best_name, "foxcem_over_best": seconds["foxcem"] / hand_times[best_name],
                "ppe1_over_foxcem": seconds["ppe=1"] / seconds["foxcem"], "max_abs_diff": diff,
            }  # fmt: skip
            report["rows"].append(row)
            print(f"{model_name:9} {method:17} {seconds['ppe=1']:8.2f} "
                  f"{hand_times[best_name]:8.2f} ({best_name.split('=')[1]:>3}) "
                  f"{seconds['foxcem']:9.2f} {row['foxcem_over_best']:9.2f} "
                  f"{row['ppe1_over_foxcem']:9.2f} {diff:11.2e}")  # fmt: skip
    write_report(report, args.output)


if __name__ == "__main__":
    main()
