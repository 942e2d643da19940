"""Segment space: δ as one value per segment and channel, expanded to the pixels of the segment.

The URV estimate's variance grows with the number of values d it estimates, so on large images a
black-box CEM is run over segments (superpixels) instead of pixels: with a 28×28 grid on a
224×224 image d is 784 per channel, as for MNIST. What a segment value means:

* PN: a value added to every pixel of the segment (the pixels stay inside their box: the feature
  range, and away from the no-information value);
* PP: the fraction in [0, 1] of the segment that is kept: the model sees ``v + θ·(x − v)``.

Segmentations: an integer label map per image (N, H, W) (or one (H, W) map for every image),
``"grid:K"`` (K×K equal blocks) or ``"slic:K"`` (about K SLIC superpixels, computed by
scikit-image: the ``slic`` extra). The labels of each image are renumbered densely, in their
order: labels {0, 5} become segments {0, 1}, so gaps and large label values cost nothing (the
work depends on the number of distinct labels only).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from foxcem.cem.evaluation import SampleIndex, select_rows

__all__ = [
    "SegmentSpace",
    "Segments",
    "dense_labels",
    "SegmentsLike",
    "grid_labels",
    "resolve_segments",
    "segment_bounds",
    "slic_labels",
]

SegmentsLike = Union[None, str, torch.Tensor]


def grid_labels(height: int, width: int, k: int, device: torch.device) -> torch.Tensor:
    """(H, W) labels of a k×k grid of (nearly) equal blocks, row-major."""
    rows = torch.div(torch.arange(height, device=device) * k, height, rounding_mode="floor")
    cols = torch.div(torch.arange(width, device=device) * k, width, rounding_mode="floor")
    return rows[:, None] * k + cols[None, :]


def slic_labels(images: torch.Tensor, k: int, channel_dim: int) -> torch.Tensor:
    """(N, H, W) SLIC superpixel labels (scikit-image), about k per image."""
    try:
        from skimage.segmentation import slic
    except ImportError as exc:
        raise ImportError(
            "segments='slic:K' needs scikit-image: pip install 'foxcem[slic]'"
        ) from exc
    pictures = images.detach().movedim(channel_dim, -1).double().cpu().numpy()
    labels = [
        torch.from_numpy(slic(p, n_segments=k, start_label=0, channel_axis=-1).astype("int64"))
        for p in pictures
    ]
    return torch.stack(labels).to(images.device)


def dense_labels(labels: torch.Tensor) -> torch.Tensor:
    """Each image's labels (N, H, W) renumbered 0 … S_i−1 in their order (int64)."""
    out = torch.empty(labels.shape, dtype=torch.long, device=labels.device)
    for index, image in enumerate(labels):
        _, inverse = torch.unique(image, return_inverse=True)
        out[index] = inverse.reshape(image.shape)
    return out


class Segments:
    """A segmentation of a batch: labels (N, H, W) in 0 … S−1, and the image layout.

    Args:
        labels: (N, H, W) integer labels.
        channel_dim: 1 (N, C, H, W) or 3 (N, H, W, C).
    """

    def __init__(self, labels: torch.Tensor, channel_dim: int) -> None:
        self.labels = labels.long()
        self.count = int(self.labels.max()) + 1
        self.channel_dim = channel_dim
        # One map for every image (a grid): expanding is a cheap index_select along S.
        shared = bool((self.labels == self.labels[:1]).all())
        self.shared = self.labels[0].reshape(-1) if shared else None

    def shape(self, x: torch.Tensor) -> tuple[int, int]:
        """The shape of one sample's segment values: (C, S)."""
        return (x.shape[self.channel_dim], self.count)

    def expand(self, theta: torch.Tensor, samples: Optional[torch.Tensor]) -> torch.Tensor:
        """Segment values (*L, n, C, S) to pixels (*L, n, C, H, W), or (*L, n, H, W, C)."""
        height, width = self.labels.shape[1:]
        lead = theta.shape[:-2]
        channels = theta.shape[-2]
        if self.shared is not None:
            pixels = theta.index_select(-1, self.shared)
        else:
            labels = self.labels if samples is None else self.labels[samples]
            n = labels.shape[0]
            flat = theta.reshape((-1, n, channels, self.count))
            index = labels.reshape(1, n, 1, height * width).expand(flat.shape[0], n, channels, -1)
            pixels = flat.gather(-1, index)
        pixels = pixels.reshape(lead + (channels, height, width))
        return pixels if self.channel_dim == 1 else pixels.movedim(-3, -1)

    def extreme(self, pixels: torch.Tensor, largest: bool) -> torch.Tensor:
        """Per segment and channel, the largest (or smallest) pixel value: (N, C, S)."""
        values = pixels if self.channel_dim == 1 else pixels.movedim(-1, 1)
        n, channels = values.shape[:2]
        flat = values.reshape(n, channels, -1)
        index = self.labels.reshape(n, 1, -1).expand(n, channels, -1)
        fill = -math.inf if largest else math.inf
        out = torch.full((n, channels, self.count), fill, dtype=flat.dtype, device=flat.device)
        out = out.scatter_reduce(-1, index, flat, reduce="amax" if largest else "amin")
        return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def resolve_segments(spec: SegmentsLike, x: torch.Tensor, channel_dim: int) -> Optional[Segments]:
    """A :class:`Segments` for ``x`` from a label map (N, H, W), ``"grid:K"`` or ``"slic:K"``.

    Label maps are renumbered densely per image (:func:`dense_labels`).

    Raises:
        ValueError: an input that is not an image batch, a malformed recipe, labels of the wrong
            shape or negative labels.
        TypeError: a ``segments`` of another type.
    """
    if spec is None:
        return None
    if x.dim() != 4:
        raise ValueError(f"`segments` needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
    spatial = [d for d in range(1, 4) if d != channel_dim]
    height, width = x.shape[spatial[0]], x.shape[spatial[1]]
    if isinstance(spec, str):
        kind, _, count = spec.partition(":")
        if kind not in ("grid", "slic") or not count.isdigit() or int(count) < 1:
            raise ValueError(f"`segments` must be 'grid:K' or 'slic:K' with K >= 1, got {spec!r}")
        k = int(count)
        if kind == "grid":
            if k > min(height, width):
                raise ValueError(f"`segments` grid:{k} is finer than the {height}x{width} image")
            labels = grid_labels(height, width, k, x.device).expand(x.shape[0], -1, -1)
        else:
            labels = dense_labels(slic_labels(x, k, channel_dim))
        return Segments(labels, channel_dim)
    if not isinstance(spec, torch.Tensor):
        raise TypeError(
            f"`segments` must be None, 'grid:K', 'slic:K' or a label tensor, "
            f"got {type(spec).__name__}"
        )
    if spec.is_floating_point() or spec.is_complex() or spec.dtype == torch.bool:
        raise TypeError(f"`segments` labels must be an integer tensor, got {spec.dtype}")
    if spec.dim() == 2:
        spec = spec.expand(x.shape[0], -1, -1)
    if tuple(spec.shape) != (x.shape[0], height, width):
        raise ValueError(
            f"`segments` labels must have shape (N, H, W) = ({x.shape[0]}, {height}, {width}), "
            f"got {tuple(spec.shape)}"
        )
    if int(spec.min()) < 0:
        raise ValueError("`segments` labels must be >= 0")
    return Segments(dense_labels(spec.to(x.device)), channel_dim)


def segment_bounds(
    mode: str, segments: Segments, pixel_lower: torch.Tensor, pixel_upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the segment values (N, C, S): PP keeps a fraction in [0, 1]; a PN value spans
    the segment's pixel box (each pixel is clipped to its own box when expanded)."""
    if mode == "PP":
        low = torch.zeros_like(segments.extreme(pixel_lower, largest=False))
        return low, torch.ones_like(low)
    return segments.extreme(pixel_lower, largest=False), segments.extreme(pixel_upper, largest=True)


class SegmentSpace:
    """δ as one value per segment and channel for ``mode``: its bounds, and δ in input space.

    Args:
        mode: ``"PP"`` or ``"PN"``.
        segments: the segmentation of the batch ``x``.
        x: the inputs (N, …); ``base``: what the model sees for δ = 0 (v for PP, x for PN).
        pixel_lower, pixel_upper: the box of the perturbation in input space (N, …).
    """

    def __init__(
        self,
        mode: str,
        segments: Segments,
        x: torch.Tensor,
        base: torch.Tensor,
        pixel_lower: torch.Tensor,
        pixel_upper: torch.Tensor,
    ) -> None:
        self.mode, self.segments = mode, segments
        self.kept = x - base  # PP: the segment value is the fraction of x − v kept
        self.pixel_lower, self.pixel_upper = pixel_lower, pixel_upper
        self.lower, self.upper = segment_bounds(mode, segments, pixel_lower, pixel_upper)
        # Where every pixel of a segment has the same box, clipping the segment value already
        # clips its pixels: the per-pixel clip is skipped.
        self.clip = mode == "PN" and not (
            torch.equal(segments.expand(self.lower, None), pixel_lower)
            and torch.equal(segments.expand(self.upper, None), pixel_upper)
        )

    def to_input(self, delta: torch.Tensor, samples: SampleIndex = None) -> torch.Tensor:
        """Segment values (*L, n, C, S) as a perturbation of the input's shape (PP: the kept
        fraction of x − v; PN: each pixel clipped to its box)."""
        n = self.kept.shape[0]
        index = None if samples is None else torch.arange(n, device=self.kept.device)[samples]
        pixels = self.segments.expand(delta, index)
        if self.mode == "PP":
            return pixels * select_rows(self.kept, samples)
        if not self.clip:
            return pixels
        low = select_rows(self.pixel_lower, samples)
        high = select_rows(self.pixel_upper, samples)
        return torch.minimum(torch.maximum(pixels, low), high)
