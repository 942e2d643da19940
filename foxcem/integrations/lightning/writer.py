"""A ``BasePredictionWriter`` that stores attributions in atomic, resumable shards."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import torch

try:
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import BasePredictionWriter
except ImportError as exc:  # pragma: no cover - exercised by a test with Lightning hidden
    raise ImportError(
        "foxcem.integrations.lightning.writer needs PyTorch Lightning, which is not installed: "
        "pip install 'foxcem[lightning]'"
    ) from exc

from foxcem.core.checks import check_bool, check_choice
from foxcem.io.shards import (
    FORMAT,
    PathLike,
    build_manifest,
    config_digest,
    read_manifest,
    save_shard,
    scan_shards,
    shard_name,
    stray_temporary_files,
    write_manifest,
)

__all__ = ["AttributionWriter"]


class AttributionWriter(BasePredictionWriter):
    """Write each predicted batch of an :class:`~foxcem.integrations.lightning.ExplainModule` to one shard.

    Per rank and batch, the prediction ``{"indices": (B,), "attributions": (B, ...), "targets":
    (B,)[, "delta": (B,)]}`` is written to ``output_dir/shard-<first index>-<digest>.<ext>``
    through a temporary file and ``os.replace`` (see :mod:`foxcem.io.shards`). At setup every rank
    reads the indices of the shards already in ``output_dir``; :meth:`pending` tells the module
    which samples of a batch still need explaining, so a resumed run skips finished work before
    computing it. When all ranks are done, rank 0 removes stray temporary files and writes
    ``manifest.json``.

    Args:
        output_dir: the output directory (created; shared by all nodes in a multi-node run).
        file_format: ``"safetensors"`` or ``"torch"``.
        expected_num_samples: the dataset's length, to record in the manifest whether every
            index ``0 … N-1`` is present (``None``: unknown).
        resume: reuse the shards in ``output_dir``; ``False`` raises ``FileExistsError`` if
            there are any.
        config: the explanation configuration (default: the module's ``explanation_config``);
            shards of another configuration in ``output_dir`` raise ``ValueError``.
    """

    def __init__(
        self,
        output_dir: PathLike,
        file_format: str = "safetensors",
        expected_num_samples: Optional[int] = None,
        resume: bool = True,
        config: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.file_format = check_choice(file_format, "file_format", ("safetensors", "torch"))
        self.expected_num_samples = expected_num_samples
        self.resume = check_bool(resume, "resume")
        self.config: Optional[dict[str, Any]] = None if config is None else dict(config)
        self._digest: Optional[str] = None
        self._done = torch.empty(0, dtype=torch.long)
        #: Shards written / batches skipped by this rank in this run.
        self.written: list[str] = []
        self.skipped_batches = 0
        #: The manifest, set on every rank once the run has finished.
        self.manifest: Optional[dict[str, Any]] = None

    # -- state ------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Read the indices already stored in ``output_dir`` (every rank)."""
        super().setup(trainer, pl_module, stage)
        if self.config is None:
            self.config = getattr(pl_module, "explanation_config", None)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # A resumed run sets unreadable shards aside (rank 0) and recomputes their samples.
        shards = scan_shards(self.output_dir, set_aside=self.resume and trainer.is_global_zero)
        if shards and not self.resume:
            raise FileExistsError(
                f"{self.output_dir} already holds {len(shards)} attribution shards; pass "
                f"resume=True to continue that run, or choose another directory"
            )
        self._digest = None if self.config is None else config_digest(self.config)
        if self._digest is not None:
            other = {s.metadata.get("config") for s in shards} - {self._digest}
            if other:
                raise ValueError(
                    f"{self.output_dir} holds attributions of another explanation configuration "
                    f"(explainer or options differ); use another output directory"
                )
        self._done = (
            torch.unique(torch.cat([s.indices for s in shards]))
            if shards
            else torch.empty(0, dtype=torch.long)
        )
        self.written = []
        self.skipped_batches = 0
        self.manifest = None

    def pending(self, indices: torch.Tensor) -> torch.Tensor:
        """(B,) bool mask of the dataset ``indices`` (B,) that no finished shard holds yet."""
        cpu = indices.detach().cpu().long()
        return ~torch.isin(cpu, self._done)

    # -- writing ----------------------------------------------------------------------------

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Optional[Sequence[int]],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write the batch's shard (nothing for a batch the module skipped)."""
        if not isinstance(prediction, Mapping) or "indices" not in prediction:
            raise TypeError(
                "AttributionWriter needs predictions {'indices': ..., 'attributions': ...} "
                "as returned by ExplainModule.predict_step"
            )
        if prediction.get("skipped", False):
            self.skipped_batches += 1
            return
        tensors = {k: v for k, v in prediction.items() if isinstance(v, torch.Tensor)}
        indices = tensors["indices"].detach().cpu().long()
        attributions = tensors["attributions"]
        metadata = {
            "format": FORMAT,
            "rank": str(trainer.global_rank),
            "batch_idx": str(batch_idx),
            "dataloader_idx": str(dataloader_idx),
            "keys": json.dumps(sorted(tensors)),
            "attribution_shape": json.dumps(list(attributions.shape[1:])),
            "attribution_dtype": str(attributions.dtype).replace("torch.", ""),
        }
        if self._digest is not None:
            metadata["config"] = self._digest
        path = self.output_dir / shard_name(indices, self.file_format)
        save_shard(path, tensors, metadata)
        self._done = torch.unique(torch.cat([self._done, indices]))
        self.written.append(path.name)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After every rank has finished: rank 0 tidies up and writes the manifest."""
        trainer.strategy.barrier("foxcem-attribution-shards")
        if trainer.is_global_zero:
            for path in stray_temporary_files(self.output_dir):
                path.unlink(missing_ok=True)
            manifest = build_manifest(
                self.output_dir,
                config=self.config,
                expected_num_samples=self.expected_num_samples,
                world_size=trainer.world_size,
            )
            write_manifest(self.output_dir, manifest)
        trainer.strategy.barrier("foxcem-attribution-manifest")
        self.manifest = read_manifest(self.output_dir)
