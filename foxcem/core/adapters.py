"""Adapters for :class:`~foxcem.InferenceWrapper`: a segmentation model's mask as class scores
(a quantizer), and one region of a large image explained inside it (a preprocess).

Segmentation::

    wrapper = InferenceWrapper(segmenter, quantizer=SegmentationConfidence())
    pn = CEMExplainer().calculate_features(wrapper, images, mode="PN")

One tile of a whole-slide image (only the tile varies; the model sees the whole image)::

    region = SelectiveRegion(slide, top=512, left=1024, height=224, width=224)
    wrapper = InferenceWrapper(model, preprocess=region)
    pn = CEMExplainer().calculate_features(wrapper, region.crop(slide), mode="PN")

Both are torch modules built from differentiable operations: with a torch model, gradient
methods pass through them; with a NumPy model they run on the tensor before / after it.
"""

from __future__ import annotations

import torch
from torch import nn

from foxcem.core.checks import check_bool, check_choice, check_positive_int

__all__ = ["SegmentationConfidence", "SelectiveRegion"]


class SegmentationConfidence(nn.Module):
    """A segmentation model's output (N, K, H, W) (per-pixel class scores) to class scores
    (N, K): how much of the image each class takes, as a probability vector.

    Args:
        method: ``"mean"`` (default): the mean over pixels of each class's softmax probability
            (differentiable; each row sums to 1); ``"area"``: the share of pixels whose most
            likely class it is (piecewise constant: for black-box methods only).
        logits: whether the output is logits (default True; softmax over K is taken) or already
            probabilities.
    """

    def __init__(self, method: str = "mean", logits: bool = True) -> None:
        super().__init__()
        self.method = check_choice(method, "method", ["mean", "area"])
        self.logits = check_bool(logits, "logits")

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() < 3:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise ValueError(
                "SegmentationConfidence takes per-pixel class scores (N, K, H, W) or (N, K, L), "
                f"got {shape}"
            )
        probabilities = output.softmax(1) if self.logits else output
        if self.method == "mean":
            return probabilities.flatten(2).mean(2)
        winners = probabilities.argmax(1).flatten(1)
        counts = nn.functional.one_hot(winners, probabilities.shape[1]).sum(1)
        return counts.to(probabilities.dtype) / winners.shape[1]

    def extra_repr(self) -> str:
        return f"method={self.method!r}, logits={self.logits}"


class SelectiveRegion(nn.Module):
    """Explain one region of a larger image: the input (N, C, height, width) is pasted into
    ``image`` at (``top``, ``left``) and the whole image goes on to the model.

    Args:
        image: the full image (C, H, W) or (1, C, H, W) (the rest of the scene, held fixed).
        top, left, height, width: the region, in pixels, inside the image.
    """

    def __init__(self, image: torch.Tensor, top: int, left: int, height: int, width: int) -> None:
        super().__init__()
        if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
            raise ValueError("`image` must be a tensor (C, H, W) or (1, C, H, W)")
        image = image if image.dim() == 4 else image.unsqueeze(0)
        if image.shape[0] != 1:
            raise ValueError(f"`image` must hold one image, got a batch of {image.shape[0]}")
        for name, value in (("top", top), ("left", left)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
        self.top, self.left = top, left
        self.height = check_positive_int(height, "height")
        self.width = check_positive_int(width, "width")
        full_h, full_w = image.shape[2:]
        if not (0 <= self.top and self.top + self.height <= full_h):
            raise ValueError(f"`top` {top} + `height` {height} leaves the image's {full_h} rows")
        if not (0 <= self.left and self.left + self.width <= full_w):
            raise ValueError(f"`left` {left} + `width` {width} leaves the image's {full_w} columns")
        self.register_buffer("image", image.detach().clone())

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        """The region of ``image`` (C, H, W) or (N, C, H, W), as a batch (N, C, height, width)."""
        image = image if image.dim() == 4 else image.unsqueeze(0)
        return image[..., self.top : self.top + self.height, self.left : self.left + self.width]

    def forward(self, region: torch.Tensor) -> torch.Tensor:
        expected = (self.image.shape[1], self.height, self.width)
        if region.dim() != 4 or tuple(region.shape[1:]) != expected:
            raise ValueError(
                f"SelectiveRegion takes regions (N, {expected[0]}, {self.height}, {self.width}), "
                f"got {tuple(region.shape)}"
            )
        full = self.image.to(region.dtype).expand(len(region), -1, -1, -1)
        rows = slice(self.top, self.top + self.height)
        columns = slice(self.left, self.left + self.width)
        # Differentiable paste: a padded copy of the region plus the image outside it.
        mask = torch.zeros_like(full[:1, :1])
        mask[..., rows, columns] = 1
        pad = (self.left, full.shape[3] - self.left - self.width,
               self.top, full.shape[2] - self.top - self.height)  # fmt: skip
        return full * (1 - mask) + nn.functional.pad(region, pad)

    def extra_repr(self) -> str:
        return f"top={self.top}, left={self.left}, height={self.height}, width={self.width}"
