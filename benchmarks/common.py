"""What every benchmark shares: timing with the device synchronised, the device's name, the
forward FLOPs of a model and the measured fp32 matmul rate (the arithmetic floor's yardstick)."""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Union

import torch
from torch import nn

__all__ = ["device_name", "forward_flops", "matmul_rate", "synchronize", "timed"]


def forward_flops(model: nn.Module, sample_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward row: 2·MACs of every Conv2d and Linear (bias, ReLU, pooling omitted)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output[0].numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs = module.in_features * module.out_features
        total += 2 * macs

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + sample_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, reps: int, warmup: int) -> float:
    """Median wall time of ``fn`` in seconds, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rate(device: torch.device) -> float:
    """Measured fp32 matmul rate in FLOP/s: the best of 10 square products of a few sizes."""
    sizes = [1024, 2048] if device.type == "cpu" else [4096, 8192]
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        product = functools.partial(torch.mm, a, b)
        product()
        for _ in range(10):
            seconds = timed(product, device, reps=1, warmup=0)
            best = max(best, 2.0 * n**3 / seconds)
    return best


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report_header(benchmark: str, device: torch.device) -> dict[str, Any]:
    """The fields every benchmark's JSON starts with: what ran, where and how busy the machine was."""
    return {
        "benchmark": benchmark,
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": " ".join([sys.executable.rsplit("/", 1)[-1]] + sys.argv),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def write_report(report: dict[str, Any], output: Union[str, Path]) -> None:
    """Write ``report`` as indented JSON to ``output`` and say so."""
    Path(output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
