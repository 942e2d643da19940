"""PyTorch Lightning: explain while training, and explain whole datasets on Lightning's engine.

Needs the ``lightning`` extra (``pip install 'foxcem[lightning]'``); Lightning is imported only
when one of these is first used:

* :class:`ExplanationCallback` — explains fixed validation samples while a model trains;
* :class:`ExplainModule` — a ``LightningModule`` whose ``predict_step`` explains a batch
  ``(x, index)`` or ``(x, y, index)``;
* :class:`AttributionWriter` — a ``BasePredictionWriter`` storing attributions with their dataset
  indices in atomic, resumable shards plus a manifest (:mod:`foxcem.io.shards`);
* :func:`explain_dataset` — the two together under ``Trainer.predict``.

:func:`foxcem.io.load_attributions` reads the result back.
"""

from __future__ import annotations

import importlib
from typing import Any

from foxcem.io import IndexedDataset, load_attributions

__all__ = [
    "AttributionWriter",
    "ExplainModule",
    "ExplanationCallback",
    "IndexedDataset",
    "explain_dataset",
    "load_attributions",
    "split_indexed_batch",
]

#: name -> submodule that defines it (imported on first use: each one imports Lightning).
_SUBMODULES = {
    "AttributionWriter": "writer",
    "ExplainModule": "explain_module",
    "ExplanationCallback": "callback",
    "explain_dataset": "explain_dataset",
    "split_indexed_batch": "explain_module",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{_SUBMODULES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
