"""Explain a fixed set of validation samples while a Lightning model trains.

Needs the ``lightning`` extra (``pip install 'foxcem[lightning]'``); ``import foxcem`` alone never
imports Lightning.

.. code-block:: python

    from lightning.pytorch import Trainer
    from foxcem.integrations.lightning.callback import ExplanationCallback

    trainer = Trainer(callbacks=[ExplanationCallback("integrated_gradients", num_samples=8,
                                                     explainer_kwargs={"n_steps": 32})])
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError as exc:  # pragma: no cover - exercised by a test with Lightning hidden
    raise ImportError(
        "foxcem.integrations.lightning.callback needs PyTorch Lightning, which is not installed: "
        "pip install 'foxcem[lightning]'"
    ) from exc

from foxcem.core.checks import (
    TargetLike,
    check_bool,
    check_choice,
    check_positive_int,
    check_target,
    check_tensor,
)
from foxcem.core.explainer import Explainer, split_convergence_delta
from foxcem.core.model_state import preserve_model_state
from foxcem.core.registry import resolve_explainer
from foxcem.integrations.lightning.batches import (
    class_labels,
    default_batch_transform,
    plain_cpu,
)
from foxcem.integrations.lightning.image_logging import log_images, save_pngs
from foxcem.viz.images import SIGNS, explanation_images

__all__ = ["ExplanationCallback"]

#: Methods whose convergence delta (completeness gap) is recorded by default.
DELTA_METHODS = ("integrated_gradients", "layer_integrated_gradients")


class ExplanationCallback(Callback):
    """Every ``every_n_epochs`` epochs, at the end of validation, explain fixed samples and log them.

    The samples are either given (``samples``) or the first ``num_samples`` of the validation
    data, captured once as the batches pass through validation (no extra pass over the
    dataloader, so no random number is drawn and no collective is triggered). Each time, the
    callback

    * explains them with the explainer (registered name or instance) and ``explainer_kwargs``;
    * logs an image grid — inputs, heatmaps, overlays — and the heatmaps to every logger that
      supports images: TensorBoard's ``experiment.add_image(s)``, or a logger's ``log_image``
      method (e.g. Weights & Biases); other loggers are skipped with one warning;
    * saves PNGs (``torchvision.io.write_png``) under ``dirpath`` (default:
      ``<trainer.log_dir>/explanations``): ``<name>/epoch=E-step=S/grid.png`` and one
      ``overlay_<i>.png`` (heatmap over the input) per sample;
    * logs scalar summaries with ``pl_module.log``: ``<tag>/mean_abs_attribution``, the mean
      absolute convergence delta of Integrated Gradients (``<tag>/abs_convergence_delta``,
      requested automatically unless ``return_convergence_delta`` is given) and, for CEM, the
      success rate ``<tag>/success_rate`` (a pertinent negative flips the prediction, a pertinent
      positive keeps it).

    The callback never aborts training: a batch it cannot read or an explanation that fails is
    skipped with one warning. Labels may be (N,), (N, 1) or one-hot / per-class scores (N, C).

    Only global rank 0 explains and logs. Training is not affected: the explanation runs under
    the model-state guard (eval mode, parameters, buffers, gradients, hooks and the global RNG
    restored) and gradients are enabled although Lightning validates under inference mode.
    Sanity-check validation runs capture samples but explain nothing.

    Args:
        explainer: a registered explainer name or an :class:`~foxcem.Explainer` instance.
        samples: fixed inputs (N, C, H, W); ``None``: the first ``num_samples`` validation
            inputs.
        targets: classes to explain for ``samples`` (int, sequence, (N,) tensor); ``None``: the
            prediction at each explanation time.
        num_samples: how many validation inputs to capture when ``samples`` is ``None``.
        every_n_epochs: explain when ``(epoch + 1) % every_n_epochs == 0``.
        explainer_kwargs: options of ``calculate_features``.
        use_labels: with captured samples, explain the batch's labels instead of the prediction.
        batch_transform: maps a validation batch to ``(x, y or None)``; the default handles a
            tensor, a tuple/list ``(x, y, ...)`` and common dict keys.
        get_model: maps the LightningModule to the model to explain (default: the LightningModule
            itself, whose ``forward`` must return class scores (N, classes)).
        sign: what the heatmaps show: ``"absolute"``, ``"positive"``, ``"negative"`` or ``"all"``.
        dirpath: where the PNGs go; ``None``: ``<trainer.log_dir>/explanations``.
        tag: prefix of the logged images and scalars; ``None``: ``explanations/<method name>``.
        log_images: send images to the loggers.
        save_png: write PNG files.
        min_image_size: small images are enlarged (nearest neighbour, integer factor) to at
            least this many pixels on their short side.
    """

    def __init__(
        self,
        explainer: Union[str, Explainer] = "integrated_gradients",
        samples: Optional[torch.Tensor] = None,
        targets: TargetLike = None,
        num_samples: int = 8,
        every_n_epochs: int = 1,
        explainer_kwargs: Optional[Mapping[str, Any]] = None,
        use_labels: bool = False,
        batch_transform: Optional[
            Callable[[Any], tuple[torch.Tensor, Optional[torch.Tensor]]]
        ] = None,
        get_model: Optional[Callable[[LightningModule], Any]] = None,
        sign: str = "absolute",
        dirpath: Union[None, str, os.PathLike] = None,
        tag: Optional[str] = None,
        log_images: bool = True,
        save_png: bool = True,
        min_image_size: int = 64,
    ) -> None:
        super().__init__()
        self.explainer = resolve_explainer(explainer)
        self.name = type(self.explainer).registry_name or type(self.explainer).__name__
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.every_n_epochs = check_positive_int(every_n_epochs, "every_n_epochs")
        self.explainer_kwargs = dict(explainer_kwargs or {})
        self.use_labels = check_bool(use_labels, "use_labels")
        self.batch_transform = batch_transform or default_batch_transform
        self.get_model = get_model
        self.sign = check_choice(sign, "sign", SIGNS)
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.tag = tag or f"explanations/{self.name}"
        self.log_images = check_bool(log_images, "log_images")
        self.save_png = check_bool(save_png, "save_png")
        self.min_image_size = check_positive_int(min_image_size, "min_image_size")
        self.samples: Optional[torch.Tensor] = None
        self.targets: Optional[torch.Tensor] = None
        self._fixed = samples is not None
        if samples is not None:
            check_tensor(samples, "samples")
            self.samples = plain_cpu(samples)
            if targets is not None:
                # Range-checked against the model's outputs when explaining.
                self.targets = check_target(targets, len(samples), 2**62, name="targets")
        elif targets is not None:
            raise ValueError("`targets` needs `samples`; use use_labels=True for captured samples")
        self._labels: list[torch.Tensor] = []
        self._captured: list[torch.Tensor] = []
        self._warned: set[str] = set()
        self._resolved_dir: Optional[Path] = None
        #: The last explanation: ``{"epoch", "step", "attributions", "targets", "metrics",
        #: "png_dir"}`` (rank 0), for inspection.
        self.last: Optional[dict[str, Any]] = None
        self.last_attributions: Optional[torch.Tensor] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(explainer=self.name, tag=self.tag)

    # -- capture ----------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Resolve the PNG directory (on every rank: ``trainer.log_dir`` is a collective)."""
        if self.dirpath is not None:
            self._resolved_dir = self.dirpath
        else:
            self._resolved_dir = Path(trainer.log_dir or trainer.default_root_dir) / "explanations"

    def _have(self) -> int:
        return sum(len(t) for t in self._captured)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Capture the first ``num_samples`` validation inputs (once, on rank 0)."""
        if self._fixed or self.samples is not None or dataloader_idx != 0:
            return
        if not trainer.is_global_zero:
            return
        try:
            x, y = self.batch_transform(batch)
            if not isinstance(x, torch.Tensor) or x.dim() == 0 or len(x) == 0:
                return  # an empty batch: nothing to capture
            need = self.num_samples - self._have()
            labels = None
            if self.use_labels:
                if y is None:
                    raise ValueError("use_labels=True but the validation batches carry no labels")
                labels = class_labels(y, len(x))[:need]
            self._captured.append(plain_cpu(x[:need]))
            if labels is not None:
                self._labels.append(plain_cpu(labels))
        except Exception as exc:  # never abort training over an explanation
            self._warn_once("capture", f"ExplanationCallback cannot read a validation batch: {exc}")
            return
        if self._have() >= self.num_samples:
            self._finish_capture()

    def _finish_capture(self) -> None:
        """The captured inputs (and labels) become the samples (and targets) to explain."""
        self.samples = torch.cat(self._captured)
        self.targets = torch.cat(self._labels) if self.use_labels else None
        self._captured, self._labels = [], []

    # -- explain ----------------------------------------------------------------------------

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Explain, log and save (rank 0, every ``every_n_epochs`` epochs, not in sanity check)."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        if self.samples is None and self._captured:  # fewer validation samples than asked for
            self._finish_capture()
        if self.samples is None:
            self._warn_once("no-samples", "ExplanationCallback: no validation samples to explain")
            return
        try:
            self.explain(trainer, pl_module)
        except Exception as exc:  # never abort training over an explanation
            self._warn_once(
                "explain",
                f"ExplanationCallback: explaining with {self.name} failed and is skipped, "
                f"training goes on: {type(exc).__name__}: {exc}",
            )

    def explain(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """Explain the samples now, log and save; returns :attr:`last`."""
        assert self.samples is not None
        model = self.get_model(pl_module) if self.get_model is not None else pl_module
        x = self.samples.to(pl_module.device)
        precision = getattr(trainer, "precision_plugin", None)
        if precision is not None:  # e.g. "bf16-true" casts inputs like Lightning does for batches
            x = precision.convert_input(x)
        targets = None if self.targets is None else self.targets.to(pl_module.device)
        kwargs = dict(self.explainer_kwargs)
        if self.name in DELTA_METHODS:
            kwargs.setdefault("return_convergence_delta", True)
        result = self.explainer.calculate_features(model, x, targets, **kwargs)
        with_delta = kwargs.get("return_convergence_delta", False) is True
        attributions, delta = split_convergence_delta(result, with_delta)
        attributions = attributions.detach()
        with preserve_model_state(model, inputs=x), torch.no_grad():
            if targets is None:
                targets = model(x).argmax(dim=1)
            metrics = self._metrics(model, x, attributions, targets, delta, kwargs)
        step = trainer.global_step
        for name, value in metrics.items():
            pl_module.log(
                f"{self.tag}/{name}", value, on_step=False, on_epoch=True, rank_zero_only=True
            )
        images = explanation_images(x, attributions, sign=self.sign, min_size=self.min_image_size)
        self.last_attributions = attributions.float().cpu()
        if self.log_images:
            self._log_images(trainer, images, step)
        png_dir = None
        if self.save_png:
            png_dir = self._save_pngs(images, trainer.current_epoch, step)
        self.last = {
            "epoch": trainer.current_epoch,
            "step": step,
            "attributions": attributions.cpu(),
            "targets": targets.cpu(),
            "metrics": metrics,
            "png_dir": png_dir,
        }
        return self.last

    def _metrics(
        self,
        model: Any,
        x: torch.Tensor,
        attributions: torch.Tensor,
        targets: torch.Tensor,
        delta: Optional[torch.Tensor],
        kwargs: Mapping[str, Any],
    ) -> dict[str, float]:
        metrics = {"mean_abs_attribution": float(attributions.abs().float().mean())}
        if isinstance(delta, torch.Tensor):
            metrics["abs_convergence_delta"] = float(delta.abs().float().mean())
        meta = getattr(self.explainer, "meta_data", {})
        if self.name == "cem" and "success" in meta:
            # success: the returned δ flips (PN) / keeps (PP) the class; found: it does so with
            # the margin κ asked for, i.e. it is an explanation
            metrics["success_rate"] = float(meta["success"].float().mean())
            if "found" in meta:
                metrics["found_rate"] = float(meta["found"].float().mean())
        return metrics

    # -- images -----------------------------------------------------------------------------

    def _log_images(self, trainer: Trainer, images: Mapping[str, torch.Tensor], step: int) -> None:
        for logger_name, problem in log_images(trainer.loggers, self.tag, images, step):
            self._warn_once(logger_name, f"ExplanationCallback: {problem}")

    def _save_pngs(self, images: Mapping[str, torch.Tensor], epoch: int, step: int) -> Path:
        root = self._resolved_dir or Path("explanations")
        folder = root / re.sub(r"[^A-Za-z0-9._=-]+", "_", self.name) / f"epoch={epoch}-step={step}"
        samples = None if self.samples is None else plain_cpu(self.samples).float()
        save_pngs(folder, images, self.last_attributions, samples, self.sign, self.name)
        return folder

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    # -- checkpointing ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The fixed samples (and targets), so a resumed run explains the same ones."""
        return {"samples": self.samples, "targets": self.targets}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state_dict.get("samples") is not None and not self._fixed:
            self.samples = state_dict["samples"]
            self.targets = state_dict.get("targets")
