"""One URV gradient estimate per image: reference loops against foxcem's batched estimator.

Three ways to compute the same black-box gradient estimate of the CEM PN loss, timed side by
side in one run on the CEM paper's MNIST CNN (random weights, inputs 1×28×28):

(a) ``loop``  — the older library's way: one direction per forward pass, noise drawn with numpy
    on the host, each loss value copied back to the host;
(b) ``host``  — one image at a time, its q directions in one forward pass, noise drawn with
    numpy on the host and copied to the device;
(c) ``foxcem`` — :class:`foxcem.cem.URVGradientEstimator`: N images × q directions in as few
    forward passes as ``--batch-size`` allows, noise drawn on the device.

(a) and (b) do not depend on N (one image at a time) and are reported per image: (a) timed on a
few images, (b) on up to ``--host-images`` of the batch, interleaved with (c) so that both see the
same load on a shared machine. The forward FLOPs are counted analytically (convolutions and linear layers:
2·MACs) and the fp32 matmul rate is measured in the same run, giving the arithmetic floor: the
time the forward FLOPs would take at the matmul rate. TF32 is off unless ``--tf32``.

Usage::

    python benchmarks/urv_vs_loop.py --device cpu --quick
    python benchmarks/urv_vs_loop.py --device cuda --output urv_vs_loop_cuda.json
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    device_name,
    forward_flops,
    matmul_rate,
    report_header,
    timed,
    write_report,
)

from foxcem.cem import CEMLoss, URVGradientEstimator  # noqa: E402

KAPPA = 10.0


def imagenet_size_cnn() -> nn.Module:
    """A small CNN for 3×224×224 inputs: conv16/4-conv32/2-pool-fc10 (random weights)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 7, stride=4),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32 * 16, 10),
    )


#: input size -> (model factory, sample shape, images per batch in the grid)
SIZES = {
    "28": (lambda: mnist_cnn(), (1, 28, 28), None),
    "224": (lambda: imagenet_size_cnn(), (3, 224, 224), [1, 8]),
}

MEMORY_PROBE = """
import sys, torch
sys.path.insert(0, {here!r})
import urv_vs_loop as b
from foxcem.cem import CEMLoss, URVGradientEstimator
torch.set_num_threads(1)
make, shape, _ = b.SIZES[{size!r}]
torch.manual_seed(0)
model = make().eval().requires_grad_(False)
x = torch.rand(({n},) + shape)
loss = CEMLoss(model, x, mode="PN", K=b.KAPPA)
delta = torch.zeros_like(x)
URVGradientEstimator(loss, num_directions=2, batch_size={batch_size!r}, seed=0)(delta)
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current size
URVGradientEstimator(loss, num_directions={q}, batch_size={batch_size!r}, seed=0)(delta)
print((status("VmHWM") - before) / 1024)
"""


def peak_memory_mib(size: str, n: int, q: int, batch_size: object) -> float:
    """Peak resident memory one CPU estimate adds above its inputs and model, in MiB: a fresh
    process, a warm-up estimate, then Linux's peak-RSS counter reset and read around the one."""
    import subprocess

    code = MEMORY_PROBE.format(
        here=str(Path(__file__).resolve().parent), size=size, n=n, q=q, batch_size=batch_size
    )
    # Large blocks straight from mmap and back on free: resident memory is live memory, not
    # what the allocator keeps cached.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(done.stdout.strip().splitlines()[-1])


def mnist_cnn() -> nn.Module:
    """The CEM paper's MNIST classifier: conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )


# ----------------------------------------------------------------------------- references
def _pn_loss_values(
    model: nn.Module, x: torch.Tensor, target: int, deltas: torch.Tensor
) -> torch.Tensor:
    """PN hinge max(f_t − max_{i≠t} f_i, −κ) of x + δ for each δ row (on the device)."""
    with torch.no_grad():
        scores = model(x + deltas)
    f_t = scores[:, target]
    other = scores.clone()
    other[:, target] = -float("inf")
    return torch.clamp(f_t - other.amax(dim=1), min=-KAPPA)


def reference_loop(
    model: nn.Module, x: torch.Tensor, target: int, q: int, mu: float, rng: np.random.RandomState
) -> np.ndarray:
    """(a) One direction per forward pass, numpy noise, each loss value back on the host."""
    shape = tuple(x.shape)
    d = x.numel()
    delta = np.zeros(shape, dtype=np.float32)
    device = x.device
    f0 = float(_pn_loss_values(model, x, target, torch.from_numpy(delta).to(device))[0])
    g = np.zeros(shape)
    for _ in range(q):
        u = rng.normal(size=shape)
        u /= np.linalg.norm(u)
        point = torch.from_numpy((delta + mu * u).astype(np.float32)).to(device)
        f = float(_pn_loss_values(model, x, target, point)[0])
        g += d / mu / q * (f - f0) * u
    return g


def reference_host_batched(
    model: nn.Module, x: torch.Tensor, target: int, q: int, mu: float, rng: np.random.RandomState
) -> np.ndarray:
    """(b) One image, its q directions in one forward pass, numpy noise copied to the device."""
    shape = tuple(x.shape[1:])
    d = x.numel()
    u = rng.normal(size=(q,) + shape)
    u /= np.linalg.norm(u.reshape(q, -1), axis=1).reshape((q,) + (1,) * len(shape))
    delta = np.zeros((1,) + shape, dtype=np.float32)
    points = np.concatenate([delta, delta + mu * u]).astype(np.float32)
    values = _pn_loss_values(model, x, target, torch.from_numpy(points).to(x.device)).cpu().numpy()
    weights = (values[1:] - values[0]).astype(np.float64)
    return d / (mu * q) * np.tensordot(weights, u, axes=1)


def _run_reference(
    fn: Callable[..., np.ndarray],
    model: nn.Module,
    images: torch.Tensor,
    targets: list[int],
    count: int,
    q: int,
    mu: float,
    rng: np.random.RandomState,
) -> None:
    for i in range(count):
        fn(model, images[i : i + 1], targets[i], q, mu, rng)


# ----------------------------------------------------------------------------- main
def _cell(model, images, targets, size, q, n, mu, rng, device, batch_size, reps, host_images,
          loop_seconds, flops_row, rate) -> dict:  # fmt: skip
    """One row of the table: (b) and (c) timed interleaved, medians; memory on the CPU."""
    x = images[:n]
    loss = CEMLoss(model, x, mode="PN", K=KAPPA)
    estimator = URVGradientEstimator(loss, num_directions=q, batch_size=batch_size, seed=0)
    delta = torch.zeros_like(x)
    estimate = functools.partial(estimator, delta)
    estimate()  # warm-up
    count = min(n, host_images)
    host = functools.partial(
        _run_reference, reference_host_batched, model, images, targets, count, q, mu, rng
    )
    host_times, foxcem_times = [], []
    for _ in range(reps):  # interleaved, so that both see the same machine load
        host_times.append(timed(host, device, reps=1, warmup=0) / count)
        foxcem_times.append(timed(estimate, device, reps=1, warmup=0) / n)
    host_seconds = statistics.median(host_times)
    per_image = statistics.median(foxcem_times)
    floor = (q + 1) * flops_row / rate
    memory = peak_memory_mib(size, n, q, batch_size) if device.type == "cpu" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        estimate()
        memory = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return {
        "input": size,
        "q": q,
        "N": n,
        "loop_ms_per_image": 1e3 * loop_seconds,
        "host_ms_per_image": 1e3 * host_seconds,
        "foxcem_ms_per_image": 1e3 * per_image,
        "speedup_vs_loop": loop_seconds / per_image,
        "speedup_vs_host": host_seconds / per_image,
        "floor_ms_per_image": 1e3 * floor,
        "foxcem_pct_of_floor": 100.0 * floor / per_image,
        "forward_passes": estimator.last_num_calls,
        "rows_per_pass": estimator.last_batch_size,
        "peak_memory_mib": memory,
    }


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and reference images")
    parser.add_argument(
        "--output", default=None, help="JSON file (default: urv_vs_loop_<device>.json)"
    )
    parser.add_argument("--q", type=int, nargs="+", default=[100, 500], help="directions per image")
    parser.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=None,
        help="images per batch (default 1 64 256; 1 8 at 224)",
    )
    parser.add_argument(
        "--sizes", nargs="+", default=["28", "224"], choices=list(SIZES), help="input sizes"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per forward pass for foxcem (default: 'auto', foxcem's own choice)",
    )
    parser.add_argument("--loop-images", type=int, default=None, help="images timed for (a)")
    parser.add_argument(
        "--host-images", type=int, default=None, help="most images timed for (b) (default 64)"
    )
    parser.add_argument("--reps", type=int, default=None, help="timed repeats for foxcem")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (off: true fp32)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
    args.n_default = args.n is None
    args.n = args.n or [1, 64, 256]
    batch_size = args.batch_size or "auto"
    reps = args.reps or (1 if args.quick else 3)
    loop_images = args.loop_images or (1 if args.quick else 3)
    host_images = args.host_images or (8 if args.quick else 64)

    rate = matmul_rate(device)
    print(
        f"device: {device_name(device)} | torch {torch.__version__} | threads {torch.get_num_threads()}"
    )
    print(f"fp32 matmul: {rate / 1e12:.3f} TFLOP/s | foxcem rows per pass: {batch_size or 'all'}")
    results = []
    for size in args.sizes:
        make, sample_shape, sizes_n = SIZES[size]
        torch.manual_seed(0)
        model = make().to(device).eval().requires_grad_(False)
        flops_row = forward_flops(model, sample_shape)
        grid_n = sizes_n if sizes_n is not None and args.n_default else args.n
        images = torch.rand(
            (max(grid_n),) + sample_shape, generator=torch.Generator().manual_seed(0)
        )
        images = images.to(device)
        with torch.no_grad():
            targets = model(images).argmax(dim=1).tolist()
        print(f"input {sample_shape}: forward {flops_row / 1e6:.2f} MFLOP per image")
        for q in args.q:
            mu = 1.0 / np.sqrt(images[0].numel())
            rng = np.random.RandomState(0)
            loop = functools.partial(
                _run_reference, reference_loop, model, images, targets, loop_images, q, mu, rng
            )
            _run_reference(reference_host_batched, model, images, targets, 1, q, mu, rng)  # warm-up
            loop_seconds = timed(loop, device, reps=1, warmup=0) / loop_images
            for n in grid_n:
                results.append(
                    _cell(
                        model,
                        images,
                        targets,
                        size,
                        q,
                        n,
                        mu,
                        rng,
                        device,
                        batch_size,
                        reps,
                        host_images,
                        loop_seconds,
                        flops_row,
                        rate,
                    )  # fmt: skip
                )

    header = (
        f"{'input':>5} {'q':>4} {'N':>4} | {'(a) loop':>10} {'(b) host':>10} {'(c) foxcem':>10} | "
        f"{'c vs a':>8} {'c vs b':>7} | {'floor':>8} {'% floor':>7} {'passes':>6} {'MiB':>6}"
    )
    print("\nms per image (one URV estimate of the PN loss gradient)")
    print(header)
    print("-" * len(header))
    for r in results:
        memory = r["peak_memory_mib"]
        print(
            f"{r['input']:>5} {r['q']:>4} {r['N']:>4} | {r['loop_ms_per_image']:>10.3f} "
            f"{r['host_ms_per_image']:>10.3f} {r['foxcem_ms_per_image']:>10.3f} | "
            f"{r['speedup_vs_loop']:>7.1f}x {r['speedup_vs_host']:>6.1f}x | "
            f"{r['floor_ms_per_image']:>8.3f} {r['foxcem_pct_of_floor']:>6.1f}% "
            f"{r['forward_passes']:>6} {'-' if memory is None else f'{memory:6.0f}'}"
        )
    print(
        f"(a) timed once per q on {loop_images} image(s); (b) on min(N, {host_images}) images and "
        f"(c) on the whole batch, interleaved, median of {reps} run(s); (a), (b) do not depend on N"
    )

    report = {
        **report_header("urv_vs_loop", device),
        "device_type": device.type,
        "load_average_start": load_start,
        "tf32": bool(args.tf32),
        "models": {
            "28": "CEM MNIST CNN conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10, random",
            "224": "conv16/4-conv32/2-pool-fc10 on 3x224x224, random",
        },
        "matmul_fp32_flops_per_s": rate,
        "foxcem_rows_per_pass": batch_size,
        "loop_images": loop_images,
        "host_images_max": host_images,
        "reps": reps,
        "results": results,
    }
    report["load_average_end"] = report.pop("load_average")
    write_report(report, args.output or f"urv_vs_loop_{device.type}.json")
    return report


if __name__ == "__main__":
    main()
