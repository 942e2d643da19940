"""How a model's answer becomes the scores the CEM margin is taken between.

κ is a margin between logits. A model that answers probabilities (a scikit-learn
``predict_proba``, a softmax head) is read through ``log p``: logits up to a per-row constant,
which cancels in every margin, so the same κ means the same confidence.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["SCORES", "ScoreReading", "ClassMargin", "are_probabilities"]

#: The values of the ``scores`` option.
SCORES = ("auto", "logits", "probabilities")


def are_probabilities(scores: torch.Tensor) -> bool:
    """Whether every row of ``scores`` (N, classes) is a probability vector."""
    s = scores.detach().double()
    if bool((s < 0).any()) or bool((s > 1).any()):
        return False
    return bool(torch.allclose(s.sum(dim=1), torch.ones_like(s[:, 0]), atol=1e-3))


class ScoreReading:
    """Reads a model's answers as logits, or probabilities as log-probabilities.

    Args:
        kind: ``"auto"`` (probabilities when every row of ``answer`` is a probability vector),
            ``"logits"`` or ``"probabilities"``.
        answer: the model's answer on the explained inputs (N, classes), for ``"auto"``.

    Raises:
        ValueError: an unknown ``kind`` (named as ``scores``).
    """

    def __init__(self, kind: object, answer: torch.Tensor) -> None:
        if not isinstance(kind, str) or kind not in SCORES:
            raise ValueError(f"`scores` must be one of {list(SCORES)}, got {kind!r}")
        self.probabilities = kind == "probabilities" or (
            kind == "auto" and are_probabilities(answer)
        )

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.probabilities:
            return scores
        # Floored at the smallest normal number: an exact zero gives a finite margin, and every
        # probability the dtype resolves keeps its gradient.
        return torch.log(torch.clamp(scores, min=torch.finfo(scores.dtype).tiny))


class ClassMargin:
    """The margin between the target's score and another class's: f_t − f_j per row (PN's
    attack), or f_j − f_t (PP's), from scores (*L, classes) and targets (*L,), differentiable
    with respect to the scores. j is given (a PN target class) or the top other class
    ``argmax_{i≠t} f_i``.

    The two scores are gathered in one call and combined by a product with (1, −1): the
    backward pass is one scatter, where ``amax`` over the other classes would compare, count
    ties and divide. On a small model these launches are a visible part of each step. The
    target mask of a call over every sample is kept, by shape, for the next call (the targets
    of a loss never change).

    Args:
        sign: 1 for f_t − f_j, −1 for f_j − f_t.
    """

    def __init__(self, sign: float) -> None:
        self._masks: dict[tuple[int, ...], torch.Tensor] = {}
        self._sign: Optional[torch.Tensor] = None
        self.sign = sign

    def __call__(
        self,
        scores: torch.Tensor,
        target: torch.Tensor,
        other: Optional[torch.Tensor] = None,
        reuse: bool = False,
    ) -> torch.Tensor:
        """The margin (*L,); ``reuse``: ``target`` is the loss's own (every sample in order), so
        its mask may be kept."""
        if other is None:
            shape = tuple(scores.shape)
            is_target = self._masks.get(shape) if reuse else None
            if is_target is None:
                is_target = torch.zeros(shape, dtype=torch.bool, device=scores.device)
                is_target.scatter_(-1, target.unsqueeze(-1), True)
                if reuse:
                    self._masks[shape] = is_target
            other = scores.detach().masked_fill(is_target, float("-inf")).argmax(dim=-1)
        pair = scores.gather(-1, torch.stack((target, other), dim=-1))
        sign = self._sign
        if sign is None or sign.dtype != pair.dtype or sign.device != pair.device:
            sign = torch.tensor([self.sign, -self.sign], dtype=pair.dtype, device=pair.device)
            self._sign = sign
        return (pair * sign).sum(dim=-1)  # exactly ±(f_t − f_j): each product is exact
