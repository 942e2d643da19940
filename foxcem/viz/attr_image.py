"""One attribution drawn over its image, in the spirit of Captum's ``visualize_image_attr``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import torch

from foxcem.core.checks import check_choice
from foxcem.viz.figures import add_colorbar, class_name, require_matplotlib, show_heatmap
from foxcem.viz.images import SIGNS, normalize_attribution

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["METHODS", "unnormalize", "visualize_image_attr"]

#: What :func:`visualize_image_attr` can draw (Captum's names).
METHODS = ("heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling")


def unnormalize(
    image: torch.Tensor, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> torch.Tensor:
    """A (C, H, W) model input back in display space: ``image · std + mean`` per channel."""
    if std is not None:
        image = image * torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    if mean is not None:
        image = image + torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    return image


def visualize_image_attr(
    attr: torch.Tensor,
    original_image: Optional[torch.Tensor] = None,
    method: str = "blended_heat_map",
    sign: str = "absolute",
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    alpha_overlay: float = 0.5,
    clip_percentile: float = 99.0,
    show_colorbar: bool = True,
    title: Optional[str] = None,
    target: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    plt_fig_axis: Optional[tuple[Any, Any]] = None,
    fig_size: tuple[float, float] = (4.0, 4.0),
) -> tuple[Figure, Any]:
    """Draw one attribution, alone or over the image it explains.

    Args:
        attr: the attribution, (C, H, W), (H, W) or (1, C, H, W); channels are summed
            (:func:`~foxcem.viz.normalize_attribution`), a layer's map is drawn at its size.
        original_image: the explained input (C, H, W) as the model saw it (needed by every
            method but ``heat_map``); drawn un-normalised with ``mean``/``std``.
        method: ``"heat_map"``, ``"blended_heat_map"`` (the heatmap over the greyscale image),
            ``"original_image"``, ``"masked_image"`` (the image times the attribution's
            magnitude), ``"alpha_scaling"`` (the image with the magnitude as opacity).
        sign: ``"absolute"``, ``"positive"``, ``"negative"`` (sequential colormap from 0) or
            ``"all"`` (diverging colormap, blue negative, red positive, centred on 0).
        mean, std: per-channel normalisation of ``original_image`` to undo for display.
        alpha_overlay: opacity of the heatmap in ``blended_heat_map``.
        clip_percentile: the magnitude percentile that maps to full colour.
        show_colorbar: add a colorbar for the heatmap methods.
        title: the panel's title (default: the method, and ``target`` when given).
        target: the explained class, named with ``class_names`` in the default title.
        class_names: names of the classes.
        plt_fig_axis: ``(figure, axes)`` to draw into (default: a new figure without pyplot).
        fig_size: size of a new figure in inches.

    Returns:
        ``(figure, axes)``.

    Raises:
        ValueError: an unknown ``method`` or ``sign``, a method that needs ``original_image``
            without one, or an attribution whose size differs from the image's.
    """
    check_choice(method, "method", METHODS)
    check_choice(sign, "sign", SIGNS)
    if plt_fig_axis is None:
        Figure = require_matplotlib()
        fig = Figure(figsize=fig_size, layout="constrained")
        ax = fig.subplots()
    else:
        fig, ax = plt_fig_axis
    attr = torch.as_tensor(attr).detach().cpu().float()
    if attr.dim() == 4:
        attr = attr[0]
    image = None
    if original_image is not None:
        image = unnormalize(torch.as_tensor(original_image).detach().cpu().float(), mean, std)
        if image.dim() == 4:
            image = image[0]
    elif method != "heat_map":
        raise ValueError(f"`original_image` is needed for method={method!r}")
    if image is not None and method != "original_image" and attr.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"`attr` has the spatial size {tuple(attr.shape[-2:])}, the image "
            f"{tuple(image.shape[-2:])}; upsample the attribution first"
        )
    mappable = None
    if method in ("heat_map", "blended_heat_map"):
        if method == "blended_heat_map":
            assert image is not None
            grey = image.mean(dim=0).clamp(0, 1) if image.max() <= 1 else image.mean(dim=0)
            ax.imshow(grey.numpy(), cmap="gray", interpolation="nearest")
        mappable = show_heatmap(
            ax, attr, sign, clip_percentile, alpha=alpha_overlay if image is not None else 1.0
        )
    else:
        assert image is not None
        weight = normalize_attribution(
            attr.unsqueeze(0), sign=sign, clip_percentile=clip_percentile
        )
        weight = weight[0].abs().clamp(0, 1)
        picture = image.clamp(0, 1) if method != "masked_image" else (image * weight).clamp(0, 1)
        rgba = picture.expand(3, -1, -1) if picture.shape[0] == 1 else picture[:3]
        if method == "alpha_scaling":
            rgba = torch.cat([rgba, weight.unsqueeze(0)])
        ax.imshow(rgba.permute(1, 2, 0).numpy(), interpolation="nearest")
    if show_colorbar and mappable is not None:
        add_colorbar(fig, ax, mappable, sign)
    if title is None:
        title = method.replace("_", " ")
        if target is not None:
            title += f" · class {class_name(int(target), class_names)}"
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, ax
