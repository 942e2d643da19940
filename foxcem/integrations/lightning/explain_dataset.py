"""Explain a whole dataset on Lightning's distributed engine.

:func:`explain_dataset` runs ``Trainer.predict`` with an
:class:`~foxcem.integrations.lightning.ExplainModule` and an
:class:`~foxcem.integrations.lightning.AttributionWriter`, on whatever accelerator, devices,
nodes and strategy the caller gives (DDP across GPUs and nodes is Lightning's own). The output
format (shards and manifest, atomic and resumable) is described in :mod:`foxcem.io.shards`;
:func:`foxcem.io.load_attributions` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch.utils.data import DataLoader, Dataset

from foxcem.io.datasets import IndexedDataset
from foxcem.io.shards import PathLike, read_manifest

__all__ = ["explain_dataset"]


def _as_loader(data: Any, batch_size: int) -> DataLoader:
    if isinstance(data, DataLoader):
        if not isinstance(data.dataset, IndexedDataset) and not getattr(
            data.dataset, "yields_indices", False
        ):
            raise TypeError(
                "the dataloader's batches must carry dataset indices: build it on "
                "foxcem.io.IndexedDataset(dataset), e.g. "
                "DataLoader(IndexedDataset(dataset), batch_size=...) (a custom dataset that "
                "yields (x, [y,] index) itself can set `yields_indices = True`)"
            )
        return data
    if isinstance(data, (torch.Tensor, Dataset)):
        dataset = data if isinstance(data, IndexedDataset) else IndexedDataset(data)
        return DataLoader(dataset, batch_size=batch_size, shuffle=False)
    raise TypeError(
        f"`dataloader` must be a DataLoader, a Dataset or a tensor, got {type(data).__name__}"
    )


def explain_dataset(
    model: torch.nn.Module,
    dataloader: Union[DataLoader, Dataset, torch.Tensor],
    explainer: Any,
    trainer_kwargs: Optional[Mapping[str, Any]] = None,
    output_dir: PathLike = "foxcem-attributions",
    explainer_kwargs: Optional[Mapping[str, Any]] = None,
    *,
    target: str = "prediction",
    file_format: str = "safetensors",
    resume: bool = True,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Explain every sample of a dataset with ``Trainer.predict`` and store the attributions.

    Args:
        model: the model to explain (an ``nn.Module``, TorchScript included); Lightning moves it
            to each rank's device.
        dataloader: a ``DataLoader`` over an :class:`IndexedDataset` (batches ``(x, index)`` or
            ``(x, y, index)``), or a dataset / tensor (N, C, H, W), wrapped and batched with
            ``batch_size``. Lightning shards it over the ranks (each sample goes to one rank).
        explainer: a registered explainer name or an :class:`~foxcem.Explainer` instance.
        trainer_kwargs: ``lightning.pytorch.Trainer`` arguments, e.g. ``accelerator="gpu",
            devices=8, num_nodes=2, strategy="ddp"``. foxcem turns off the logger, checkpoints
            and the model summary unless given here (the progress bar stays on); extra ``callbacks`` are
            kept.
        output_dir: where the shards and ``manifest.json`` go (shared by all nodes).
        explainer_kwargs: options of ``calculate_features`` (e.g. ``{"n_steps": 32}``).
        target: ``"prediction"`` (explain the predicted class) or ``"label"`` (the batch's
            ``y``).
        file_format: ``"safetensors"`` or ``"torch"``.
        resume: skip samples already stored in ``output_dir`` (by a killed or earlier run with
            the same explainer configuration); ``False`` refuses a directory that holds shards.
        batch_size: batch size when ``dataloader`` is a dataset or a tensor.

    Returns:
        The manifest (also in ``output_dir/manifest.json``): ``num_samples``, ``complete``,
        ``shards``, the configuration, ... Read the attributions with :func:`load_attributions`.

    Raises:
        ValueError: if ``output_dir`` holds attributions of another configuration.
    """
    # Lightning is imported only here, so that ``foxcem.explain_dataset`` is cheap to look up.
    from lightning.pytorch import Trainer

    from foxcem.integrations.lightning.explain_module import ExplainModule
    from foxcem.integrations.lightning.writer import AttributionWriter

    loader = _as_loader(dataloader, batch_size)
    module = ExplainModule(model, explainer, explainer_kwargs, target=target)
    try:
        expected: Optional[int] = len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        expected = None
    writer = AttributionWriter(
        output_dir, file_format=file_format, expected_num_samples=expected, resume=resume
    )
    kwargs: dict[str, Any] = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": True,
        "enable_model_summary": False,
    }
    kwargs.update(trainer_kwargs or {})
    callbacks = kwargs.get("callbacks") or []
    if not isinstance(callbacks, Sequence):
        callbacks = [callbacks]
    kwargs["callbacks"] = [*callbacks, writer]
    trainer = Trainer(**kwargs)
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    return writer.manifest if writer.manifest is not None else read_manifest(output_dir)
