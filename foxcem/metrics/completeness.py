"""The completeness gap of an attribution: ``Σ attr − (f_t(x) − f_t(x'))``."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from foxcem.core.checks import (
    TargetLike,
    check_tensor,
)
from foxcem.core.model_state import preserve_model_state
from foxcem.metrics.common import (
    BaselineValue,
    check_baseline,
    class_scores,
    prepare_inputs,
    scores_and_targets,
)

__all__ = ["completeness_gap"]


def completeness_gap(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: TargetLike = None,
    baselines: Optional[BaselineValue] = None,
) -> torch.Tensor:
    """The completeness gap ``Σ attr − (f_t(x) − f_t(x'))`` per sample, on the raw model output.

    Integrated Gradients satisfies completeness in the limit of many steps; the gap is Captum's
    convergence delta, here computable for any attribution (e.g. stored ones).

    Args:
        model: maps (N, *S) to class scores (N, classes).
        inputs: (N, *S) on the model's device.
        attributions: (N, ...) with ``N`` samples (summed over everything but the first dim).
        targets: the explained class (int, sequence, (N,) tensor; ``None``: the prediction).
        baselines: the reference ``x'``: ``None`` (zeros), a number, or a tensor (N, *S),
            (1, *S) or (*S).

    Returns:
        (N,) float tensor, signed (take ``.abs()`` for the size of the gap).
    """
    x = prepare_inputs(inputs)
    check_tensor(attributions, "attributions")
    if attributions.shape[0] != x.shape[0]:
        raise ValueError(
            f"`attributions` must hold {x.shape[0]} samples like `inputs`, got "
            f"{attributions.shape[0]}"
        )
    with preserve_model_state(model, inputs=x), torch.no_grad():
        base = torch.broadcast_to(
            check_baseline(0.0 if baselines is None else baselines, x), x.shape
        )
        scores, target = scores_and_targets(model, x, targets)
        at_input = scores.gather(1, target[:, None])[:, 0]
        at_base = class_scores(model, base.contiguous()).gather(1, target[:, None])[:, 0]
        total = attributions.detach().to(x.device).flatten(1).sum(dim=1)
    return total - (at_input - at_base).to(total.dtype)
