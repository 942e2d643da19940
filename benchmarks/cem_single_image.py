"""One image, white box: a whole CEM run beside a bare loop of the same model passes.

The floor of a white-box CEM run is its model work: one forward and one backward pass per
optimizer step (plus the few forward passes of the final sparsification). This script runs
``CEMExplainer`` (PN, defaults: 5 rounds × 200 steps) on one image and, interleaved in the same
process, a bare torch loop doing exactly as many forward + backward passes of the same model on
one image (eval mode, parameters frozen as foxcem freezes them, the gradient taken with respect
to the input only). The ratio foxcem / bare is the cost of everything around the model: the
optimizer's proximal step, the loss, the bookkeeping of the c search. One thread, as a single
image gains nothing from more.

The last columns say what eager PyTorch allows: the aten operations one bare pass dispatches
(forward and backward), the operations foxcem dispatches per step besides the model's own
(counted with a dispatch mode in an untimed run), the measured cost of one small elementwise
operation on a δ-sized tensor, and the ratio those extra operations alone would give at that
cost — a lower bound for any eager implementation that dispatches them.

Models: the demo's digits CNN (1×8×8) and, when ``../shared/ibm_mnist`` is beside the checkout,
IBM's MNIST classifier (1×28×28).

Usage::

    python benchmarks/cem_single_image.py --output benchmarks/results/cem_single_image_cpu.json
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ibm_mnist  # noqa: E402
from common import report_header, write_report  # noqa: E402

from foxcem import CEMExplainer  # noqa: E402
from foxcem.demo import load_demo_networks  # noqa: E402


def bare_loop(model: nn.Module, x: torch.Tensor, calls: int) -> Callable[[], Any]:
    """``calls`` forward + backward passes on one image, gradient with respect to the input."""

    def run() -> torch.Tensor:
        delta = torch.zeros_like(x, requires_grad=True)
        grad = delta
        for _ in range(calls):
            scores = model(x + delta)
            (grad,) = torch.autograd.grad(scores[0, 0] - scores[0, 1], delta)
        return grad

    return run


class _CountOperations(TorchDispatchMode):
    """Counts the aten operations dispatched while active (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.count += 1
        return func(*args, **(kwargs or {}))


def operations(call: Callable[[], Any]) -> int:
    """The number of aten operations ``call()`` dispatches."""
    with _CountOperations() as counter:
        call()
    return counter.count


def microseconds_per_operation(like: torch.Tensor, repeats: int = 4000) -> float:
    """The cost of one small elementwise operation on a tensor like δ (an eager launch)."""
    a, b = torch.rand_like(like), torch.rand_like(like)
    for _ in range(200):
        torch.add(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.add(a, b)
    return 1e6 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", default="cem_single_image_cpu.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    models: list[tuple[str, nn.Module, torch.Tensor]] = []
    digits, _, x, _ = load_demo_networks(num_images=1)
    models.append(("digits CNN 1×8×8", digits, x[:1]))
    loaded = ibm_mnist.load_models()
    if loaded is not None:
        images, _ = ibm_mnist.load_images(0, 1)
        models.append(("IBM MNIST CNN 1×28×28", loaded[0], images))
    report = report_header("cem_single_image", torch.device("cpu"))
    report["rows"] = []
    print(
        f"{'model':24} {'passes':>7} {'bare s':>8} {'foxcem s':>9} {'ratio':>6} "
        f"{'ops/pass':>8} {'extra ops/step':>14} {'µs/op':>6} {'bound':>6}"
    )
    for name, model, image in models:
        model = model.eval().requires_grad_(False)
        explainer = CEMExplainer()
        ours = functools.partial(explainer.calculate_features, model, image, mode="PN", threads=1)
        ours()
        calls = int(explainer.meta_data["model_calls"])
        bare = bare_loop(model, image, calls)
        times: dict[str, list[float]] = {"bare": [], "foxcem": []}
        for _ in range(args.reps):
            for key, call in (("bare", bare), ("foxcem", ours)):
                start = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - start)
        b, f = statistics.median(times["bare"]), statistics.median(times["foxcem"])
        # What eager PyTorch allows: the operations foxcem dispatches per step besides the
        # model's own, each costing at least one small operation's launch.
        steps = int(explainer.meta_data["num_iter"])
        per_pass = operations(bare) / calls
        extra = (operations(ours) - calls * per_pass) / steps
        launch = microseconds_per_operation(image)
        bound = (b + steps * extra * launch * 1e-6) / b
        report["rows"].append({"model": name, "model_calls": calls, "bare_seconds": b,
                               "foxcem_seconds": f, "ratio": f / b, "steps": steps,
                               "operations_per_model_pass": per_pass,
                               "extra_operations_per_step": extra,
                               "microseconds_per_operation": launch,
                               "ratio_lower_bound_at_launch_cost": bound})  # fmt: skip
        print(
            f"{name:24} {calls:7d} {b:8.2f} {f:9.2f} {f / b:6.2f} {per_pass:8.0f} "
            f"{extra:14.0f} {launch:6.1f} {bound:6.2f}"
        )
    write_report(report, args.output)


if __name__ == "__main__":
    main()
