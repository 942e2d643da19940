"""How a model's answer becomes the scores the CEM margin is taken between.

κ is a margin between logits. A model that answers probabilities (a scikit-learn
``predict_proba``, a softmax head) is read through ``log p``: logits up to a per-row constant,
which cancels in every margin, so the same κ means the same confidence.
"""

from __future__ import annotations

import torch

__all__ = ["SCORES", "ScoreReading", "are_probabilities"]

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
