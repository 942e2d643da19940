"""CPU speed for a caller who sets nothing: the library's own thread choice beside hand settings.

Two tables, each timed side by side in one process (calls interleaved, medians):

1. **The API call against the demo's old settings.** The CEM tutorial's calls — the demo's digits
   CNN and autoencoder, six test digits, γ 100 — once exactly as a user of the API writes them
   (no thread or denormal setting), once under what the demo used to wrap them in
   (``torch.set_num_threads(1)`` and ``torch.set_flush_denormal(True)``). Ratio API / old.
2. **1 thread against 2**: whole CEM runs on the demo's digits CNN and on the CEM paper's MNIST
   CNN (its architecture, random weights: timing only), autograd and URV, and one forward pass of
   a resnet18 on 16 images at 224×224 — what ``threads="auto"`` (:mod:`foxcem.core.threads`)
   decides from.

``--busy K`` starts K busy-looping processes for the duration, the way another job on a shared
machine would load it (K = 1 on a 2-core machine: one core left).

Usage::

    python benchmarks/cpu_threads.py --output benchmarks/results/cpu_threads_idle.json
    python benchmarks/cpu_threads.py --busy 1 --output benchmarks/results/cpu_threads_busy.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report_header, write_report  # noqa: E402
from ibm_mnist import IBMClassifier  # noqa: E402

from foxcem import CEMExplainer  # noqa: E402
from foxcem.demo import load_demo_networks  # noqa: E402


def _spin() -> None:  # pragma: no cover - runs in a child process
    while True:
        pass


def old_settings(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` under the demo's former wrapper: one thread, subnormals flushed to zero."""

    def wrapped() -> Any:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
        try:
            return call()
        finally:
            torch.set_flush_denormal(False)
            torch.set_num_threads(threads)

    return wrapped


def interleaved(calls: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median seconds of each call, the calls run in turn ``reps`` times after one warm-up."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for rep in range(reps + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if rep:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def api_against_old_settings(reps: int) -> list[dict[str, Any]]:
    model, autoencoder, x, _ = load_demo_networks(num_images=6)
    rows = []
    for label, options in (
        ("PN autograd", {"mode": "PN"}),
        ("PP autograd", {"mode": "PP"}),
        ("PN URV", {"mode": "PN", "gradient": "urv"}),
    ):

        def api(options: dict[str, Any] = options) -> Any:
            return CEMExplainer().calculate_features(
                model, x, gamma=100.0, AE=autoencoder, progress=False, **options
            )

        medians = interleaved({"api": api, "old": old_settings(api)}, reps)
        rows.append({"call": label, **medians, "ratio": medians["api"] / medians["old"]})
        print(f"{label:12s} API {medians['api']:7.2f} s   old settings {medians['old']:7.2f} s   "
              f"API/old {medians['api'] / medians['old']:.2f}", flush=True)  # fmt: skip
    return rows


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def call() -> Any:
        with torch.no_grad():
            return model(x)

    return call


def _with_threads(call: Callable[[], Any], count: int) -> Callable[[], Any]:
    def wrapped() -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            call()
        finally:
            torch.set_num_threads(before)

    return wrapped


def loops_and_calls(reps: int) -> list[dict[str, Any]]:
    """Whole CEM runs at MNIST scale and one resnet18 call at 224×224, on 1 and on 2 threads."""
    from foxcem.demo.digits import DigitsCNN

    torch.manual_seed(0)
    digits = DigitsCNN().eval().requires_grad_(False)
    mnist = IBMClassifier().eval().requires_grad_(False)  # the architecture; timing only
    resnet = torchvision.models.resnet18().eval().requires_grad_(False)
    x6, x8 = torch.rand(6, 1, 8, 8), torch.rand(8, 1, 28, 28)

    def cem(model: nn.Module, x: torch.Tensor, **options: Any) -> Callable[[], Any]:
        return lambda: CEMExplainer().calculate_features(
            model, x, progress=False, threads=None, c_steps=1, **options
        )

    cases = [
        ("CEM PN autograd, digits CNN, 6 images, 100 steps", cem(digits, x6, num_iter=100)),
        (
            "CEM PN URV, digits CNN, 6 images, 20 steps",
            cem(digits, x6, num_iter=20, gradient="urv"),
        ),
        ("CEM PN autograd, MNIST CNN, 1 image, 100 steps", cem(mnist, x8[:1], num_iter=100)),
        ("CEM PN autograd, MNIST CNN, 8 images, 50 steps", cem(mnist, x8, num_iter=50)),
        ("CEM PN URV, MNIST CNN, 8 images, 5 steps", cem(mnist, x8, num_iter=5, gradient="urv")),
        ("resnet18 forward, 16 x 3x224x224", _forward(resnet, torch.rand(16, 3, 224, 224))),
    ]
    rows = []
    for label, call in cases:
        medians = interleaved({"1": _with_threads(call, 1), "2": _with_threads(call, 2)}, reps)
        one, two = medians["1"], medians["2"]
        rows.append({"call": label, "s_1_thread": one, "s_2_threads": two, "ratio": two / one})
        print(f"{label:50s} 1 thread {one:7.3f} s   2 threads {two:7.3f} s   2/1 {two / one:.2f}",
              flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes to start")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", default="cpu_threads.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for hog in hogs:
        hog.start()
    try:
        report = report_header("cpu_threads", torch.device("cpu"))
        report["busy_processes"] = args.busy
        print(f"{report['device']} | torch {torch.__version__} | threads {report['threads']} | "
              f"busy processes {args.busy}")  # fmt: skip
        print(
            "\nthe CEM tutorial's calls (6 digits, gamma 100), API as written vs demo's old settings"
        )
        report["api_vs_old_settings"] = api_against_old_settings(args.reps)
        print("\nwhole CEM runs (threads=None: as set) and one large call, 1 vs 2 threads")
        report["threads_1_vs_2"] = loops_and_calls(args.reps)
    finally:
        for hog in hogs:
            hog.terminate()
    write_report(report, args.output)


if __name__ == "__main__":
    main()
