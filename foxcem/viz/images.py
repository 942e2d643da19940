"""Attributions as images, in pure torch: usable anywhere (TensorBoard, PNG files) with no
plotting library."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F

from foxcem.core.checks import check_choice

__all__ = [
    "SIGNS",
    "attribution_scale",
    "normalize_attribution",
    "apply_colormap",
    "attribution_to_rgb",
    "overlay",
    "to_uint8",
    "enlarge",
    "explanation_images",
]

#: Accepted values of ``sign``.
SIGNS = ("absolute", "positive", "negative", "all")

# Small built-in colormaps: anchor colours, linearly interpolated (close to matplotlib's
# "inferno" and "RdBu_r"), so that no plotting library is needed to colour a heatmap.
_SEQUENTIAL = (
    (0.001, 0.000, 0.014),
    (0.258, 0.039, 0.406),
    (0.578, 0.148, 0.404),
    (0.865, 0.317, 0.226),
    (0.988, 0.645, 0.040),
    (0.988, 0.998, 0.645),
)
_DIVERGING = (
    (0.020, 0.188, 0.380),
    (0.263, 0.576, 0.765),
    (0.820, 0.898, 0.941),
    (0.969, 0.969, 0.969),
    (0.992, 0.859, 0.780),
    (0.839, 0.376, 0.302),
    (0.404, 0.000, 0.122),
)
_COLORMAPS = {"sequential": _SEQUENTIAL, "diverging": _DIVERGING}


def _as_batch_of_maps(attributions: torch.Tensor, name: str = "attributions") -> torch.Tensor:
    """(N, C, H, W) -> channel sum (N, H, W); (N, H, W) kept; (H, W) -> (1, H, W)."""
    if not isinstance(attributions, torch.Tensor):
        attributions = torch.as_tensor(attributions)
    if attributions.dim() == 4:
        return attributions.sum(dim=1)
    if attributions.dim() == 3:
        return attributions
    if attributions.dim() == 2:
        return attributions.unsqueeze(0)
    raise ValueError(
        f"`{name}` must be (N, C, H, W), (N, H, W) or (H, W), got shape {tuple(attributions.shape)}"
    )


def attribution_scale(
    attributions: torch.Tensor, sign: str = "absolute", clip_percentile: float = 99.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The channel-summed map of the selected sign and its display scale, per sample.

    Args:
        attributions: a real tensor, (N, C, H, W), (N, H, W) or (H, W).
        sign: ``"absolute"`` (``|a|``), ``"positive"`` (``max(a, 0)``), ``"negative"`` (the
            magnitude ``max(−a, 0)``) or ``"all"`` (``a`` itself).
        clip_percentile: in (0, 100]: the scale is this percentile of the non-zero magnitudes.

    Returns:
        ``(values, scales)``: float32 (N, H, W) and (N,) (0 for a map with nothing to show).
    """
    check_choice(sign, "sign", SIGNS)
    if isinstance(clip_percentile, bool) or not isinstance(clip_percentile, (int, float)):
        raise TypeError(f"`clip_percentile` must be a number, got {type(clip_percentile).__name__}")
    if not 0.0 < float(clip_percentile) <= 100.0:
        raise ValueError(f"`clip_percentile` must be in (0, 100], got {clip_percentile}")
    maps = _as_batch_of_maps(attributions).detach()
    if maps.is_complex():
        raise TypeError("`attributions` must be real")
    maps = maps.float()
    if sign == "absolute":
        values = maps.abs()
    elif sign == "positive":
        values = maps.clamp(min=0)
    elif sign == "negative":
        values = (-maps).clamp(min=0)
    else:
        values = maps
    magnitudes = values.abs().flatten(1)
    q = float(clip_percentile) / 100.0
    scales = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    for i, row in enumerate(magnitudes):
        nonzero = row[row > 0]
        if nonzero.numel() > 0:
            scales[i] = torch.quantile(nonzero.double(), q).to(values.dtype)
    return values, scales


def normalize_attribution(
    attributions: torch.Tensor,
    sign: str = "absolute",
    clip_percentile: float = 99.0,
) -> torch.Tensor:
    """Reduce channels, keep one sign, clip outliers and scale each map to a fixed range.

    Steps, per sample:

    1. channels are summed: (N, C, H, W) -> (N, H, W) (an (N, H, W) input is used as is, an
       (H, W) input becomes (1, H, W));
    2. ``sign`` selects what is shown: ``"absolute"`` the magnitude ``|a|``, ``"positive"`` the
       positive part ``max(a, 0)``, ``"negative"`` the magnitude of the negative part
       ``max(-a, 0)``, ``"all"`` the signed value ``a``;
    3. the scale is the ``clip_percentile``-th percentile (linear interpolation, as
       ``numpy.percentile``) of the non-zero magnitudes of the selected values; values are
       divided by it and clipped, so the top ``100 - clip_percentile`` percent saturate
       (:func:`attribution_scale` gives the map and the scale themselves).

    A map with nothing to show (e.g. no positive value for ``"positive"``) becomes all zeros.

    Args:
        attributions: a real tensor, (N, C, H, W), (N, H, W) or (H, W).
        sign: one of ``"absolute"``, ``"positive"``, ``"negative"``, ``"all"``.
        clip_percentile: in (0, 100]; 100 scales by the maximum (no clipping).

    Returns:
        A float32 tensor (N, H, W) on the input's device, in [0, 1], or in [-1, 1] for
        ``sign="all"``.
    """
    values, scales = attribution_scale(attributions, sign, clip_percentile)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales)).view(-1, 1, 1)
    low = -1.0 if sign == "all" else 0.0
    out = (values / safe).clamp(low, 1.0)
    return torch.where((scales > 0).view(-1, 1, 1), out, torch.zeros_like(out))


def apply_colormap(values: torch.Tensor, kind: str = "sequential") -> torch.Tensor:
    """Colour scalar maps with a small built-in colormap.

    Args:
        values: (N, H, W) (or (H, W)); in [0, 1] for ``"sequential"`` (an inferno-like map), in
            [-1, 1] for ``"diverging"`` (blue - white - red, like RdBu_r). Values outside are
            clipped.
        kind: ``"sequential"`` or ``"diverging"``.

    Returns:
        (N, 3, H, W) float32 RGB in [0, 1].
    """
    if kind not in _COLORMAPS:
        raise ValueError(f"`kind` must be one of {sorted(_COLORMAPS)}, got {kind!r}")
    maps = _as_batch_of_maps(values, "values").float()
    if kind == "diverging":
        maps = (maps.clamp(-1.0, 1.0) + 1.0) / 2.0
    else:
        maps = maps.clamp(0.0, 1.0)
    anchors = torch.tensor(_COLORMAPS[kind], dtype=torch.float32, device=maps.device)
    position = maps * (len(anchors) - 1)
    lower = position.floor().long().clamp(max=len(anchors) - 2)
    frac = (position - lower).unsqueeze(-1)
    rgb = anchors[lower] * (1.0 - frac) + anchors[lower + 1] * frac  # (N, H, W, 3)
    return rgb.permute(0, 3, 1, 2).contiguous()


def attribution_to_rgb(
    attributions: torch.Tensor,
    sign: str = "absolute",
    clip_percentile: float = 99.0,
    size: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Attributions as RGB heatmaps, ready for TensorBoard or a PNG.

    :func:`normalize_attribution` followed by :func:`apply_colormap`: diverging colours for
    ``sign="all"``, sequential for the others.

    Args:
        attributions: (N, C, H, W), (N, H, W) or (H, W).
        sign, clip_percentile: as in :func:`normalize_attribution`.
        size: optional (H, W) to resize to (bilinear), e.g. a layer attribution to the input size.

    Returns:
        (N, 3, H, W) float32 in [0, 1].
    """
    maps = normalize_attribution(attributions, sign=sign, clip_percentile=clip_percentile)
    if size is not None:
        maps = _resize(maps.unsqueeze(1), size).squeeze(1)
    return apply_colormap(maps, "diverging" if sign == "all" else "sequential")


def _resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    size = (int(size[0]), int(size[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _image_to_rgb(image: torch.Tensor, rescale: Optional[bool] = None) -> torch.Tensor:
    """(N, 1|3, H, W), (N, H, W) or (H, W) -> (N, 3, H, W) float in [0, 1]."""
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(image)
    image = image.detach().float()
    if image.dim() == 2:
        image = image.unsqueeze(0).unsqueeze(0)
    elif image.dim() == 3:
        image = image.unsqueeze(1)
    if image.dim() != 4 or image.shape[1] not in (1, 3):
        raise ValueError(
            f"`image` must be (N, 1 or 3, H, W), (N, H, W) or (H, W), got shape {tuple(image.shape)}"
        )
    if rescale is None:
        rescale = bool(image.numel()) and (float(image.min()) < 0.0 or float(image.max()) > 1.0)
    if rescale:
        flat = image.flatten(1)
        low = flat.min(dim=1).values.view(-1, 1, 1, 1)
        high = flat.max(dim=1).values.view(-1, 1, 1, 1)
        image = (image - low) / (high - low).clamp(min=1e-12)
    image = image.clamp(0.0, 1.0)
    if image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)
    return image


def overlay(
    image: torch.Tensor,
    heatmap_rgb: torch.Tensor,
    alpha: float = 0.5,
    rescale: Optional[bool] = None,
    weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Blend RGB heatmaps over images: ``(1 - a) * image + a * heatmap``, ``a = alpha * weights``.

    Args:
        image: (N, 1 or 3, H, W), (N, H, W) or (H, W). Grey images are repeated to RGB.
        heatmap_rgb: (N, 3, h, w) in [0, 1], e.g. from :func:`attribution_to_rgb`; resized
            (bilinear) to the image's size when it differs.
        alpha: heatmap weight in [0, 1].
        rescale: min-max rescale each image to [0, 1] first; ``None`` (default) does it only when
            the values leave [0, 1] (e.g. a mean/std-normalised input).
        weights: optional per-pixel weights (N, h, w) in [0, 1], e.g. the magnitude
            ``normalize_attribution(a, sign).abs()``, so that pixels without attribution show the
            plain image; resized like the heatmap. ``None``: 1 everywhere.

    Returns:
        (N, 3, H, W) float32 in [0, 1].
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}")
    base = _image_to_rgb(image, rescale)
    if not isinstance(heatmap_rgb, torch.Tensor) or heatmap_rgb.dim() != 4:
        raise ValueError("`heatmap_rgb` must be a (N, 3, H, W) tensor")
    if heatmap_rgb.shape[1] != 3:
        raise ValueError(
            f"`heatmap_rgb` must have 3 channels, got shape {tuple(heatmap_rgb.shape)}"
        )
    if heatmap_rgb.shape[0] != base.shape[0]:
        raise ValueError(
            f"`image` has {base.shape[0]} samples but `heatmap_rgb` has {heatmap_rgb.shape[0]}"
        )
    heat = _resize(heatmap_rgb.detach().float().to(base.device), base.shape[-2:])
    blend: Union[float, torch.Tensor] = float(alpha)
    if weights is not None:
        w = _as_batch_of_maps(torch.as_tensor(weights), "weights").detach().float()
        if w.shape[0] != base.shape[0]:
            raise ValueError(f"`image` has {base.shape[0]} samples but `weights` has {w.shape[0]}")
        w = _resize(w.to(base.device).unsqueeze(1), base.shape[-2:]).clamp(0.0, 1.0)
        blend = alpha * w
    return ((1.0 - blend) * base + blend * heat).clamp(0.0, 1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 in [0, 255] (e.g. for ``torchvision.io.write_png``)."""
    return (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def enlarge(images: torch.Tensor, min_size: int) -> torch.Tensor:
    """Enlarge (C, H, W) or (N, C, H, W) images by the smallest integer factor (nearest
    neighbour) that makes the short side at least ``min_size``; larger ones are returned as is.

    Small inputs such as 8×8 digits stay crisp, pixel for pixel, in image viewers.
    """
    short = min(images.shape[-2:])
    if short >= min_size:
        return images
    factor = -(-min_size // short)
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    out = F.interpolate(batch, scale_factor=factor, mode="nearest")
    return out if images.dim() == 4 else out[0]


def explanation_images(
    x: torch.Tensor, attributions: torch.Tensor, sign: str = "absolute", min_size: int = 0
) -> dict[str, torch.Tensor]:
    """What a logger shows of a batch: ``heatmaps`` (N, 3, H, W), ``overlays`` (N, 3, H, W) and
    the ``grid`` (3, H', W') of inputs, heatmaps and overlays in three rows; float in [0, 1] on
    the CPU, each image enlarged (nearest) to at least ``min_size`` pixels."""
    from torchvision.utils import make_grid

    x = x.detach().float().cpu()
    attr = attributions.detach().float().cpu()
    size = tuple(x.shape[-2:]) if attr.dim() == 4 and attr.shape[0] == x.shape[0] else None
    heat = attribution_to_rgb(attr, sign=sign, size=size)
    inputs = overlay(x, torch.zeros_like(heat), alpha=0.0) if x.dim() == 4 else heat
    blended = overlay(x, heat, alpha=0.5) if x.dim() == 4 else heat
    inputs, heat, blended = (enlarge(t, min_size) for t in (inputs, heat, blended))
    grid = make_grid(torch.cat([inputs, heat, blended]), nrow=len(heat), padding=2, pad_value=1.0)
    return {"heatmaps": heat, "overlays": blended, "grid": grid}
