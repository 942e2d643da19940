"""Whole-CEM throughput beside its arithmetic floor and a one-image-at-a-time baseline, plus the
overhead of foxcem's Integrated Gradients over raw Captum and ``internal_batch_size="auto"`` against
every hand-picked size.

For two models — the demo's digits CNN (1×8×8, trained with seed 0) and the CEM paper's MNIST CNN
(1×28×28, random weights) — both modes (PN, PP) and both gradients (autograd, URV with q = 100),
``CEMExplainer`` runs ``--iters`` optimizer steps on N images (one round of the c search) and the
time per step gives images per second for a default run (1,000 steps: 5 rounds × 200). The floor
is the forward FLOPs one step needs (autograd: forward and backward, about 3 forwards; URV: q + 1
forwards per image) at the fp32 matmul rate measured in the same run. The baseline runs the same
steps one image per call, as the older libraries do. Extra rows: the model under bfloat16
autocast (``precision="bf16"``) and the compiled step (``compile=True``, timed after its
compilation).

Usage::

    python benchmarks/cem_throughput.py --output benchmarks/results/cem_throughput_cpu.json
    python benchmarks/cem_throughput.py --device cuda --n 1 64 256 --output cem_throughput_cuda.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    device_name,
    forward_flops,
    matmul_rate,
    report_header,
    synchronize,
    write_report,
)
from urv_vs_loop import mnist_cnn  # noqa: E402

from foxcem import CEMExplainer, get_explainer  # noqa: E402
from foxcem.demo.digits import load_digits_split, train_digits_model  # noqa: E402

DEFAULT_STEPS = 1000  # 5 rounds × 200 steps


def run_seconds(model: nn.Module, x: torch.Tensor, options: dict[str, Any]) -> float:
    """Wall time of one ``CEMExplainer`` call, the device synchronised around it."""
    synchronize(x.device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CEMExplainer().calculate_features(model, x, **options)
    synchronize(x.device)
    return time.perf_counter() - start


def cem_row(
    name: str, model: nn.Module, images: torch.Tensor, n: int, mode: str, gradient: str,
    iters: int, flops: int, rate: float, baseline_images: int, extra: Optional[dict] = None,
) -> dict[str, Any]:  # fmt: skip
    x = images[:n]
    options = {"mode": mode, "gradient": gradient, "num_iter": iters, "c_steps": 1,
               "progress": False, **(extra or {})}  # fmt: skip
    run_seconds(model, x, {**options, "num_iter": 2})  # warm-up (and compilation)
    seconds = statistics.median(run_seconds(model, x, options) for _ in range(3))
    per_step = seconds / iters
    rows_per_image = 3 if gradient == "autograd" else 101  # forward-equivalents per step
    floor = n * rows_per_image * flops / rate
    row = {
        "model": name, "mode": mode, "gradient": gradient, "N": n,
        "variant": ",".join(f"{k}={v}" for k, v in (extra or {}).items()) or "default",
        "ms_per_step": 1e3 * per_step,
        "images_per_s_default_run": n / (per_step * DEFAULT_STEPS),
        "floor_ms_per_step": 1e3 * floor,
        "pct_of_floor": 100.0 * floor / per_step,
    }  # fmt: skip
    if baseline_images and not extra:
        count = min(baseline_images, n)
        single = statistics.median(
            sum(run_seconds(model, images[i : i + 1], options) for i in range(count)) / count
            for _ in range(2)
        )
        row["one_at_a_time_ms_per_image_step"] = 1e3 * single / iters
        row["speedup_vs_one_at_a_time"] = (single / iters) / (per_step / n)
    return row


def ig_overhead(device: torch.device, reps: int) -> dict[str, Any]:
    """foxcem's IG against raw Captum on resnet18 (4×3×64×64, 32 steps), interleaved."""
    import torchvision
    from captum.attr import IntegratedGradients

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).to(device).eval()
    x = torch.rand(4, 3, 64, 64, device=device)
    raw = IntegratedGradients(model)
    ours = get_explainer("integrated_gradients")
    target = torch.zeros(4, dtype=torch.long, device=device)

    def captum() -> None:
        raw.attribute(x, target=target, n_steps=32)

    def foxcem() -> None:
        ours.calculate_features(model, x, target, n_steps=32, internal_batch_size=None)

    times: dict[str, list[float]] = {"captum": [], "foxcem": []}
    for fn in (captum, foxcem):
        fn()
    for _ in range(reps):
        for key, fn in (("captum", captum), ("foxcem", foxcem)):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[key].append(time.perf_counter() - start)
    captum_s, foxcem_s = statistics.median(times["captum"]), statistics.median(times["foxcem"])
    return {"captum_ms": 1e3 * captum_s, "foxcem_ms": 1e3 * foxcem_s,
            "overhead_pct": 100.0 * (foxcem_s / captum_s - 1)}  # fmt: skip


def ig_batch_sweep(device: torch.device, mnist: nn.Module, reps: int) -> list[dict[str, Any]]:
    """IG with ``internal_batch_size="auto"`` against every hand-picked size, interleaved."""
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).to(device).eval()
    cases = [
        ("resnet18 4x3x64x64, 32 steps", resnet, torch.rand(4, 3, 64, 64, device=device), 32),
        ("mnist 16x1x28x28, 50 steps", mnist, torch.rand(16, 1, 28, 28, device=device), 50),
    ]
    ig = get_explainer("integrated_gradients")
    sizes: list[Any] = ["auto", None, 256, 128, 64, 32, 16]
    results = []
    for label, model, x, steps in cases:
        target = torch.zeros(len(x), dtype=torch.long, device=device)
        times: dict[str, list[float]] = {str(size): [] for size in sizes}
        for size in sizes:  # warm-up
            ig.calculate_features(model, x, target, n_steps=steps, internal_batch_size=size)
        for _ in range(reps):
            for size in sizes:
                synchronize(device)
                start = time.perf_counter()
                ig.calculate_features(model, x, target, n_steps=steps, internal_batch_size=size)
                synchronize(device)
                times[str(size)].append(time.perf_counter() - start)
        ms = {key: 1e3 * statistics.median(value) for key, value in times.items()}
        hand = {key: value for key, value in ms.items() if key != "auto"}
        best = min(hand, key=hand.get)
        results.append({"case": label, "ms": ms, "best_hand_picked": best,
                        "auto_vs_best_pct": 100.0 * (ms["auto"] / hand[best] - 1)})  # fmt: skip
    return results


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 64], help="images per batch")
    parser.add_argument("--iters", type=int, default=20, help="optimizer steps timed per run")
    parser.add_argument("--baseline-images", type=int, default=8,
                        help="images run one at a time for the baseline (0: none)")  # fmt: skip
    parser.add_argument("--ig-reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = matmul_rate(device)
    split = load_digits_split(seed=0)
    digits = train_digits_model(split, seed=0, device=str(device)).requires_grad_(False)
    torch.manual_seed(0)
    mnist = mnist_cnn().to(device).eval().requires_grad_(False)
    models = {
        "digits": (digits, split.x_test.to(device)),
        "mnist": (mnist, torch.rand(max(args.n), 1, 28, 28, device=device)),
    }
    print(f"device: {device_name(device)} | torch {torch.__version__} | threads "
          f"{torch.get_num_threads()} | fp32 matmul {rate / 1e12:.3f} TFLOP/s")  # fmt: skip
    header = (f"{'model':<7} {'mode':<4} {'grad':<8} {'N':>4} {'variant':<16} {'ms/step':>9} "
              f"{'img/s (1000 st)':>15} {'% floor':>8} {'vs 1-at-a-time':>15}")  # fmt: skip
    print(header)
    print("-" * len(header))
    rows = []

    def show(row: dict[str, Any]) -> None:
        rows.append(row)
        ratio = row.get("speedup_vs_one_at_a_time")
        print(f"{row['model']:<7} {row['mode']:<4} {row['gradient']:<8} {row['N']:>4} "
              f"{row['variant']:<16} {row['ms_per_step']:>9.2f} "
              f"{row['images_per_s_default_run']:>15.2f} {row['pct_of_floor']:>7.1f}% "
              f"{'-' if ratio is None else f'{ratio:.1f}x':>15}", flush=True)  # fmt: skip

    for name, (model, images) in models.items():
        flops = forward_flops(model, tuple(images.shape[1:]))
        for gradient in ("autograd", "urv"):
            for mode in ("PN", "PP"):
                for n in args.n:
                    show(cem_row(name, model, images, n, mode, gradient, args.iters, flops,
                                 rate, args.baseline_images if n == max(args.n) else 0))  # fmt: skip
        n = max(args.n)
        show(cem_row(name, model, images, n, "PN", "autograd", args.iters, flops, rate, 0,
                     {"precision": "bf16"}))  # fmt: skip
        if not args.skip_compile:
            show(cem_row(name, model, images, n, "PN", "autograd", args.iters, flops, rate, 0,
                         {"compile": True}))  # fmt: skip
    ig = ig_overhead(device, args.ig_reps)
    print(f"IG through foxcem vs raw Captum (resnet18, 4×3×64×64, 32 steps): "
          f"{ig['foxcem_ms']:.1f} vs {ig['captum_ms']:.1f} ms, {ig['overhead_pct']:+.1f}%")  # fmt: skip
    sweep = ig_batch_sweep(device, mnist, max(3, args.ig_reps // 2))
    for case in sweep:
        sizes = "  ".join(f"{key}: {value:.1f}" for key, value in case["ms"].items())
        print(f"IG internal_batch_size, ms ({case['case']}): {sizes} | auto vs best "
              f"({case['best_hand_picked']}): {case['auto_vs_best_pct']:+.1f}%")  # fmt: skip
    report = {
        **report_header("cem_throughput", device),
        "matmul_fp32_flops_per_s": rate,
        "iters_timed": args.iters,
        "rows": rows,
        "ig_overhead": ig,
        "ig_internal_batch_size": sweep,
    }
    write_report(report, args.output or f"cem_throughput_{device.type}.json")
    return report


if __name__ == "__main__":
    main()
