"""What every metric shares: checked inputs, baselines, attributions and class scores."""

from __future__ import annotations

from typing import Any, Union

import torch

from foxcem.core.checks import (
    TargetLike,
    check_target,
    check_tensor,
)

__all__ = [
    "BaselineValue",
    "check_attributions",
    "check_baseline",
    "class_scores",
    "prepare_inputs",
    "scores_and_targets",
]

BaselineValue = Union[int, float, torch.Tensor]


def class_scores(model: Any, inputs: torch.Tensor) -> torch.Tensor:
    scores = model(inputs)
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[0] != len(inputs):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(
            f"the model output must be class scores of shape (N, classes) = ({len(inputs)}, "
            f"classes), got {shape}"
        )
    return scores


def scores_and_targets(
    model: Any, inputs: torch.Tensor, targets: TargetLike
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's scores (N, classes) on ``inputs`` and (N,) int64 targets on the input's
    device; ``None`` targets: the model's prediction."""
    scores = class_scores(model, inputs)
    resolved = check_target(targets, inputs.shape[0], scores.shape[1], inputs.device, "targets")
    return scores, scores.argmax(dim=1) if resolved is None else resolved


def check_attributions(attributions: object, inputs: torch.Tensor) -> torch.Tensor:
    """Attributions broadcastable to ``inputs``: (N, *S') with each dim of S' equal to the
    input's or 1; an (N, H, W) map for (N, C, H, W) inputs becomes (N, 1, H, W)."""
    check_tensor(attributions, "attributions")
    assert isinstance(attributions, torch.Tensor)
    if attributions.dim() == inputs.dim() - 1 and inputs.dim() == 4:
        attributions = attributions.unsqueeze(1)
    ok = attributions.dim() == inputs.dim() and attributions.shape[0] == inputs.shape[0]
    if ok:
        ok = all(a in (1, s) for a, s in zip(attributions.shape[1:], inputs.shape[1:]))
    if not ok:
        raise ValueError(
            f"`attributions` must have the input's shape {tuple(inputs.shape)} (or 1 in a "
            f"dimension to share a value, e.g. (N, 1, H, W) per pixel), got "
            f"{tuple(attributions.shape)}"
        )
    return attributions.detach().to(inputs.device)


def check_baseline(baseline: BaselineValue, inputs: torch.Tensor) -> torch.Tensor:
    """A baseline broadcastable to ``inputs`` (N, *S): a number, or a tensor (N, *S), (1, *S),
    or (*S)."""
    if isinstance(baseline, bool):
        raise TypeError("`baseline` must be a number or a tensor, got bool")
    if isinstance(baseline, (int, float)):
        return torch.tensor(float(baseline), dtype=inputs.dtype, device=inputs.device)
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"`baseline` must be a number or a tensor, got {type(baseline).__name__}")
    if baseline.dim() == inputs.dim() - 1:
        baseline = baseline.unsqueeze(0)
    if baseline.dim() != inputs.dim() or baseline.shape[0] not in (1, inputs.shape[0]):
        raise ValueError(
            f"`baseline` must have shape {tuple(inputs.shape)}, (1, ...) or "
            f"{tuple(inputs.shape[1:])}, got {tuple(baseline.shape)}"
        )
    try:
        fits = torch.broadcast_shapes(baseline.shape, inputs.shape) == inputs.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"`baseline` of shape {tuple(baseline.shape)} does not broadcast to the input's "
            f"shape {tuple(inputs.shape)}"
        )
    return baseline.detach().to(device=inputs.device, dtype=inputs.dtype)


def prepare_inputs(inputs: object, name: str = "inputs") -> torch.Tensor:
    check_tensor(inputs, name)
    assert isinstance(inputs, torch.Tensor)
    # Inference tensors (e.g. from a Lightning prediction) are read, never written: a copy is
    # only needed to mix them with ordinary tensors outside inference mode.
    return inputs.clone() if inputs.is_inference() else inputs.detach()
