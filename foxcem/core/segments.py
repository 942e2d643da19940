"""Segmentations of a batch: which features move together.

A segmentation gives every position of a sample (every pixel of an image, every time step of a
sequence, every column of a table) a segment label; all channels of a position share it. Used by
CEM (one value per segment and channel instead of per feature) and by the perturbation methods
(one perturbed group per segment, Captum's ``feature_mask``).

* images (N, C, H, W) (or (N, H, W, C)): ``"grid:K"`` (K×K equal blocks), ``"slic:K"`` (about K
  SLIC superpixels, computed by scikit-image: the ``slic`` extra), ``"watershed:K"`` (about K
  compact watershed regions, scikit-image), or a label map (N, H, W) / (H, W);
* sequences (N, C, T): ``"grid:K"`` (K equal blocks of time steps) or labels (N, T) / (T,);
* tables (N, F): feature groups, labels (F,) or (N, F) — e.g. every one-hot block of a
  categorical column one group.

Labels are renumbered densely per sample, in their order (labels {0, 5} become segments {0, 1}),
so gaps and large label values cost nothing: the work depends on the number of distinct labels.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = [
    "SegmentsLike",
    "dense_labels",
    "grid_labels",
    "positions_shape",
    "resolve_labels",
    "slic_labels",
    "watershed_labels",
]

SegmentsLike = Union[None, str, torch.Tensor]
RECIPES = ("grid", "slic", "watershed")


def grid_labels(height: int, width: int, k: int, device: torch.device) -> torch.Tensor:
    """(H, W) labels of a k×k grid of (nearly) equal blocks, row-major."""
    rows = torch.div(torch.arange(height, device=device) * k, height, rounding_mode="floor")
    cols = torch.div(torch.arange(width, device=device) * k, width, rounding_mode="floor")
    return rows[:, None] * k + cols[None, :]


def _pictures(images: torch.Tensor, channel_dim: int) -> list:
    return list(images.detach().movedim(channel_dim, -1).double().cpu().numpy())


def _skimage(recipe: str) -> object:
    try:
        import skimage.segmentation as segmentation
    except ImportError as exc:
        raise ImportError(
            f"segments='{recipe}:K' needs scikit-image: pip install 'foxcem[slic]'"
        ) from exc
    return segmentation


def slic_labels(images: torch.Tensor, k: int, channel_dim: int) -> torch.Tensor:
    """(N, H, W) SLIC superpixel labels (scikit-image), about k per image."""
    slic = _skimage("slic").slic  # type: ignore[attr-defined]
    labels = [
        torch.from_numpy(slic(p, n_segments=k, start_label=0, channel_axis=-1).astype("int64"))
        for p in _pictures(images, channel_dim)
    ]
    return torch.stack(labels).to(images.device)


def watershed_labels(images: torch.Tensor, k: int, channel_dim: int) -> torch.Tensor:
    """(N, H, W) compact watershed regions (scikit-image) on each image's gradient magnitude,
    from about k evenly spaced markers."""
    segmentation = _skimage("watershed")
    from skimage.filters import sobel

    labels = []
    for picture in _pictures(images, channel_dim):
        gradient = sobel(picture.mean(axis=-1))
        found = segmentation.watershed(gradient, markers=k, compactness=0.001)  # type: ignore[attr-defined]
        labels.append(torch.from_numpy(found.astype("int64")))
    return torch.stack(labels).to(images.device)


def dense_labels(labels: torch.Tensor) -> torch.Tensor:
    """Each sample's labels (N, …) renumbered 0 … S_i−1 in their order (int64)."""
    out = torch.empty(labels.shape, dtype=torch.long, device=labels.device)
    for index, sample in enumerate(labels):
        _, inverse = torch.unique(sample, return_inverse=True)
        out[index] = inverse.reshape(sample.shape)
    return out


def positions_shape(x: torch.Tensor, channel_dim: Optional[int]) -> tuple[int, ...]:
    """The positions of one sample that a segmentation labels: all dimensions but the batch and
    the channel one (a table (N, F) has no channel dimension: ``channel_dim`` None)."""
    return tuple(s for d, s in enumerate(x.shape) if d != 0 and d != channel_dim)


def resolve_labels(
    spec: SegmentsLike, x: torch.Tensor, channel_dim: Optional[int]
) -> Optional[torch.Tensor]:
    """Dense segment labels (N, *positions) for the batch ``x`` from ``spec`` (see the module).

    Args:
        spec: ``None``, a recipe (``"grid:K"``, ``"slic:K"``, ``"watershed:K"``) or labels.
        x: the batch.
        channel_dim: its channel dimension (1, or the last for (N, H, W, C) images), ``None``
            for a table (N, F).

    Raises:
        ValueError: a malformed recipe, one that does not apply to this input, labels of the
            wrong shape or negative labels.
        TypeError: a ``segments`` of another type.
    """
    if spec is None:
        return None
    positions = positions_shape(x, channel_dim)
    n = x.shape[0]
    if isinstance(spec, str):
        kind, _, count = spec.partition(":")
        if kind not in RECIPES or not count.isdigit() or int(count) < 1:
            raise ValueError(
                f"`segments` must be 'grid:K', 'slic:K' or 'watershed:K' with K >= 1, got {spec!r}"
            )
        k = int(count)
        if kind == "grid" and len(positions) == 2:
            height, width = positions
            if k > min(height, width):
                raise ValueError(f"`segments` grid:{k} is finer than the {height}x{width} image")
            return grid_labels(height, width, k, x.device).expand(n, -1, -1).clone()
        if kind == "grid" and len(positions) == 1 and channel_dim is not None:
            (length,) = positions
            if k > length:
                raise ValueError(f"`segments` grid:{k} is finer than the {length} steps")
            steps = torch.div(
                torch.arange(length, device=x.device) * k, length, rounding_mode="floor"
            )
            return steps.expand(n, -1).clone()
        if kind in ("slic", "watershed") and x.dim() == 4:
            finder = slic_labels if kind == "slic" else watershed_labels
            assert channel_dim is not None
            return dense_labels(finder(x, k, channel_dim))
        what = "images (N, C, H, W)" if kind != "grid" else "images or sequences (N, C, T)"
        raise ValueError(
            f"`segments` {spec!r} applies to {what}; for inputs of shape {tuple(x.shape)} give "
            "labels (feature groups)"
        )
    if not isinstance(spec, torch.Tensor):
        raise TypeError(
            f"`segments` must be None, 'grid:K', 'slic:K', 'watershed:K' or a label tensor, "
            f"got {type(spec).__name__}"
        )
    if spec.is_floating_point() or spec.is_complex() or spec.dtype == torch.bool:
        raise TypeError(f"`segments` labels must be an integer tensor, got {spec.dtype}")
    if tuple(spec.shape) == positions:
        spec = spec.expand(n, *positions)
    if tuple(spec.shape) != (n, *positions):
        raise ValueError(
            f"`segments` labels must have shape {positions} or {(n, *positions)} (one label per "
            f"position of a sample), got {tuple(spec.shape)}"
        )
    if int(spec.min()) < 0:
        raise ValueError("`segments` labels must be >= 0")
    return dense_labels(spec.to(x.device))
