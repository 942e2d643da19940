"""What the CEM loop remembers about its iterates: the best feasible one, and the history."""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Optional

import torch

from foxcem.cem.evaluation import CEMEvaluation

__all__ = [
    "BestIterate",
    "History",
    "RoundState",
    "as_evaluation",
    "make_optimizer",
    "merge",
    "norms",
    "plain_evaluation",
    "regulariser",
    "regulariser_weights",
    "start_point",
    "warn_missing",
]


def norms(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(‖δ‖₁, ‖δ‖²₂) per sample, (N,) each, one reduction each."""
    flat = delta.detach().reshape(delta.shape[0], -1)
    return torch.linalg.vector_norm(flat, 1, dim=1), torch.linalg.vecdot(flat, flat)


def regulariser(delta: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    """l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ per sample, (N,), in float32 or wider."""
    if delta.dtype not in (torch.float32, torch.float64):
        delta = delta.float()
    norm1, norm2 = norms(delta)
    return torch.add(l1 * norm1, norm2, alpha=0.5 * l2)


class BestIterate:
    """Per sample, the feasible iterate with the smallest regulariser seen so far.

    Args:
        like: a tensor shaped like δ (N, …).
        l1, l2: the regulariser's weights (what "smallest" means).
    """

    def __init__(self, like: torch.Tensor, l1: float, l2: float) -> None:
        n = like.shape[0]
        self.l1, self.l2 = l1, l2
        self.delta = like.detach().clone()
        self.value = torch.full((n,), float("inf"), device=like.device, dtype=torch.float64)
        self.found = torch.zeros(n, dtype=torch.bool, device=like.device)
        #: whether the current round found a feasible iterate (reset by :meth:`new_round`).
        self.found_this_round = torch.zeros_like(self.found)

    def offer(
        self, delta: torch.Tensor, feasible: torch.Tensor, counts: Optional[torch.Tensor] = None
    ) -> None:
        """Consider ``delta`` (N, …) whose per-sample feasibility is ``feasible`` (N,).

        ``counts`` (N,) says which feasible iterates count as the round's success for the c
        search (default: all): a PP starts feasible, and its first iterates stay so whatever c
        is, until the attack term first engages.
        """
        if feasible.device.type == "cpu" and not bool(feasible.any()):
            return  # nothing to keep or count (the check is free on the CPU only)
        value = regulariser(delta, self.l1, self.l2).to(self.value.dtype)
        better = feasible & (value < self.value)
        self.value = torch.where(better, value, self.value)
        mask = better.reshape((-1,) + (1,) * (delta.dim() - 1))
        self.delta = torch.where(mask, delta.detach(), self.delta)
        self.found |= feasible
        self.found_this_round |= feasible if counts is None else feasible & counts

    def new_round(self) -> None:
        """Start a new round of the c search."""
        self.found_this_round = torch.zeros_like(self.found)


class History:
    """Per-iteration records (loss, attack, ‖δ‖₁, ‖δ‖²₂, success), each (T, N) when stacked."""

    KEYS = ("loss", "attack", "l1", "l2", "success")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.records: dict[str, list[torch.Tensor]] = {k: [] for k in self.KEYS}

    @staticmethod
    def describe(delta: torch.Tensor, evaluation: CEMEvaluation) -> dict[str, torch.Tensor]:
        """The record of one iterate: its evaluation and norms, (N,) each."""
        l1, l2 = norms(delta)
        return {
            "loss": evaluation.loss.detach(),
            "attack": evaluation.attack.detach(),
            "l1": l1,
            "l2": l2,
            "success": evaluation.success,
        }

    @staticmethod
    def summary(record: dict[str, torch.Tensor]) -> str:
        """One line of batch means: loss, ‖δ‖₁, ‖δ‖²₂ and the success rate."""
        return (
            f"loss {float(record['loss'].float().mean()):.4g}  "
            f"l1 {float(record['l1'].mean()):.4g}  l2 {float(record['l2'].mean()):.4g}  "
            f"success {float(record['success'].float().mean()):.2%}"
        )

    def append(self, record: dict[str, torch.Tensor]) -> None:
        if self.enabled:
            for key in self.KEYS:
                self.records[key].append(record[key])

    def to_meta(self, meta: dict[str, Any]) -> None:
        """Add ``<key>_history`` (T, N) tensors to ``meta`` (nothing when disabled or empty)."""
        if self.enabled and self.records["loss"]:
            for key, values in self.records.items():
                meta[f"{key}_history"] = torch.stack(values)


def plain_evaluation(values: torch.Tensor) -> CEMEvaluation:
    """A :class:`CEMEvaluation` for a loss that only returns values: no attack, no success.

    Raises:
        ValueError: for values that are not one per sample ((N,) or (N, 1)).
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"the loss must return a tensor, got {type(values).__name__}")
    if values.dim() == 0 or (values.dim() > 1 and values[0].numel() != 1):
        raise ValueError(
            "the loss must return one value per sample, shape (N,) or (N, 1); got shape "
            f"{tuple(values.shape)} (sum over each sample's elements, e.g. "
            "(delta ** 2).flatten(1).sum(1))"
        )
    values = values.detach().reshape(len(values))
    return CEMEvaluation(
        values,
        torch.full_like(values, float("nan")),
        torch.zeros_like(values, dtype=torch.bool),
        torch.full_like(values, -1, dtype=torch.long),
    )


def as_evaluation(value: Any) -> Optional[CEMEvaluation]:
    """A gradient source's evaluation as a :class:`CEMEvaluation` (values alone: no attack)."""
    if value is None or isinstance(value, CEMEvaluation):
        return value
    return plain_evaluation(value)


def merge(
    previous: Optional[CEMEvaluation], rows: CEMEvaluation, index: Optional[torch.Tensor]
) -> CEMEvaluation:
    """``previous`` (N,) fields with the rows ``index`` replaced by ``rows`` (all when None)."""
    if index is None or previous is None:
        return rows
    return CEMEvaluation(
        *(old.index_copy(0, index, new.to(old.dtype)) for old, new in zip(previous, rows))
    )


class RoundState:
    """The state of one round of optimisation (one value of c per sample)."""

    def __init__(self, param: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        n = param.shape[0]
        self.param, self.opt = param, opt
        self.active = torch.ones(n, dtype=torch.bool, device=param.device)
        self.index: Optional[torch.Tensor] = None  # the rows sent to the gradient (None: all)
        self.evaluation: Optional[CEMEvaluation] = None
        self.previous = param.detach().clone()
        #: whether the attack term has been active (a > −κ) at some iterate of the round.
        self.engaged = torch.zeros(n, dtype=torch.bool, device=param.device)

    def output(self) -> torch.Tensor:
        output = getattr(self.opt, "output", None)
        return output(self.param) if callable(output) else self.param.detach().clone()


def regulariser_weights(opt: torch.optim.Optimizer) -> tuple[float, float]:
    """(l1, l2) of the optimizer's first group; (1, 0) for one without them (e.g. Adam)."""
    group = opt.param_groups[0]
    if "l1" in group or "l2" in group:
        return float(group.get("l1", 0.0)), float(group.get("l2", 0.0))
    return 1.0, 0.0


def start_point(
    loss: Any, like: torch.Tensor, noise: float, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """δ₀: the loss's ``start`` (with Gaussian noise of std ``noise`` for a PN), else zeros."""
    if not hasattr(loss, "start"):
        return torch.zeros_like(like)
    if getattr(loss, "mode", None) == "PN" and noise > 0:
        return loss.start(noise_std=noise, generator=generator).detach()
    return loss.start().detach()


def warn_missing(found: torch.Tensor) -> None:
    """One warning naming how many samples have no feasible explanation (none: silent)."""
    missing = int((~found).sum())
    if missing:
        warnings.warn(
            f"CEM found no feasible explanation for {missing} of {len(found)} samples "
            "(meta_data['found'] is False for them; their δ is the last iterate, not an "
            "explanation): try more iterations, more c_steps, a larger c or a smaller K",
            stacklevel=5,
        )


def make_optimizer(
    cls: Any, kwargs: dict[str, Any], param: torch.Tensor, loss: Any
) -> torch.optim.Optimizer:
    """``cls([param], **kwargs)``, with the loss's bounds as ``lower``/``upper`` when the
    optimizer takes them and they are not given."""
    kwargs = dict(kwargs)
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepted = {}  # type: ignore[assignment]
    for key in ("lower", "upper"):
        if key in accepted and key not in kwargs and hasattr(loss, key):
            kwargs[key] = getattr(loss, key)
    return cls([param], **kwargs)
