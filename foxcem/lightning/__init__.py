"""Dataset-scale explanation on Lightning's engine (needs ``pip install 'foxcem[lightning]'``).

* :class:`ExplainModule` — a ``LightningModule`` whose ``predict_step`` explains a batch
  ``(x, index)`` or ``(x, y, index)``;
* :class:`AttributionWriter` — a ``BasePredictionWriter`` storing attributions with their dataset
  indices in atomic, resumable shards plus a manifest.

:func:`foxcem.explain_dataset` puts them together; :func:`foxcem.dataset.load_attributions` reads
the result back.
"""

from __future__ import annotations

try:
    import lightning.pytorch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "foxcem.lightning needs PyTorch Lightning: pip install 'foxcem[lightning]'"
    ) from exc

from foxcem.dataset import IndexedDataset, explain_dataset, load_attributions
from foxcem.lightning.explain_module import ExplainModule, split_indexed_batch
from foxcem.lightning.writer import AttributionWriter

__all__ = [
    "AttributionWriter",
    "ExplainModule",
    "IndexedDataset",
    "explain_dataset",
    "load_attributions",
    "split_indexed_batch",
]
