"""A final pass that removes what an explanation does not need.

The optimisers end with entries that contribute little to the attack — with the black-box
estimate, faint entries its noise left behind as the c search raised c. The pass drops the
smallest entries of each feasible δ for as long as the explanation stays feasible (the attack
holds with margin κ, judged by the model): per sample, the k smallest-magnitude entries are set
to 0 for a grid of k, all samples in one model call per k, and the largest k that stays feasible
is refined on a finer grid between it and the next one. Only entries whose box contains 0 are
dropped, and the result is always one of the evaluated, feasible candidates (or δ unchanged).

A δ found by the c search usually holds its margin just barely, so that dropping even its
faintest entries breaks it. With ``rescale`` each candidate is therefore also tried with the
dropped mass moved onto the kept entries: they are scaled so that ‖δ‖₁ is what it was, then
clipped to the box (so ‖δ‖₁ never grows). Of the two, the plain drop is preferred when both
hold. The explanation keeps its sign pattern and its total change, on fewer entries.
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


def _rescaled(rows: torch.Tensor, l1: torch.Tensor, lower: torch.Tensor,
              upper: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``rows`` (n, d) scaled to the ‖·‖₁ ``l1`` (n,), then clipped to [lower, upper]."""
    kept = rows.abs().sum(dim=1)
    scale = torch.where(kept > 0, l1 / kept.clamp(min=torch.finfo(rows.dtype).tiny), 1.0)
    return torch.minimum(torch.maximum(rows * scale.unsqueeze(1), lower), upper)


def sparsify(
    evaluate: Evaluate,
    feasible: Callable[[CEMEvaluation], torch.Tensor],
    delta: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    samples: torch.Tensor,
    candidates: int = 8,
    rounds: int = 2,
    rescale: bool = True,
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
            ``candidates · rounds`` model calls on the selected rows (on twice as many rows
            with ``rescale``).
        rescale: also try each candidate with the dropped mass moved onto the kept entries
            (‖δ‖₁ kept, clipped to the box).
    """
    index = samples.nonzero().squeeze(1)
    if index.numel() == 0:
        return delta
    n = delta.shape[0]
    flat = delta.reshape(n, -1)[index]
    lo, hi = (bound.expand_as(delta).reshape(n, -1)[index] for bound in (lower, upper))
    droppable = (flat != 0) & (lo <= 0) & (hi >= 0)
    magnitude = torch.where(droppable, flat.abs(), torch.full_like(flat, float("inf")))
    order_values = magnitude.sort(dim=1).values
    count = droppable.sum(dim=1)
    l1 = flat.abs().sum(dim=1)
    rows_index = index.repeat(2 if rescale else 1)
    best = torch.zeros_like(count)  # entries dropped in the best feasible candidate so far
    best_rows = flat  # ... and that candidate (k = 0: δ unchanged)
    low, high = torch.zeros_like(count), count
    for _ in range(rounds):
        step_best, step_rows = best.clone(), best_rows
        for j in range(1, candidates + 1):
            k = low + (high - low) * j // candidates
            k = torch.where(k > best, k, best)
            if bool((k == best).all()):
                continue
            tried = [_drop(flat, order_values, droppable, k)]
            if rescale:
                tried.append(_rescaled(tried[0], l1, lo, hi))
            rows = torch.cat(tried).reshape((-1,) + delta.shape[1:])
            holds = feasible(evaluate(rows, rows_index)).reshape(len(tried), -1)
            better = holds.any(dim=0) & (k > step_best)
            # The plain drop where it holds, else its rescaled twin.
            chosen = tried[0] if not rescale else torch.where(holds[0, :, None], *tried)
            step_best = torch.where(better, k, step_best)
            step_rows = torch.where(better.unsqueeze(1), chosen, step_rows)
        # Refine between the best k and the next candidate above it.
        grid = (high - low) // candidates
        low, high = step_best, torch.minimum(step_best + grid.clamp(min=1), count)
        best, best_rows = step_best, step_rows
        if bool((high <= low).all()):
            break
    out = delta.clone()
    out.reshape(n, -1)[index] = best_rows
    return out
