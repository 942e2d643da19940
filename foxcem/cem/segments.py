"""Segment space: δ as one value per segment and channel, expanded to the positions of the segment.

The URV estimate's variance grows with the number of values d it estimates, so on large images a
black-box CEM is run over segments (superpixels) instead of pixels: with a 28×28 grid on a
224×224 image d is 784 per channel, as for MNIST. On tables, segments are feature groups that
change together (a one-hot block of a categorical column). What a segment value means:

* PN: a value added to every position of the segment (each stays inside its box: the feature
  range, and away from the no-information value);
* PP: the fraction in [0, 1] of the segment that is kept: the model sees ``v + θ·(x − v)``.

The segmentations (``"grid:K"``, ``"slic:K"``, ``"watershed:K"``, label maps, feature groups)
are those of :mod:`foxcem.core.segments`, renumbered densely per sample.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from foxcem.cem.evaluation import SampleIndex, select_rows
from foxcem.core.segments import (
    SegmentsLike,
    dense_labels,
    grid_labels,
    resolve_labels,
    slic_labels,
)

__all__ = [
    "SegmentSpace",
    "Segments",
    "SegmentsLike",
    "dense_labels",
    "grid_labels",
    "resolve_segments",
    "segment_bounds",
    "slic_labels",
]


class Segments:
    """A segmentation of a batch: labels (N, *positions) in 0 … S−1, and the layout.

    Args:
        labels: (N, *positions) integer labels (positions: (H, W) for images, (T,) for
            sequences, (F,) for tables).
        channel_dim: the channel dimension of the inputs (1, or the last for (N, H, W, C)
            images); ``None`` for a table (N, F), which has none (one virtual channel).
    """

    def __init__(self, labels: torch.Tensor, channel_dim: Optional[int]) -> None:
        self.labels = labels.long()
        self.count = int(self.labels.max()) + 1
        self.channel_dim = channel_dim
        self.positions = tuple(self.labels.shape[1:])
        # One map for every sample (a grid): expanding is a cheap index_select along S.
        shared = bool((self.labels == self.labels[:1]).all())
        self.shared = self.labels[0].reshape(-1) if shared else None

    def shape(self, x: torch.Tensor) -> tuple[int, int]:
        """The shape of one sample's segment values: (C, S) (C = 1 for a table)."""
        channels = 1 if self.channel_dim is None else x.shape[self.channel_dim]
        return (channels, self.count)

    def expand(self, theta: torch.Tensor, samples: Optional[torch.Tensor]) -> torch.Tensor:
        """Segment values (*L, n, C, S) to the inputs' shape (*L, n, …)."""
        lead = theta.shape[:-2]
        channels = theta.shape[-2]
        if self.shared is not None:
            values = theta.index_select(-1, self.shared)
        else:
            labels = self.labels if samples is None else self.labels[samples]
            n = labels.shape[0]
            flat = theta.reshape((-1, n, channels, self.count))
            index = labels.reshape(1, n, 1, -1).expand(flat.shape[0], n, channels, -1)
            values = flat.gather(-1, index)
        values = values.reshape(lead + (channels, *self.positions))
        if self.channel_dim is None:
            return values.squeeze(-len(self.positions) - 1)
        if self.channel_dim == 1:
            return values
        return values.movedim(-len(self.positions) - 1, -1)

    def extreme(self, values: torch.Tensor, largest: bool) -> torch.Tensor:
        """Per segment and channel, the largest (or smallest) value of ``values`` (N, …): (N, C, S)."""
        if self.channel_dim is None:
            values = values.unsqueeze(1)
        elif self.channel_dim != 1:
            values = values.movedim(-1, 1)
        n, channels = values.shape[:2]
        flat = values.reshape(n, channels, -1)
        index = self.labels.reshape(n, 1, -1).expand(n, channels, -1)
        fill = -math.inf if largest else math.inf
        out = torch.full((n, channels, self.count), fill, dtype=flat.dtype, device=flat.device)
        out = out.scatter_reduce(-1, index, flat, reduce="amax" if largest else "amin")
        return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def resolve_segments(
    spec: SegmentsLike, x: torch.Tensor, channel_dim: Optional[int]
) -> Optional[Segments]:
    """A :class:`Segments` for ``x`` (see :func:`foxcem.core.segments.resolve_labels`): a table
    (N, F) has no channel dimension, whatever ``channel_dim`` says."""
    channel = None if x.dim() == 2 else channel_dim
    labels = resolve_labels(spec, x, channel)
    return None if labels is None else Segments(labels, channel)


def segment_bounds(
    mode: str, segments: Segments, pixel_lower: torch.Tensor, pixel_upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the segment values (N, C, S): PP keeps a fraction in [0, 1]; a PN value spans
    the segment's box (each position is clipped to its own box when expanded)."""
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
