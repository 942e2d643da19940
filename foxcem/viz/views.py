"""Views of a CEM explanation: denoised (faint entries and specks removed) and as a contour over
the image.

:func:`denoise` keeps the entries of δ above a fraction of its largest magnitude and, of those,
only the ones with at least ``min_neighbours`` kept neighbours (3×3), which removes isolated
specks. :func:`plot_contour` draws the image in grey and the outline of where δ acts in colour —
readable where an overlay would hide the image.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from foxcem.core.checks import check_finite_float
from foxcem.viz.figures import NEGATIVE, POSITIVE, require_matplotlib

__all__ = ["denoise", "plot_contour"]


def denoise(delta: torch.Tensor, fraction: float = 0.1, min_neighbours: int = 1) -> torch.Tensor:
    """δ (N, C, H, W) with faint entries (below ``fraction`` of each sample's largest magnitude)
    and isolated ones (fewer than ``min_neighbours`` kept neighbours among the 8) set to 0."""
    if not isinstance(delta, torch.Tensor) or delta.dim() != 4:
        raise ValueError("`delta` must be a tensor (N, C, H, W)")
    fraction = check_finite_float(fraction, "fraction", minimum=0.0)
    if not isinstance(min_neighbours, int) or isinstance(min_neighbours, bool):
        raise TypeError(f"`min_neighbours` must be an int, got {type(min_neighbours).__name__}")
    if not 0 <= min_neighbours <= 8:
        raise ValueError(f"`min_neighbours` must be between 0 and 8, got {min_neighbours}")
    magnitude = delta.abs().amax(1, keepdim=True)
    peak = magnitude.flatten(1).amax(1).view(-1, 1, 1, 1)
    kept = (magnitude > fraction * peak).to(delta.dtype)
    if min_neighbours > 0:
        kernel = torch.ones(1, 1, 3, 3, dtype=delta.dtype, device=delta.device)
        kernel[0, 0, 1, 1] = 0
        neighbours = F.conv2d(kept, kernel, padding=1)
        kept = kept * (neighbours >= min_neighbours).to(delta.dtype)
    return delta * kept


def plot_contour(
    image: torch.Tensor,
    delta: torch.Tensor,
    fraction: float = 0.1,
    title: Optional[str] = None,
    ax: Any = None,
) -> Any:
    """One image (C, H, W) or (1, C, H, W) in grey with the outline of δ's support: where δ
    adds (red) and where it removes (blue), above ``fraction`` of its largest magnitude.
    Returns the matplotlib figure."""
    figure_class = require_matplotlib()
    image = image[0] if image.dim() == 4 else image
    delta = delta[0] if delta.dim() == 4 else delta
    if image.shape[1:] != delta.shape[1:]:
        raise ValueError(
            f"`image` {tuple(image.shape)} and `delta` {tuple(delta.shape)} differ in size"
        )
    if ax is None:
        fig = figure_class(figsize=(3, 3))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.imshow(image.detach().float().mean(0).cpu(), cmap="gray")
    signed = delta.detach().float().sum(0).cpu()
    level = fraction * float(signed.abs().max()) if float(signed.abs().max()) > 0 else None
    if level is not None:
        for values, colour in ((signed, POSITIVE), (-signed, NEGATIVE)):
            if float(values.max()) > level:
                rgb = tuple(c / 255 for c in colour)
                ax.contour(values, levels=[level], colors=[rgb], linewidths=1.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig
