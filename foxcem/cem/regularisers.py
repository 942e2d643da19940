"""A search over the regulariser weights l1, l2, and a callback that saves the explanation as
the optimisation goes.

:func:`search_regularisers` runs CEM once per (l1, l2) pair of a grid and keeps, per sample,
the found explanation with the fewest entries (then the smallest ‖δ‖₁): on a model the defaults
were not chosen for, it finds the weights per sample instead of by hand. :class:`SaveEvery`
is a generator callback (``callback=SaveEvery(directory, every=50)``) writing δ to disk.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import torch

from foxcem.core.checks import check_positive_int

__all__ = ["SaveEvery", "search_regularisers"]


def search_regularisers(
    explainer: Any,
    model: Any,
    x: torch.Tensor,
    l1: Sequence[float],
    l2: Sequence[float] = (0.5,),
    threshold: float = 0.01,
    **options: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The sparsest found CEM explanation per sample over a grid of l1 × l2.

    Args:
        explainer: a :class:`~foxcem.CEMExplainer`.
        model, x: as for ``calculate_features``.
        l1, l2: the values tried (every pair).
        threshold: an entry counts towards ‖δ‖₀ above this magnitude.
        **options: the other options of ``calculate_features`` (``mode``, ``gradient``, …).

    Returns:
        ``(delta, info)``: δ (N, …) per sample from the best pair (the first pair's δ for a
        sample found by none), and ``info`` with (N,) tensors ``found``, ``l1``, ``l2``, ``l0``.
    """
    if not l1 or not l2:
        raise ValueError("`l1` and `l2` must each hold at least one value")
    best_delta = None
    n = len(x)
    score = torch.full((n,), float("inf"), dtype=torch.float64)
    chosen = {
        "found": torch.zeros(n, dtype=torch.bool),
        "l1": torch.zeros(n, dtype=torch.float64),
        "l2": torch.zeros(n, dtype=torch.float64),
        "l0": torch.zeros(n, dtype=torch.long),
    }
    for a, b in itertools.product(l1, l2):
        delta = explainer.calculate_features(model, x, l1=a, l2=b, **options)
        found = explainer.meta_data["found"].cpu()
        flat = delta.detach().flatten(1).cpu()
        l0 = (flat.abs() > threshold).sum(1)
        # Fewest entries first, ‖δ‖₁ to break ties; a sample not found never wins.
        this = l0.double() + flat.abs().sum(1).double() / (flat.abs().sum(1).double().max() + 1)
        this = torch.where(found, this, torch.full_like(this, float("inf")))
        better = this < score
        if best_delta is None:
            best_delta = delta.clone()
            better = better | torch.ones_like(better)
        mask = better.to(delta.device).view((-1,) + (1,) * (delta.dim() - 1))
        best_delta = torch.where(mask, delta, best_delta)
        score = torch.where(better, this, score)
        chosen["found"] |= found
        chosen["l1"] = torch.where(
            better, torch.tensor(float(a), dtype=torch.float64), chosen["l1"]
        )
        chosen["l2"] = torch.where(
            better, torch.tensor(float(b), dtype=torch.float64), chosen["l2"]
        )
        chosen["l0"] = torch.where(better, l0, chosen["l0"])
    assert best_delta is not None
    return best_delta, chosen


class SaveEvery:
    """Generator callback saving δ every ``every`` iterations to ``directory/delta_<i>.pt``.

    Args:
        directory: created if missing.
        every: iterations between saves.
    """

    def __init__(self, directory: Union[str, Path], every: int = 100) -> None:
        self.directory = Path(directory)
        self.every = check_positive_int(every, "every")
        self.directory.mkdir(parents=True, exist_ok=True)
        #: the files written, in order.
        self.saved: list[Path] = []

    def __call__(self, iteration: int, info: dict[str, Any]) -> None:
        if iteration % self.every == 0:
            path = self.directory / f"delta_{iteration}.pt"
            torch.save(info["delta"].detach().cpu(), path)
            self.saved.append(path)
