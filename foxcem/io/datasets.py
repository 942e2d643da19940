"""A dataset wrapper whose items carry their index, for resumable dataset-scale explanation."""

from __future__ import annotations

from typing import Any, Union

import torch
from torch.utils.data import Dataset, TensorDataset

__all__ = ["IndexedDataset"]


class IndexedDataset(Dataset):
    """A map-style dataset whose items carry their index: ``(x, i)`` or ``(x, y, i)``.

    Wraps a dataset whose items are a tensor ``x`` or a tuple ``(x, y)``; item ``i`` becomes
    ``(x, i)`` or ``(x, y, i)``, so a batch is ``(x, index)`` or ``(x, y, index)`` with ``index``
    a (B,) int64 tensor after collation. A tensor is accepted directly (its rows are the samples).

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``) or a tensor (N, ...).
    """

    def __init__(self, dataset: Union[Dataset, torch.Tensor]) -> None:
        if isinstance(dataset, torch.Tensor):
            dataset = TensorDataset(dataset)
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                "`dataset` must be a map-style dataset (with __getitem__ and __len__) or a "
                f"tensor, got {type(dataset).__name__}"
            )
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        item = self.dataset[index]
        if isinstance(item, (tuple, list)):
            if len(item) not in (1, 2):
                raise ValueError(
                    f"IndexedDataset items must be x or (x, y), got a tuple of {len(item)}"
                )
            return (*item, index)
        return (item, index)
