"""Images to whatever loggers a Lightning ``Trainer`` has: TensorBoard, or any ``log_image``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import torch

try:
    from lightning.pytorch.loggers import TensorBoardLogger
except ImportError as exc:  # pragma: no cover - exercised by a test with Lightning hidden
    raise ImportError(
        "foxcem.integrations.lightning.image_logging needs PyTorch Lightning, which is not "
        "installed: pip install 'foxcem[lightning]'"
    ) from exc

from foxcem.viz.images import to_uint8

__all__ = ["log_images", "save_pngs"]


def log_images(
    loggers: Iterable[Any], tag: str, images: Mapping[str, torch.Tensor], step: int
) -> Iterator[tuple[str, str]]:
    """Log ``images["grid"]`` (3, H, W) and ``images["heatmaps"]`` (N, 3, H, W) under ``tag``.

    TensorBoard gets both (``add_image``/``add_images``); a logger with ``log_image`` (W&B, Neptune,
    …) gets the grid. Yields ``(logger class name, problem)`` for each logger that could not
    take them, so the caller can warn once per logger.
    """
    for logger in loggers:
        name = type(logger).__name__
        if isinstance(logger, TensorBoardLogger):
            experiment = logger.experiment
            experiment.add_image(tag, images["grid"], global_step=step)
            experiment.add_images(
                f"{tag}/heatmaps", images["heatmaps"], global_step=step, dataformats="NCHW"
            )
        elif callable(getattr(logger, "log_image", None)):
            grid = images["grid"].permute(1, 2, 0).numpy()
            try:
                logger.log_image(key=tag, images=[grid], step=step)
            except TypeError as exc:
                yield name, f"{name}.log_image failed ({exc}); its images are skipped"
        else:
            yield name, f"{name} cannot log images; they are skipped (the PNGs are still saved)"


def save_pngs(
    folder: Path,
    images: Mapping[str, torch.Tensor],
    attributions: Optional[torch.Tensor],
    samples: Optional[torch.Tensor],
    sign: str,
    title: str,
) -> None:
    """``grid.png`` and one ``overlay_<i>.png`` per sample (torchvision), and with matplotlib one
    ``figure_<i>.png`` per sample: its attribution over it with a colorbar."""
    from torchvision.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    write_png(to_uint8(images["grid"]), str(folder / "grid.png"))
    for i, blended in enumerate(images["overlays"]):
        write_png(to_uint8(blended), str(folder / f"overlay_{i:03d}.png"))
    if attributions is None or samples is None:
        return
    try:
        from foxcem.viz import visualize_image_attr
    except ImportError:  # pragma: no cover - matplotlib comes with captum
        return
    for i, attr in enumerate(attributions):
        if attr.dim() != 3 or attr.shape[-2:] != samples.shape[-2:]:
            return  # a layer's map: the PNGs above show it
        fig, _ = visualize_image_attr(attr, samples[i], sign=sign, title=title)
        fig.savefig(folder / f"figure_{i:03d}.png", dpi=80)
