"""The demo's networks — the digits CNN and its autoencoder — trained with a fixed seed and
cached by their training settings."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from foxcem.core.progress import progress_bar
from foxcem.demo.digits import (
    DigitsAutoencoder,
    DigitsCNN,
    DigitsSplit,
    load_digits_split,
    train_digits_autoencoder,
    train_digits_model,
)

__all__ = ["DEMO_EPOCHS", "default_cache_dir", "load_or_train_model", "train_demo_model"]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/foxcem``, or ``~/.cache/foxcem`` when ``XDG_CACHE_HOME`` is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base.strip() else Path.home() / ".cache"
    return root / "foxcem"


#: kind -> (name in the cache key, class, trainer, optimiser settings, file prefix)
NETWORKS: dict[str, tuple[str, type, Any, dict[str, Any], str]] = {
    "cnn": ("DigitsCNN-v1", DigitsCNN, train_digits_model, {"batch_size": 64, "lr": 2e-3},
            "digits_cnn"),
    "autoencoder": ("DigitsAutoencoder-v1", DigitsAutoencoder, train_digits_autoencoder,
                    {"batch_size": 64, "lr": 3e-3}, "digits_ae"),
}  # fmt: skip


def _training_settings(seed: int, epochs: int, device: str, kind: str = "cnn") -> dict[str, Any]:
    name, _, _, optimiser, _ = NETWORKS[kind]
    return {
        "model": name,
        "data": "sklearn-digits-test0.2",
        "seed": seed,
        "epochs": epochs,
        **optimiser,
        "device_type": torch.device(device).type,
    }


def _cache_path(cache_dir: Path, settings: dict[str, Any], kind: str = "cnn") -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{NETWORKS[kind][4]}_seed{settings['seed']}_{key}.pt"


def train_demo_model(
    split: Optional[DigitsSplit] = None,
    seed: int = 0,
    epochs: int = 30,
    device: str = "cpu",
    progress: bool = True,
    kind: str = "cnn",
) -> nn.Module:
    """Train the demo's CNN (or, ``kind="autoencoder"``, its autoencoder) exactly as
    ``foxcem demo`` does (fixed seed), with a progress bar.

    Returns the model in eval mode on ``device``.
    """
    split = split if split is not None else load_digits_split(seed=seed)
    settings = _training_settings(seed, epochs, device, kind)
    trainer = NETWORKS[kind][2]
    with progress_bar(epochs, f"training {kind}", enabled=progress, unit="epoch") as bar:

        def on_epoch(epoch: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        return trainer(
            split,
            epochs=epochs,
            seed=seed,
            device=device,
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            on_epoch=on_epoch,
        )


#: Training epochs of each network in ``foxcem demo`` (what ``epochs=None`` means).
DEMO_EPOCHS = {"cnn": 30, "autoencoder": 40}


def load_or_train_model(
    split: DigitsSplit,
    seed: int = 0,
    epochs: Optional[int] = None,
    device: str = "cpu",
    cache_dir: Optional[Union[str, Path]] = None,
    use_cache: bool = True,
    progress: bool = True,
    kind: str = "cnn",
) -> tuple[nn.Module, dict[str, Any]]:
    """The demo's CNN (or autoencoder, ``kind="autoencoder"``): loaded from the cache when
    trained before with the same settings.

    The cache file is keyed by the training settings (seed, epochs, optimiser, device type). A
    missing or unreadable cache file means training; the result is then written (atomically).
    ``epochs=None`` trains as ``foxcem demo`` does (:data:`DEMO_EPOCHS`), so the demo's cache
    is reused.

    Returns:
        ``(model, info)`` with ``info`` holding ``cached`` (bool), ``weights`` (the path, or
        ``None`` without cache) and ``train_seconds``.
    """
    epochs = DEMO_EPOCHS[kind] if epochs is None else epochs
    settings = _training_settings(seed, epochs, device, kind)
    path = _cache_path(Path(cache_dir) if cache_dir else default_cache_dir(), settings, kind)
    info: dict[str, Any] = {"cached": False, "weights": str(path) if use_cache else None}
    if use_cache and path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("settings") != settings:
                raise ValueError("settings differ")
            model = NETWORKS[kind][1]()
            model.load_state_dict(payload["state_dict"])
            info.update(cached=True, train_seconds=0.0)
            return model.to(device).eval(), info
        except Exception:  # a stale or corrupt file: train again and overwrite it
            pass
    start = time.perf_counter()
    model = train_demo_model(split, seed, epochs, device, progress, kind)
    info["train_seconds"] = time.perf_counter() - start
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save({"settings": settings, "state_dict": state}, tmp)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only cache is not fatal
            info["weights"] = None
            info["cache_error"] = str(exc)
    return model, info
