"""A ``LightningModule`` whose ``predict_step`` explains a batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Union

import torch
from torch import nn

try:
    from lightning.pytorch import LightningModule
except ImportError as exc:  # pragma: no cover - exercised by a test with Lightning hidden
    raise ImportError(
        "foxcem.integrations.lightning.explain_module needs PyTorch Lightning, which is not installed: "
        "pip install 'foxcem[lightning]'"
    ) from exc

from foxcem.core.checks import check_choice
from foxcem.core.explainer import Explainer, split_convergence_delta
from foxcem.core.model_state import preserve_model_state
from foxcem.core.registry import resolve_explainer

__all__ = ["ExplainModule", "split_indexed_batch"]


def split_indexed_batch(
    batch: Any,
) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """``(x, index)`` or ``(x, y, index)`` -> ``(x, y or None, index)``.

    Raises:
        ValueError: for any other batch layout, or if ``index`` is not a (B,) integer tensor.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            "a batch to explain must be (x, index) or (x, y, index), as produced by "
            f"foxcem.io.shards.IndexedDataset; got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    x, index = batch[0], batch[-1]
    y = batch[1] if len(batch) == 3 else None
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"the batch's inputs must be a tensor, got {type(x).__name__}")
    if (
        not isinstance(index, torch.Tensor)
        or index.dim() != 1
        or index.is_floating_point()
        or index.dtype == torch.bool
        or len(index) != len(x)
    ):
        raise ValueError(
            "the batch's last element must be the (B,) integer tensor of dataset indices "
            "(wrap the dataset in foxcem.io.shards.IndexedDataset)"
        )
    return x, y, index


def _plain(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """An ordinary (non-inference) copy of a tensor Lightning created under inference mode."""
    if tensor is None:
        return None
    with torch.inference_mode(False):
        return tensor.clone() if tensor.is_inference() else tensor.detach()


class ExplainModule(LightningModule):
    """Wrap a model and an explainer so that ``Trainer.predict`` explains a dataset.

    ``predict_step`` takes a batch ``(x, index)`` or ``(x, y, index)`` (see
    :class:`~foxcem.io.shards.IndexedDataset`) and returns ``{"indices": (B,) int64,
    "attributions": (B, ...), "targets": (B,) int64}`` plus ``"delta"`` (B,) when the explainer
    returns a convergence delta. With an :class:`~foxcem.integrations.lightning.AttributionWriter` among the
    trainer's callbacks, samples already stored are not explained again: a batch whose samples
    are all done returns ``{"indices": ..., "skipped": True}``.

    Args:
        model: the model to explain (a submodule, so Lightning moves it to the rank's device).
        explainer: a registered explainer name or an :class:`~foxcem.Explainer` instance.
        explainer_kwargs: options of ``calculate_features`` (e.g. ``{"n_steps": 32}``).
        target: ``"prediction"``: explain the model's predicted class; ``"label"``: the batch's
            ``y`` (batches must then be ``(x, y, index)``).
    """

    def __init__(
        self,
        model: nn.Module,
        explainer: Union[str, Explainer],
        explainer_kwargs: Optional[Mapping[str, Any]] = None,
        *,
        target: str = "prediction",
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.explainer = resolve_explainer(explainer)
        self.explainer_kwargs = dict(explainer_kwargs or {})
        self.target = check_choice(target, "target", ("prediction", "label"))

    @property
    def explanation_config(self) -> dict[str, Any]:
        """What determines the stored attributions: explainer, its options and the target."""
        explainer = type(self.explainer)
        return {
            "explainer": explainer.registry_name or f"{explainer.__module__}.{explainer.__name__}",
            "explainer_kwargs": self.explainer_kwargs,
            "target": self.target,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's scores (N, classes)."""
        return self.model(x)

    def _writer(self) -> Any:
        from foxcem.integrations.lightning.writer import AttributionWriter

        trainer = self._trainer
        if trainer is None:
            return None
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, AttributionWriter):
                return callback
        return None

    def explain_batch(
        self, x: torch.Tensor, y: Optional[torch.Tensor], index: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Explain one batch: x (B, ...), y (B,) or ``None``, index (B,) -> the prediction dict."""
        x, y, index = _plain(x), _plain(y), _plain(index)
        assert x is not None and index is not None
        if self.target == "label":
            if y is None:
                raise ValueError("target='label' needs batches (x, y, index)")
            targets = y.to(x.device).long()
        else:
            with preserve_model_state(self.model, inputs=x), torch.no_grad():
                targets = _plain(self.model(x).argmax(dim=1))
        assert targets is not None
        result = self.explainer.calculate_features(self.model, x, targets, **self.explainer_kwargs)
        with_delta = self.explainer_kwargs.get("return_convergence_delta", False) is True
        result, delta = split_convergence_delta(result, with_delta)
        out = {"indices": index.long(), "attributions": result, "targets": targets}
        if isinstance(delta, torch.Tensor):
            out["delta"] = delta.detach()
        return out

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Explain the samples of ``batch`` not stored yet (see the class docstring)."""
        x, y, index = split_indexed_batch(batch)
        writer = self._writer()
        if writer is not None:
            todo = writer.pending(index).to(index.device)
            if not bool(todo.any()):
                return {"indices": index, "skipped": True}
            if not bool(todo.all()):
                x, index = x[todo], index[todo]
                y = None if y is None else y[todo]
        return self.explain_batch(x, y, index)
