"""From files to the batch the model sees: greyscale, resize, centre crop, normalise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F

from foxcem.cli.errors import CLIError

__all__ = ["preprocess"]


def _resize_shorter(tensor: torch.Tensor, side: int) -> torch.Tensor:
    """Resize so that the shorter side is ``side``, keeping the aspect ratio (torchvision's
    ``Resize(int)``)."""
    height, width = tensor.shape[-2:]
    scale = side / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)


def _center_crop(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    height, width = tensor.shape[-2:]
    if size[0] > height or size[1] > width:
        raise CLIError(
            f"--center-crop {size[0]},{size[1]} is larger than the image ({height}x{width}); "
            "--resize first"
        )
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return tensor[..., top : top + size[0], left : left + size[1]]


def preprocess(
    tensors: Sequence[torch.Tensor],
    grayscale: bool = False,
    size: Optional[tuple[int, int]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    resize: Optional[int] = None,
    center_crop: Optional[tuple[int, int]] = None,
    rgb: bool = False,
) -> torch.Tensor:
    """Greyscale (or, with ``rgb``, grey to three channels), resize (``resize``: shorter side,
    aspect kept, then ``center_crop``; or ``size``: exactly H×W) and normalise each (n, C, H, W)
    tensor, then concatenate them.

    Raises:
        CLIError: inconsistent shapes or a mean/std of the wrong length (one line).
    """
    out = []
    for tensor in tensors:
        if rgb and tensor.shape[1] == 1:
            tensor = tensor.expand(-1, 3, -1, -1)
        elif rgb and tensor.shape[1] != 3:
            raise CLIError(f"--rgb needs 1 or 3 channels, got {tensor.shape[1]}")
        if grayscale and tensor.shape[1] == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            tensor = (tensor * weights).sum(dim=1, keepdim=True)
        elif grayscale and tensor.shape[1] != 1:
            raise CLIError(f"--grayscale needs 1 or 3 channels, got {tensor.shape[1]}")
        if resize is not None:
            tensor = _resize_shorter(tensor, resize)
        if center_crop is not None:
            tensor = _center_crop(tensor, center_crop)
        if size is not None and tuple(tensor.shape[-2:]) != size:
            tensor = F.interpolate(
                tensor, size=size, mode="bilinear", antialias=True, align_corners=False
            )
        out.append(tensor)
    shapes = {tuple(t.shape[1:]) for t in out}
    if len(shapes) > 1:
        listed = ", ".join(str(s) for s in sorted(shapes))
        raise CLIError(
            f"inputs have different shapes {listed}; use --resize N --center-crop N "
            "(or --size H,W) and --grayscale"
        )
    batch = torch.cat(out)
    channels = batch.shape[1]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise CLIError(
                f"{name} has {len(values)} values but the inputs have {channels} channels"
            )
    if std is not None and any(v == 0 for v in std):
        raise CLIError("--std must not contain zeros")
    if mean is not None:
        batch = batch - torch.tensor(mean).view(1, -1, 1, 1)
    if std is not None:
        batch = batch / torch.tensor(std).view(1, -1, 1, 1)
    return batch.contiguous()
