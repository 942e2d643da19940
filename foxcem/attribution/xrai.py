"""XRAI (Kapishnikov et al. 2019): Integrated Gradients summed over regions, regions ranked.

1. Integrated Gradients of the image against a black and a white baseline, averaged, summed over
   channels: one attribution per pixel.
2. Candidate regions from one or more segmentations of the image (``segments``: recipes or label
   maps of :mod:`foxcem.core.segments`; by default nested grids, which need no extra package —
   ``["slic:25", "slic:50", "slic:100"]`` gives object-shaped regions as in the paper, which
   used Felzenszwalb's segmentation).
3. Greedily, the region whose not-yet-covered pixels have the highest mean attribution is taken
   next; those pixels get that mean as their value. This repeats until every pixel is covered.

The result (N, 1, H, W) therefore ranks regions: a region taken earlier has a higher value, and
thresholding the map at its top k % gives the most important k % of the image as whole regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import torch

from foxcem.attribution.integrated_gradients import IntegratedGradientsCVExplainer
from foxcem.core.checks import check_options, check_positive_int
from foxcem.core.explainer import Explainer
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer
from foxcem.core.segments import resolve_labels

__all__ = ["XRAICVExplainer", "xrai_ranking"]

#: Nested grids: regions from a quarter of the image down to 1/196 of it.
DEFAULT_SEGMENTS = ("grid:2", "grid:4", "grid:7", "grid:14")

SegmentsArg = Union[str, torch.Tensor, Sequence[Union[str, torch.Tensor]], None]


def xrai_ranking(attribution: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The XRAI map (H, W) of one image from its pixel attribution (H, W) and candidate regions
    ``masks`` (R, H, W) bool, which together must cover the image."""
    remaining = masks.clone()
    covered = torch.zeros_like(attribution, dtype=torch.bool)
    out = torch.zeros_like(attribution)
    flat = attribution.flatten()
    while not bool(covered.all()):
        area = remaining.flatten(1).sum(1)
        if not bool((area > 0).any()):
            raise ValueError("the XRAI `segments` do not cover every pixel of the image")
        gain = (remaining.flatten(1).to(attribution.dtype) @ flat) / area.clamp(min=1)
        gain = torch.where(area > 0, gain, torch.full_like(gain, -torch.inf))
        best = int(gain.argmax())
        new = remaining[best]
        out[new] = gain[best]
        covered |= new
        remaining &= ~new
    return out


def _masks(labels: list[torch.Tensor], index: int) -> torch.Tensor:
    regions = []
    for label in labels:
        sample = label[index]
        regions.append(sample.unsqueeze(0) == torch.unique(sample).view(-1, 1, 1))
    return torch.cat(regions)


@register_explainer("xrai")
class XRAICVExplainer(Explainer):
    """XRAI (see the module): a region ranking (N, 1, H, W) from Integrated Gradients.

    Options:

    * ``segments`` — the candidate regions: a recipe (``"grid:K"``, ``"slic:K"``,
      ``"watershed:K"``), a label map (N, H, W) / (H, W), or a list of them (default: nested
      grids 2, 4, 7 and 14, those that fit the image).
    * ``n_steps`` (50) — Integrated Gradients' steps, against each of the two baselines.
    * ``baselines`` — ``None`` (default: a black and a white image, the input's minimum and
      maximum) or a list of baselines, each anything ``integrated_gradients`` takes.
    * ``internal_batch_size`` (``"auto"``) — as for ``integrated_gradients``.
    """

    algorithm_name = "XRAI"
    input_ndim = 4

    def create_explainer(self, model: Any, **kwargs: Any) -> IntegratedGradientsCVExplainer:
        """The Integrated Gradients explainer XRAI ranks regions by."""
        return IntegratedGradientsCVExplainer()

    def options(self) -> list[str]:
        return ["segments", "n_steps", "baselines", "internal_batch_size"]

    def _attribute(self, model: Any, inputs: Inputs, target: torch.Tensor, **kwargs: Any) -> Any:
        check_options("xrai", kwargs, self.options())
        return self._ranking(model, inputs, target, **kwargs)

    def _ranking(
        self,
        model: Any,
        inputs: Inputs,
        target: torch.Tensor,
        *,
        segments: SegmentsArg = None,
        n_steps: int = 50,
        baselines: Optional[Sequence[Any]] = None,
        internal_batch_size: Union[int, str, None] = "auto",
    ) -> torch.Tensor:
        x = inputs.single("xrai", "one image tensor (N, C, H, W)")
        check_positive_int(n_steps, "n_steps")
        specs: Sequence[Any]
        if segments is None:  # the nested grids that fit the image
            side = min(x.shape[2:])
            specs = [g for g in DEFAULT_SEGMENTS if int(g.split(":")[1]) <= side] or ["grid:1"]
        elif isinstance(segments, (str, torch.Tensor)):
            specs = [segments]
        elif isinstance(segments, Sequence) and segments:
            specs = list(segments)
        else:
            raise TypeError(
                "`segments` must be a recipe, a label map or a non-empty list of them, got "
                f"{type(segments).__name__}"
            )
        labels = [resolve_labels(spec, x, 1) for spec in specs]
        if baselines is None:
            baselines = [float(x.min()), float(x.max())]
        elif isinstance(baselines, (str, torch.Tensor, int, float)) or not baselines:
            raise TypeError("`baselines` must be None or a non-empty list of baselines")
        ig = self.create_explainer(model)
        total = torch.zeros_like(x)
        for baseline in baselines:
            total += ig.calculate_features(
                model,
                x,
                target,
                baselines=baseline,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
            )
        attribution = (total / len(baselines)).sum(1)
        maps = [xrai_ranking(attribution[i], _masks(labels, i)) for i in range(len(x))]  # type: ignore[arg-type]
        return torch.stack(maps).unsqueeze(1)
