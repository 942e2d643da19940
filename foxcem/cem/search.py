"""The per-sample search over c, the weight of the attack term (IBM's and alibi's schedule).

Start every sample at ``c_init``. After each round: where a feasible explanation was found, c was
strong enough, so it becomes an upper bound; where none was, a lower bound. Until a sample has
an upper bound its c is multiplied by 10; afterwards it bisects between the bounds.
"""

from __future__ import annotations

import torch

__all__ = ["CSearch"]

#: An upper bound at or above this means "none yet".
NO_UPPER_BOUND = 1e10


class CSearch:
    """Per-sample bisection over c.

    Args:
        c_init: the first c per sample, (N,).

    ``search.update(found)`` takes the (N,) bool "a feasible explanation was found this round"
    and returns the next round's c (N,).
    """

    def __init__(self, c_init: torch.Tensor) -> None:
        self.c = c_init.detach().clone()
        self.lower = torch.zeros_like(self.c)
        self.upper = torch.full_like(self.c, NO_UPPER_BOUND)

    def update(self, found: torch.Tensor) -> torch.Tensor:
        """The next c per sample after a round whose per-sample success is ``found``."""
        found = found.to(device=self.c.device, dtype=torch.bool)
        self.upper = torch.where(found, torch.minimum(self.upper, self.c), self.upper)
        self.lower = torch.where(found, self.lower, torch.maximum(self.lower, self.c))
        bounded = self.upper < NO_UPPER_BOUND * 0.1
        self.c = torch.where(bounded, 0.5 * (self.lower + self.upper), 10.0 * self.c)
        return self.c.clone()

    def __repr__(self) -> str:
        return f"CSearch(N={self.c.shape[0]})"
