"""Where a pertinent negative's search starts, and the second search from the box's far corner.

A PN search normally starts at δ = 0 (the input itself) and grows δ until the class changes with
margin κ. On a large model with the black-box estimate the growth can stall short of the margin
(a ResNet-18 at 224×224 with 20 directions per step: the class flips, the margin does not reach
κ in the default budget). The far corner of the box — every entry at its largest allowed
change — is the other natural start: it is feasible whenever any PN in the box is, and from
there the search shrinks δ, as a pertinent positive's does from the whole input.
``pn_start="auto"`` runs the usual search and, for the samples it leaves without a PN, a second
one from the far corner; each sample keeps the result of the search that found its PN.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from foxcem.core.checks import check_choice

__all__ = ["PN_STARTS", "check_pn_start", "far_corner", "merge_restart"]

#: ``pn_start`` values: δ = 0 (the default of the generator), the far corner, or both in turn.
PN_STARTS = ("zeros", "full", "auto")

#: Per-sample (N, …) entries of the meta data that the second search replaces for its samples.
_PER_SAMPLE = (
    "loss", "attack", "success", "prediction", "found", "best_found", "iterations", "invalid",
    "c", "segment_values",
)  # fmt: skip


def check_pn_start(value: object, mode: str, start_noise: float) -> str:
    """``pn_start`` checked: one of :data:`PN_STARTS`; ``"full"`` needs mode PN and no start
    noise (the noise is drawn around δ = 0)."""
    start = check_choice(value, "pn_start", list(PN_STARTS))
    if start == "full" and mode != "PN":
        raise ValueError("`pn_start='full'` applies to mode='PN' only (a PP starts from the input)")
    if start == "full" and start_noise > 0:
        raise ValueError(
            "`pn_start='full'` and `start_noise` > 0 conflict: the noise is drawn around δ = 0; "
            "use pn_start='auto' (the noise applies to its first search)"
        )
    return start


def far_corner(loss: Any, like: torch.Tensor) -> torch.Tensor:
    """δ (N, …) with every entry at the bound of larger magnitude (the largest change)."""
    lower, upper = loss.lower.expand_as(like), loss.upper.expand_as(like)
    return torch.where(upper.abs() >= lower.abs(), upper, lower).to(like.dtype).clone()


def merge_restart(
    first: tuple[OrderedDict[str, torch.Tensor], dict[str, Any]],
    second: tuple[OrderedDict[str, torch.Tensor], dict[str, Any]],
    redo: torch.Tensor,
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """The first search's savepoints and meta data with the second's result for the samples
    ``redo`` (N,) bool: per-sample entries replaced there, histories (T, N) concatenated over
    time, ``model_calls`` and ``num_iter`` from the second (which count on from the first),
    ``restarted`` (N,) added."""
    (points, meta), (points2, meta2) = first, second
    last, last2 = next(reversed(points.values())), next(reversed(points2.values()))
    result = torch.where(_rows(redo, last), last2, last)
    merged = dict(meta)
    for key in _PER_SAMPLE:
        if isinstance(meta.get(key), torch.Tensor) and isinstance(meta2.get(key), torch.Tensor):
            merged[key] = torch.where(_rows(redo, meta[key]), meta2[key], meta[key])
    for key, value in meta2.items():
        if key.endswith("_history") and isinstance(meta.get(key), torch.Tensor):
            merged[key] = torch.cat([meta[key], value])
    merged["model_calls"] = meta2["model_calls"]  # the counter runs across both searches
    merged["num_iter"] = meta2["num_iter"]  # the second search counts on from the first
    merged["restarted"] = redo.clone()
    out = OrderedDict(points)
    out.pop(next(reversed(points)))
    out[str(merged["num_iter"])] = result
    return out, merged


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape((-1,) + (1,) * (like.dim() - 1))
