"""A final pass that removes what an explanation does not need.

The optimisers end with entries that contribute little to the attack — with the black-box
estimate, faint entries its noise left behind as the c search raised c. The pass drops the
smallest entries of each feasible δ for as long as the explanation stays feasible (the attack
holds with margin κ, judged by the model): per sample, the k smallest-magnitude entries are set
to 0 for a grid of k, all samples in one model call per k, and the largest k that stays feasible
is refined on a finer grid between it and the next one. Only entries whose box contains 0 are
dropped, and the result is always one of the evaluated, feasible candidates (or δ unchanged).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from foxcem.cem.evaluation import CEMEvaluation

__all__ = ["sparsify"]

Evaluate = Callable[[torch.Tensor, Optional[torch.Tensor]], CEMEvaluation]


def _drop(flat: torch.Tensor, order_values: torch.Tensor, droppable: torch.Tensor,
          k: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``flat`` (n, d) with, per row, the entries at or below its k-th smallest droppable
    magnitude set to 0 (k = 0: unchanged)."""
    position = (k - 1).clamp(min=0).unsqueeze(1)
    threshold = order_values.gather(1, position).squeeze(1)
    threshold = torch.where(k > 0, threshold, torch.full_like(threshold, -1.0))
    dropped = droppable & (flat.abs() <= threshold.unsqueeze(1))
    return torch.where(dropped, torch.zeros_like(flat), flat)


def sparsify(
    evaluate: Evaluate,
    feasible: Callable[[CEMEvaluation], torch.Tensor],
    delta: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    samples: torch.Tensor,
    candidates: int = 8,
    rounds: int = 2,
) -> torch.Tensor:
    """δ with the entries it does not need removed, for the ``samples`` (bool (N,)) whose δ is
    feasible; the other rows unchanged.

    Args:
        evaluate: ``evaluate(rows, index)`` evaluates δ rows (n, …) of the samples ``index``.
        feasible: whether an evaluation holds its attack with margin κ (bool (n,)).
        delta: the explanation in the optimiser's space (N, …).
        lower, upper: its bounds (N, …); entries whose box excludes 0 are never dropped.
        samples: the rows to sparsify (their δ must be feasible).
        candidates, rounds: grid size per round and rounds of refinement; the pass costs
            ``candidates · rounds`` model calls on the selected rows.
    """
    index = samples.nonzero().squeeze(1)
    if index.numel() == 0:
        return delta
    n = delta.shape[0]
    flat = delta.reshape(n, -1)[index]
    droppable = (flat != 0) & ((lower <= 0) & (upper >= 0)).reshape(n, -1)[index]
    magnitude = torch.where(droppable, flat.abs(), torch.full_like(flat, float("inf")))
    order_values = magnitude.sort(dim=1).values
    count = droppable.sum(dim=1)
    best = torch.zeros_like(count)  # entries dropped in the best feasible candidate so far
    low, high = torch.zeros_like(count), count
    for _ in range(rounds):
        step_best = best.clone()
        for j in range(1, candidates + 1):
            k = low + (high - low) * j // candidates
            k = torch.where(k > best, k, best)
            if bool((k == best).all()):
                continue
            rows = _drop(flat, order_values, droppable, k).reshape((-1,) + delta.shape[1:])
            holds = feasible(evaluate(rows, index))
            step_best = torch.where(holds & (k > step_best), k, step_best)
        # Refine between the best k and the next candidate above it.
        grid = (high - low) // candidates
        low, high = step_best, torch.minimum(step_best + grid.clamp(min=1), count)
        best = step_best
        if bool((high <= low).all()):
            break
    out = delta.clone()
    out.reshape(n, -1)[index] = _drop(flat, order_values, droppable, best)
    return out
