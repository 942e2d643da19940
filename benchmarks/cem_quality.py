"""CEM quality with the defaults, on two models nobody tuned them for, beside two yardsticks.

For both models and both modes: the success rate (checked on the model's predictions), mean
‖δ‖₀ (entries above 0.01), mean ‖δ‖₁ and seconds per image:

* the demo's digits CNN (8×8 digits, 64 test images, κ 5 for PN, 2 for PP) — foxcem's defaults
  with the exact gradient and with the black-box URV estimate, beside a float64 FISTA reference
  with the paper's c search (``tests/cem_reference.py``: 9 rounds × 1000 steps, β = 0.1);
* IBM's MNIST classifier (``../shared/ibm_mnist``, 64 test images) with foxcem's defaults, and
  with IBM's settings (κ 10, γ 100 and IBM's autoencoder); the black-box PN (URV, defaults)
  beside the exact-gradient PN on images 0–7 (the URV row costs about 5 minutes);
* IBM's two published examples (image 340: PN, image 2953: PP) with IBM's settings, beside the
  numbers recomputed from IBM's published result arrays.

Usage::

    python benchmarks/cem_quality.py --output benchmarks/results/cem_quality_cpu.json
    python benchmarks/cem_quality.py --quick       # 16 images, no URV row
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ibm_mnist  # noqa: E402
from cem_reference import fista_cem  # noqa: E402
from common import device_name, report_header, write_report  # noqa: E402

from foxcem import CEMExplainer  # noqa: E402
from foxcem.demo.digits import load_digits_split, train_digits_model  # noqa: E402


def measure(explain: Callable[[], tuple[torch.Tensor, torch.Tensor]], model: nn.Module,
            x: torch.Tensor, mode: str) -> dict[str, Any]:  # fmt: skip
    """Run ``explain() -> (δ, found)`` and score it on ``model``'s own predictions."""
    start = time.perf_counter()
    delta, found = explain()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        before = model(x.to(delta.dtype)).argmax(dim=1)
        after = model(x.to(delta.dtype) + delta if mode == "PN" else delta).argmax(dim=1)
    success = (after != before if mode == "PN" else after == before) & found
    flat = delta.detach().flatten(1).float()
    return {
        "success": float(success.float().mean()),
        "l0": float((flat.abs() > 0.01).sum(dim=1).float().mean()),
        "l1": float(flat.abs().sum(dim=1).mean()),
        "seconds_per_image": seconds / len(x),
        "images": len(x),
    }


def foxcem_run(model: nn.Module, x: torch.Tensor, mode: str, **options: Any) -> Callable[[], Any]:
    def run() -> tuple[torch.Tensor, torch.Tensor]:
        explainer = CEMExplainer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not-found samples are counted as failures
            delta = explainer.calculate_features(model, x, mode=mode, **options)
        return delta, explainer.meta_data["found"]

    return run


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 images, no URV row")
    parser.add_argument("--images", type=int, default=None, help="images per model (default 64)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="cem_quality_cpu.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    count = args.images or (16 if args.quick else 64)
    rows: list[dict[str, Any]] = []

    def add(model_name: str, setting: str, method: str, mode: str, result: dict) -> None:
        rows.append({"model": model_name, "setting": setting, "method": method, "mode": mode,
                     **result})  # fmt: skip
        r = rows[-1]
        print(
            f"{model_name:<8} {setting:<13} {method:<16} {mode:<3} {100 * r['success']:6.1f}% "
            f"{r['l0']:8.1f} {r['l1']:8.2f} {r['seconds_per_image']:9.3f}",
            flush=True,
        )

    print(f"device: {device_name(torch.device('cpu'))} | torch {torch.__version__} | "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'model':<8} {'setting':<13} {'method':<16} {'':<3} {'success':>7} {'‖δ‖₀':>8} "
          f"{'‖δ‖₁':>8} {'s/image':>9}")  # fmt: skip

    split = load_digits_split(seed=0)
    digits = train_digits_model(split, seed=0)
    x = split.x_test[:count]
    digits64 = copy.deepcopy(digits).double().eval().requires_grad_(False)
    for mode, kappa in (("PN", 5.0), ("PP", 2.0)):
        add("digits", f"κ {kappa:g}", "foxcem autograd", mode,
            measure(foxcem_run(digits, x, mode, K=kappa), digits, x, mode))  # fmt: skip
        if not args.quick:
            add("digits", f"κ {kappa:g}", "foxcem URV", mode,
                measure(foxcem_run(digits, x, mode, K=kappa, gradient="urv"), digits, x, mode))  # fmt: skip
        add("digits", f"κ {kappa:g}", "FISTA reference", mode,
            measure(lambda mode=mode, kappa=kappa: fista_cem(digits64, x, mode, kappa),
                    digits64, x.double(), mode))  # fmt: skip

    published: dict[str, Any] = {}
    models = ibm_mnist.load_models()
    if models is None:
        print("IBM's model: ../shared/ibm_mnist is not beside the checkout; skipped")
    else:
        clf, ae = models
        images, _ = ibm_mnist.load_images(0, count)
        ibm = {"K": 10.0, "gamma": 100.0, "AE": ae}
        for mode in ("PN", "PP"):
            add("IBM", "defaults", "foxcem autograd", mode,
                measure(foxcem_run(clf, images, mode), clf, images, mode))  # fmt: skip
            add("IBM", "IBM κ10 γ100", "foxcem autograd", mode,
                measure(foxcem_run(clf, images, mode, **ibm), clf, images, mode))  # fmt: skip
        if not args.quick:
            eight = images[:8]
            add("IBM 0-7", "defaults", "foxcem autograd", "PN",
                measure(foxcem_run(clf, eight, "PN"), clf, eight, "PN"))  # fmt: skip
            add("IBM 0-7", "defaults", "foxcem URV", "PN",
                measure(foxcem_run(clf, eight, "PN", gradient="urv"), clf, eight, "PN"))  # fmt: skip
        examples, _ = ibm_mnist.load_ibm_examples()
        for index, mode, key in ((0, "PN", "PN340"), (1, "PP", "PP2953")):
            one = examples[index : index + 1]
            add(f"IBM {key[2:]}", "IBM κ10 γ100", "foxcem autograd", mode,
                measure(foxcem_run(clf, one, mode, **ibm), clf, one, mode))  # fmt: skip
            l0, l1 = ibm_mnist.PUBLISHED[key]
            published[key] = {"l0": l0, "l1": l1}
            print(f"{'IBM ' + key[2:]:<8} {'IBM κ10 γ100':<13} {'IBM published':<16} {mode:<3} "
                  f"{'100.0%':>7} {l0:8.1f} {l1:8.2f} {'-':>9}")  # fmt: skip

        published["PP2953_backgrounds"] = published_pp_backgrounds(clf)

    report = {
        **report_header("cem_quality", torch.device("cpu")),
        "images": count,
        "rows": rows,
        "ibm_published": published,
    }
    write_report(report, args.output)
    return report


def published_pp_backgrounds(clf: torch.nn.Module) -> dict[str, dict[str, float]]:
    """IBM's published PP of image 2953 (δ = orig − adv in IBM's [−0.5, 0.5] space) scored two
    ways: as IBM's code feeds it (δ raw into the [−0.5, 0.5] model: the ink on a mid-grey
    background, here δ + 0.5 in [0, 1]) and on the black background foxcem's PP uses (δ as the
    [0, 1] image). Prints the class, its logit margin over the runner-up and ‖δ‖₀."""
    arrays = ibm_mnist.load_published()
    assert arrays is not None
    pp = arrays["pp2953_orig"] - arrays["pp2953_adv"]
    label = int(clf(arrays["pp2953_orig"] + 0.5).argmax())
    out = {}
    for name, image in (("grey (IBM's code)", pp + 0.5), ("black (foxcem's PP)", pp)):
        with torch.no_grad():
            logits = clf(image)[0]
        others = torch.cat([logits[:label], logits[label + 1 :]])
        margin = float(logits[label] - others.max())
        out[name] = {"class": int(logits.argmax()), "margin": margin,
                     "l0": int((pp.abs() > 0.01).sum())}  # fmt: skip
        print(f"IBM 2953 published PP on a {name} background: class {int(logits.argmax())} "
              f"(explained: {label}), margin {margin:+.2f}, {out[name]['l0']} px")  # fmt: skip
    return out


def published_only() -> None:
    models = ibm_mnist.load_models()
    if models is None:
        print("IBM's model: ../shared/ibm_mnist is not beside the checkout; skipped")
        return
    published_pp_backgrounds(models[0])


if __name__ == "__main__":
    if "--published-only" in sys.argv:
        published_only()
        sys.exit(0)
    main()
