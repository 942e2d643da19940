"""The ``foxcem demo`` pipeline: train (or load) the digits CNN, explain test digits, draw, summarise.

Usable from Python as well::

    from foxcem.demo.run import DemoConfig, run_demo, format_table
    summary = run_demo(DemoConfig(num_images=4, output="out"))
    print(format_table(summary))
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from foxcem._version import __version__
from foxcem.cem.defaults import MODE_DEFAULTS, mode_defaults
from foxcem.cem.loss import check_mode
from foxcem.core.explainer import split_convergence_delta
from foxcem.core.model_state import preserve_model_state
from foxcem.core.registry import get_explainer
from foxcem.core.threads import cpu_threads
from foxcem.demo.config import (
    ATTRIBUTION_OPTIONS,
    CEM_OPTIONS,
    DEFAULT_CEM,
    DEFAULT_METHODS,
    DEFAULT_NUM_IMAGES,
    FIGURE_DPI,
    L0_TOLERANCE,
    METHODS,
    SIGNS,
    DemoConfig,
    figure_label,
    parse_methods,
    select_images,
)
from foxcem.demo.digits import (
    accuracy,
    load_digits_split,
)
from foxcem.demo.model import default_cache_dir, load_or_train_model, train_demo_model
from foxcem.demo.report import format_table

__all__ = [
    "DEFAULT_CEM",
    "DEFAULT_METHODS",
    "DEFAULT_NUM_IMAGES",
    "METHODS",
    "DemoConfig",
    "default_cache_dir",
    "format_table",
    "load_or_train_model",
    "parse_methods",
    "run_demo",
    "select_images",
    "train_demo_model",
]


# ----------------------------------------------------------------------------------------------
# explaining


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _cem_options(key: str, config: DemoConfig, autoencoder: Optional[nn.Module]) -> dict[str, Any]:
    options = dict(CEM_OPTIONS[key])
    options.update(num_iter=config.num_iter, seed=config.seed)
    if autoencoder is not None and config.gamma > 0:
        options.update(gamma=config.gamma, AE=autoencoder)
    options.update(config.extra.get(key, {}))
    return options


def _run_attribution(
    key: str, model: nn.Module, x: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, dict[str, Any]]:
    method = METHODS[key]
    options = dict(ATTRIBUTION_OPTIONS[key])
    result = get_explainer(method.registry).calculate_features(model, x, targets, **options)
    stats: dict[str, Any] = {"options": options}
    result, delta = split_convergence_delta(
        result, options.get("return_convergence_delta", False) is True
    )
    if delta is not None:
        delta = delta.detach().abs().float().cpu()
        stats["mean_abs_convergence_delta"] = float(delta.mean())
        stats["max_abs_convergence_delta"] = float(delta.max())
    return result, stats


def _run_cem(
    key: str,
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    config: DemoConfig,
    autoencoder: Optional[nn.Module] = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    options = _cem_options(key, config, autoencoder)
    options.setdefault("progress", config.progress)
    explainer = get_explainer("cem")
    delta = explainer.calculate_features(model, x, targets, **options)
    mode = check_mode(options["mode"])  # a user's "pp" in `extra` means "PP"
    probe = delta if mode == "PP" else x + delta  # the digits' no-information value is 0
    predicted = _predict(model, probe)
    success = predicted == targets if mode == "PP" else predicted != targets
    flat = delta.detach().flatten(1).float()
    stats = {
        "options": {k: v for k, v in options.items() if k not in ("progress", "AE")},
        "autoencoder": "AE" in options,
        "found": int(explainer.meta_data["found"].sum()),
        "found_flags": explainer.meta_data["found"].cpu().tolist(),
        "mode": mode,
        "success_rate": float(success.float().mean()),
        "successes": int(success.sum()),
        "mean_l1": float(flat.abs().sum(dim=1).mean()),
        "mean_l0": float((flat.abs() > L0_TOLERANCE).sum(dim=1).float().mean()),
        "mean_count_above_0.01": float((flat.abs() > 0.01).sum(dim=1).float().mean()),
        "predictions": predicted.cpu().tolist(),
    }
    # what was filled in (c, K, l1, l2, eta; PP's l1 grows with γ)
    stats["defaults"] = mode_defaults(mode, float(options.get("gamma", 0.0)))
    return delta, stats


def _savepoints(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    config: DemoConfig,
    autoencoder: Optional[nn.Module],
) -> tuple[Any, dict[str, Any]]:
    """Savepoints of one PN run (autograd gradient) on the first explained digit.

    One round per run, so that the strip shows one optimisation from its start: c goes through
    the search's ×10 schedule (``c``, 10·c, …; ``c_steps`` values) until a round finds a PN.
    """
    options = _cem_options("cem_pn", config, autoencoder)
    save_freq = max(2, config.num_iter // 4)
    defaults = MODE_DEFAULTS["PN"]
    c_init = float(options.pop("c", defaults["c"]))
    for step in range(int(options.pop("c_steps", defaults["c_steps"]))):
        c = c_init * 10.0**step
        generator = get_explainer("cem").create_explainer(
            model, **{**options, "c": c, "save_freq": save_freq, "c_steps": 1, "device": x.device}
        )
        with preserve_model_state(model, inputs=x), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a round that finds nothing is reported below
            savepoints, meta = generator.run(image=x, inference_call=model, target=target)
        if bool(meta["found"].all()):
            break
    info = {"save_freq": save_freq, "c": c, "found": bool(meta["found"].all())}
    info["success"] = bool(meta["success"].all())
    if not info["found"]:
        warnings.warn(
            f"the savepoint strip's PN found no explanation up to c = {c:g}", stacklevel=2
        )
    return savepoints, info


def run_demo(config: DemoConfig, log: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Run the whole demo; returns the summary (also written to ``summary.json``).

    Thread use is the library's own choice per call (:mod:`foxcem.core.threads`: the tiny digits
    CNN runs its CEM loops on one thread); ``config.threads`` > 0 pins a count for the whole run
    on the CPU. The caller's setting is restored afterwards.

    Args:
        config: the settings.
        log: called with progress messages (e.g. ``print``); ``None`` is silent.
    """
    cpu = torch.device(config.device).type == "cpu"
    with cpu_threads(config.threads if config.threads and cpu else None):
        return _run_demo(config, log)


def _run_demo(config: DemoConfig, log: Optional[Callable[[str], None]]) -> dict[str, Any]:
    say = log or (lambda message: None)
    from foxcem.viz import plot_explanation_grid, plot_savepoints, require_matplotlib

    require_matplotlib()  # fail before training, not after
    total_start = time.perf_counter()
    methods = parse_methods(config.methods)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} requested but CUDA is not available")
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)

    split = load_digits_split(seed=config.seed)
    model, model_info = load_or_train_model(
        split,
        seed=config.seed,
        epochs=config.epochs,
        device=config.device,
        cache_dir=config.cache_dir,
        use_cache=config.use_cache,
        progress=config.progress,
    )
    autoencoder = None
    if config.gamma > 0 and any(METHODS[k].kind == "cem" for k in methods):
        autoencoder, ae_info = load_or_train_model(
            split,
            seed=config.seed,
            epochs=config.ae_epochs,
            device=config.device,
            cache_dir=config.cache_dir,
            use_cache=config.use_cache,
            progress=config.progress,
            kind="autoencoder",
        )
        model_info["autoencoder"] = ae_info
    test_accuracy = accuracy(model, split.x_test.to(device), split.y_test.to(device))
    model_info["test_accuracy"] = test_accuracy
    source = (
        "loaded from cache"
        if model_info["cached"]
        else f"trained in {model_info['train_seconds']:.1f} s"
    )
    say(
        f"digits CNN ({source}): test accuracy {100 * test_accuracy:.1f}% "
        f"on {len(split.y_test)} held-out real digits"
    )

    indices = select_images(split.y_test, config.num_images)
    x = split.x_test[indices].to(device)
    labels = split.y_test[indices]
    targets = _predict(model, x)

    results: dict[str, torch.Tensor] = {}
    stats: dict[str, dict[str, Any]] = {}
    figure_info: dict[str, Any] = {}
    savepoints = None
    for key in methods:
        method = METHODS[key]
        say(f"explaining {len(indices)} digits with {method.label} ...")
        _sync(device)
        start = time.perf_counter()
        if method.kind == "cem":
            result, info = _run_cem(key, model, x, targets, config, autoencoder)
        else:
            result, info = _run_attribution(key, model, x, targets)
        _sync(device)
        info["seconds"] = time.perf_counter() - start
        results[key] = result.detach().cpu()
        stats[key] = {"label": method.label, "registry": method.registry, **info}
    if config.savepoint_figure and any(METHODS[k].kind == "cem" for k in methods):
        start = time.perf_counter()
        savepoints, figure_info = _savepoints(model, x[:1], targets[:1], config, autoencoder)
        figure_info["seconds"] = time.perf_counter() - start

    cpu_model = _CpuView(model, device)
    attributions = {figure_label(k, model): results[k] for k in methods if METHODS[k].kind != "cem"}
    pp = {METHODS[k].label: results[k] for k in methods if stats[k].get("mode") == "PP"}
    pn = {METHODS[k].label: results[k] for k in methods if stats[k].get("mode") == "PN"}
    fig = plot_explanation_grid(
        x.cpu(),
        attributions,
        pp=pp or None,
        pn=pn or None,
        model=cpu_model,
        labels=labels.tolist(),
        sign={label: SIGNS.get(label.split(" (")[0], "absolute") for label in attributions},
        found={
            METHODS[k].label: stats[k]["found_flags"] for k in methods if "found_flags" in stats[k]
        },
        title=f"foxcem demo: real digits, CNN test accuracy {100 * test_accuracy:.1f}%",
    )
    fig.savefig(output / "explanations.png", dpi=FIGURE_DPI)
    files = ["explanations.png"]
    if savepoints is not None:
        fig = plot_savepoints(
            savepoints,
            image=x[:1].cpu(),
            model=cpu_model,
            mode="PN",
            title=(
                f"CEM pertinent negative of a {int(labels[0])}: the ink δ adds, one round at "
                f"c = {figure_info['c']:g}"
            ),
        )
        fig.savefig(output / "cem_savepoints.png", dpi=FIGURE_DPI)
        files.append("cem_savepoints.png")
    files.append("summary.json")

    summary: dict[str, Any] = {
        "foxcem_version": __version__,
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seed": config.seed,
        "num_images": len(indices),
        "num_iter": config.num_iter,
        "model": {"epochs": config.epochs, **model_info},
        "images": {
            "test_indices": indices,
            "labels": labels.tolist(),
            "predictions": targets.cpu().tolist(),
        },
        "methods": stats,
        "savepoints": figure_info,
        "files": files,
        "output": str(output),
    }
    summary["total_seconds"] = time.perf_counter() - total_start
    with open(output / "summary.json", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    return summary


class _CpuView(nn.Module):
    """Runs a model on its device for CPU inputs, returning CPU scores (for the figures)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.device = device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device)).cpu()
