"""LIME as CEM-family components: a loss (the explained class's score) and a gradient source
(LIME's local linear surrogate), usable with the generator and with URV like any loss.

:class:`LimeLoss` is the model's score for the explained class at x + δ, per sample. With
``segments`` (superpixels: a recipe such as ``"slic:50"`` or a label map) it is the superpixel
LIME loss: features are whole segments. :class:`LimeGradient` fits, per sample and call, LIME's
surrogate around the current point v = x + δ: ``num_samples`` binary masks z over the features
(drawn with a seeded generator), the loss at the points where the switched-off features are set
to 0, weights ``exp(−d(z)² / kernel_width²)`` with d the cosine distance of z to the all-on mask,
and a weighted least-squares fit ``loss ≈ β₀ + Σ βⱼ zⱼ``. It returns β expanded to δ's shape —
each feature's (segment's) contribution to the score at v; ``last_masks``, ``last_values`` and
``last_weights`` keep the data of the fit.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from foxcem.cem.gradient_source import GradientSource
from foxcem.core.checks import check_finite_float, check_positive_int, check_scores, check_target
from foxcem.core.segments import SegmentsLike, resolve_labels

__all__ = ["LimeGradient", "LimeLoss", "SuperpixelLimeLoss"]


class LimeLoss:
    """The score of the explained class at x + δ, one value per sample.

    Args:
        model: the scores function (N, …) -> (N, classes).
        x: the explained batch (N, …).
        target: the class per sample (int, (N,) tensor; ``None``: the prediction at x).
        segments: ``None`` (every position a feature: a pixel with its channels, a table
            column) or superpixels (:mod:`foxcem.core.segments`).
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        target: Union[int, torch.Tensor, None] = None,
        segments: SegmentsLike = None,
    ) -> None:
        self.model, self.x = model, x.detach()
        with torch.no_grad():
            scores = check_scores(model(self.x), len(x), device=x.device)
        checked = check_target(target, len(x), scores.shape[1], device=x.device, name="target")
        self.target = scores.argmax(1) if checked is None else checked
        channel_dim = 1 if x.dim() >= 3 else None
        labels = resolve_labels(segments, self.x, channel_dim)
        if labels is None:  # every position its own feature
            positions = x[:, 0] if channel_dim is not None else x
            labels = torch.arange(positions[0].numel(), device=x.device)
            labels = labels.view(positions.shape[1:]).expand_as(positions).clone()
        #: (N, *positions) feature index of every position.
        self.labels = labels
        self.channel_dim = channel_dim

    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.x if samples is None else self.x[samples]
        target = self.target if samples is None else self.target[samples]
        scores = self.model(x + delta)
        return scores.gather(1, target.view(-1, 1)).squeeze(1)

    def feature_mask(self, z: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Binary masks over features (R, F) of the rows' samples as masks over δ (R, …)."""
        labels = self.labels[samples]
        mask = z.gather(1, labels.flatten(1)).view(labels.shape)
        return mask.unsqueeze(1) if self.channel_dim is not None else mask


class SuperpixelLimeLoss(LimeLoss):
    """:class:`LimeLoss` over superpixels (default ``segments="grid:8"``; ``"slic:K"`` for
    SLIC superpixels with scikit-image)."""

    def __init__(
        self, model: Any, x: torch.Tensor, target: Any = None, segments: SegmentsLike = "grid:8"
    ) -> None:
        super().__init__(model, x, target, segments)


class LimeGradient(GradientSource):
    """LIME's weighted least-squares surrogate as the gradient (see the module).

    Args:
        loss: a :class:`LimeLoss`.
        num_samples: masks per sample and call (default 200).
        kernel_width: of the exponential kernel on the cosine distance (default 0.25, LIME's
            for images).
        seed: seeds the masks (call t draws from ``seed + t``).
    """

    def __init__(
        self, loss: LimeLoss, num_samples: int = 200, kernel_width: float = 0.25, seed: int = 0
    ) -> None:
        if not isinstance(loss, LimeLoss):
            raise TypeError(f"`loss` must be a LimeLoss, got {type(loss).__name__}")
        super().__init__(loss)
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.kernel_width = check_finite_float(
            kernel_width, "kernel_width", minimum=0.0, strict=True
        )
        self.seed, self.calls = int(seed), 0
        self.last_masks: Optional[torch.Tensor] = None
        self.last_values: Optional[torch.Tensor] = None
        self.last_weights: Optional[torch.Tensor] = None

    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        loss: LimeLoss = self.loss  # type: ignore[assignment]
        n, m = len(delta), self.num_samples
        index = torch.arange(n, device=delta.device) if samples is None else samples
        features = int(loss.labels[index].flatten(1).max()) + 1
        generator = torch.Generator().manual_seed(self.seed + self.calls)
        self.calls += 1
        z = torch.randint(0, 2, (n, m, features), generator=generator).to(delta.device, delta.dtype)
        z[:, 0] = 1  # the point itself
        rows = index.repeat_interleave(m)
        point = (loss.x[index] + delta).repeat_interleave(m, 0)
        perturbed = point * loss.feature_mask(z.flatten(0, 1).long(), rows).to(delta.dtype)
        with torch.no_grad():
            values = loss(perturbed - loss.x[rows], samples=rows).view(n, m).to(delta.dtype)
        self.last_num_calls = 1
        on = z.sum(2)
        distance = 1 - torch.sqrt(on / features)
        weights = torch.exp(-(distance**2) / self.kernel_width**2)
        design = torch.cat([torch.ones_like(z[..., :1]), z], 2)
        root = weights.sqrt().unsqueeze(2)
        beta = torch.linalg.lstsq(
            (root * design).double(), (root[..., 0] * values).double().unsqueeze(2)
        ).solution
        coefficients = beta[:, 1:, 0].to(delta.dtype)
        self.last_masks, self.last_values, self.last_weights = z, values, weights
        grad = coefficients.gather(1, loss.labels[index].flatten(1)).view(loss.labels[index].shape)
        return (
            (grad.unsqueeze(1) if loss.channel_dim is not None else grad).expand_as(delta).clone()
        )
