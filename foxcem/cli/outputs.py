"""What ``foxcem explain`` writes: file names, PNGs, JSON-safe options, un-normalised inputs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

__all__ = ["MIN_PNG_SIZE", "jsonable", "safe_stem", "unscale", "write_image_png"]

#: PNGs smaller than this (short side, pixels) are enlarged by an integer factor (nearest).
MIN_PNG_SIZE = 128


def unscale(
    batch: torch.Tensor, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> torch.Tensor:
    if std is not None:
        batch = batch * torch.tensor(std).view(1, -1, 1, 1)
    if mean is not None:
        batch = batch + torch.tensor(mean).view(1, -1, 1, 1)
    return batch


def safe_stem(name: str, used: set[str]) -> str:
    match = re.fullmatch(r"(.*)\[(\d+)\]", name)  # sample i of a batched tensor file
    stem = f"{Path(match.group(1)).stem}_{match.group(2)}" if match else Path(name).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "input"
    candidate, k = stem, 1
    while candidate in used:
        k += 1
        candidate = f"{stem}_{k}"
    used.add(candidate)
    return candidate


def write_image_png(image: torch.Tensor, path: Path) -> None:
    """Write (3, H, W) float in [0, 1], enlarged (nearest) when small."""
    from torchvision.io import write_png

    from foxcem.viz import enlarge, to_uint8

    write_png(to_uint8(enlarge(image, MIN_PNG_SIZE)).cpu(), str(path))


def jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return repr(value)
