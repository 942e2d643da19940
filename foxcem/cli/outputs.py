"""What ``foxcem explain`` writes: file names, PNGs, JSON-safe options, un-normalised inputs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

__all__ = [
    "MIN_PNG_SIZE",
    "jsonable",
    "safe_stem",
    "unscale",
    "write_figures",
    "write_image_png",
]

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


def write_figures(
    output: Path,
    stems: Sequence[str],
    batch: torch.Tensor,
    attributions: torch.Tensor,
    *,
    method: str,
    sign: str,
    targets: torch.Tensor,
    mean: Optional[Sequence[float]],
    std: Optional[Sequence[float]],
    model: Any = None,
    cem: Optional[dict[str, Any]] = None,
) -> list[str]:
    """``<stem>_figure.png`` per input: the attribution over the un-normalised input with a
    colorbar (:func:`foxcem.viz.visualize_image_attr`), or for CEM the input, and its PP or
    x + PN with the new class, a sample without explanation drawn as such."""
    from foxcem.viz import plot_pp_pn, visualize_image_attr

    written = []
    for i, stem in enumerate(stems):
        path = output / f"{stem}_figure.png"
        if cem is not None:
            found = [bool(cem["found"][i])]
            key = "pp" if cem["mode"] == "PP" else "pn"
            fig = plot_pp_pn(
                batch[i : i + 1], model=model, mean=mean, std=std, panel_size=2.4,
                **{key: attributions[i : i + 1], f"found_{key}": found},
            )  # fmt: skip
        else:
            attr = attributions[i]
            method_name = "blended_heat_map" if attr.shape[-2:] == batch.shape[-2:] else "heat_map"
            fig, _ = visualize_image_attr(
                attr, batch[i], method_name, sign=sign, mean=mean, std=std,
                title=f"{method} · class {int(targets[i])}",
            )  # fmt: skip
        fig.savefig(path, dpi=100)
        written.append(path.name)
    return written
