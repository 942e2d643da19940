"""ExplanationGenerator: the optimisation loop composing a loss, an optimizer and a gradient."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Optional, Union

import torch

from foxcem.cem.gradients import URVGradientEstimator
from foxcem.cem.loss import CEMLoss
from foxcem.cem.optimizers import AoExpGrad
from foxcem.core.checks import TargetLike, check_positive_int
from foxcem.core.progress import progress_bar

__all__ = ["ExplanationGenerator"]

#: ``callback(iteration, info)``; ``info`` holds (N,) tensors ``loss``, ``attack``, ``success``,
#: ``l1``, ``l2``, ``active`` and the current explanation ``delta`` (N, …). Return True to stop.
Callback = Callable[[int, dict[str, Any]], Optional[bool]]


class ExplanationGenerator:
    """Run a CEM optimisation: ``savepoints, meta_data = generator.run(image=x, inference_call=f)``.

    Each iteration computes the gradient at the optimizer's current point, writes it into
    ``delta.grad`` and steps; the explanation is the optimizer's averaged iterate
    (``optimizer.output``).

    Args:
        loss: the loss class, called as ``loss(inference_call, image, **loss_kwargs)``
            (:class:`CEMLoss`).
        optimizer: the optimizer class, called as ``optimizer([delta], **optimizer_kwargs)``;
            ``lower``/``upper`` default to the loss's bounds (:class:`AoExpGrad`).
        gradient: the gradient class, called as ``gradient(loss, **gradient_kwargs)``
            (:class:`URVGradientEstimator`; :class:`AutogradGradient` for white-box models).
        loss_kwargs, optimizer_kwargs, gradient_kwargs: their keyword arguments.
        num_iter: number of optimizer steps.
        save_freq: ``None`` keeps only the final explanation. An int k keeps the start value under
            key ``"1"``, the explanation after every k-th iteration (k ≥ 2) and the final one.
        verbose: print the mean loss, ‖δ‖₁, ‖δ‖²₂ and success rate as it goes: ``True`` every
            ``num_iter // 10`` iterations, an int k every k iterations.
        early_stop: freeze a sample once its attack term reached −κ and its explanation changed
            by at most ``early_stop_tol`` (max-abs) in the last iteration; stop when all are
            frozen (checked every ``early_stop_check`` iterations, the only host sync).
        early_stop_tol: the change tolerance for ``early_stop``.
        early_stop_check: how often to check whether every sample is frozen.
        keep_best: return, per sample, the successful iterate with the smallest regulariser
            l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ seen (the last iterate where none succeeded).
        history: record per-sample loss, attack, ‖δ‖₁, ‖δ‖²₂ and success every iteration (one
            extra forward of the N explanations per iteration).
        progress: show a tqdm progress bar.
        callback: called every iteration, see :data:`Callback`.
        start_noise: PN only: standard deviation of the Gaussian start (0: start at zeros).
        generator: ``torch.Generator`` on the input's device for the start noise.
    """

    def __init__(
        self,
        loss: type = CEMLoss,
        optimizer: type = AoExpGrad,
        gradient: type = URVGradientEstimator,
        loss_kwargs: Optional[dict[str, Any]] = None,
        optimizer_kwargs: Optional[dict[str, Any]] = None,
        gradient_kwargs: Optional[dict[str, Any]] = None,
        num_iter: int = 1000,
        save_freq: Optional[int] = None,
        verbose: Union[bool, int] = False,
        early_stop: bool = False,
        early_stop_tol: float = 1e-4,
        early_stop_check: int = 10,
        keep_best: bool = False,
        history: bool = True,
        progress: bool = False,
        callback: Optional[Callback] = None,
        start_noise: float = 0.0,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        for name, cls in (("loss", loss), ("optimizer", optimizer), ("gradient", gradient)):
            if not callable(cls):
                raise TypeError(f"`{name}` must be a class (callable), got {type(cls).__name__}")
        self.loss = loss
        self.optimizer = optimizer
        self.gradient = gradient
        self.loss_kwargs = dict(loss_kwargs or {})
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.gradient_kwargs = dict(gradient_kwargs or {})
        self.num_iter = check_positive_int(num_iter, "num_iter")
        self.save_freq = None if save_freq is None else check_positive_int(save_freq, "save_freq")
        if isinstance(verbose, bool):
            self.verbose_every = max(1, self.num_iter // 10) if verbose else 0
        else:
            self.verbose_every = check_positive_int(verbose, "verbose")
        self.early_stop = bool(early_stop)
        if not early_stop_tol >= 0:
            raise ValueError(f"`early_stop_tol` must be >= 0, got {early_stop_tol}")
        self.early_stop_tol = float(early_stop_tol)
        self.early_stop_check = check_positive_int(early_stop_check, "early_stop_check")
        self.keep_best = bool(keep_best)
        self.history = bool(history)
        self.progress = bool(progress)
        if callback is not None and not callable(callback):
            raise TypeError(f"`callback` must be callable, got {type(callback).__name__}")
        self.callback = callback
        if not start_noise >= 0:
            raise ValueError(f"`start_noise` must be >= 0, got {start_noise}")
        self.start_noise = float(start_noise)
        self.generator = generator

    def _regulariser(
        self, opt: torch.optim.Optimizer, l1n: torch.Tensor, l2n: torch.Tensor
    ) -> torch.Tensor:
        """l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ per sample, from the norms ``l1n`` = ‖δ‖₁ and ``l2n`` = ‖δ‖²₂."""
        group = opt.param_groups[0]
        l1, l2 = float(group.get("l1", 0.0)), float(group.get("l2", 0.0))
        return l1 * l1n + 0.5 * l2 * l2n

    def run(
        self,
        image: torch.Tensor,
        inference_call: Callable[[torch.Tensor], torch.Tensor],
        meta_data: Optional[dict[str, Any]] = None,
        target: TargetLike = None,
    ) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
        """Explain ``image`` (N, …) under ``inference_call``.

        Args:
            image: the batch explained, (N, …), on the model's device.
            inference_call: the model, mapping (M, …) to class scores (M, classes).
            meta_data: a dict passed through to the returned meta data (its keys are kept;
                the keys listed below are overwritten).
            target: the explained class per sample (``None``: the prediction), handed to the
                loss as ``target=``.

        Returns:
            ``(savepoints, meta_data)``. ``savepoints`` is an ``OrderedDict`` mapping the
            iteration as a string to the explanation δ (N, …) at that point (see ``save_freq``);
            its last entry is the result. ``meta_data`` adds, on the input's device:
            ``loss_history``, ``attack_history``, ``l1_history``, ``l2_history`` (T, N) float and
            ``success_history`` (T, N) bool (when ``history``), ``loss``, ``attack``,
            ``success`` (N,) of the result, ``iterations`` (N,) steps taken per sample,
            ``best_found`` (N,) bool (with ``keep_best``), and ``num_iter`` (iterations run).
        """
        loss_kwargs = dict(self.loss_kwargs)
        if target is not None:
            loss_kwargs["target"] = target
        loss = self.loss(inference_call, image, **loss_kwargs)
        gradient = self.gradient(loss, **self.gradient_kwargs)
        if hasattr(loss, "start"):
            if getattr(loss, "mode", None) == "PN" and self.start_noise > 0:
                delta0 = loss.start(noise_std=self.start_noise, generator=self.generator)
            else:
                delta0 = loss.start()
        else:
            delta0 = torch.zeros_like(image)
        delta0 = delta0.detach()
        opt_kwargs = dict(self.optimizer_kwargs)
        for key in ("lower", "upper"):
            if key not in opt_kwargs and hasattr(loss, key):
                opt_kwargs[key] = getattr(loss, key)
        param = delta0.clone()
        opt = self.optimizer([param], **opt_kwargs)
        evaluate = getattr(loss, "evaluate", None)
        kappa = float(getattr(loss, "K", 0.0))
        n = param.shape[0]
        device = param.device

        savepoints: OrderedDict[str, torch.Tensor] = OrderedDict()
        if self.save_freq is not None:
            savepoints["1"] = delta0.clone()
        track = (
            self.history or self.early_stop or self.keep_best
            or self.callback is not None or self.verbose_every > 0
        )  # fmt: skip
        records: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("loss", "attack", "l1", "l2", "success")
        }
        active = torch.ones(n, dtype=torch.bool, device=device)
        iterations = torch.zeros(n, dtype=torch.long, device=device)
        best = delta0.clone() if self.keep_best else None
        best_reg = torch.full((n,), float("inf"), device=device) if self.keep_best else None
        best_found = torch.zeros(n, dtype=torch.bool, device=device)
        previous = delta0.clone()
        current = delta0.clone()
        last_eval = None
        iteration = 0
        bar = progress_bar(self.num_iter, "CEM", enabled=self.progress)
        try:
            for iteration in range(1, self.num_iter + 1):
                param.grad = gradient(param)
                opt.step()
                iterations += active.long()
                current = opt.output(param)
                stop = False
                if track:
                    last_eval = self._evaluate(loss, evaluate, current)
                    ev_loss, ev_attack, ev_success = last_eval
                    flat = current.reshape(n, -1)
                    l1n = flat.abs().sum(dim=1)
                    l2n = flat.pow(2).sum(dim=1)
                    if self.history:
                        for key, value in zip(
                            ("loss", "attack", "l1", "l2", "success"),
                            (ev_loss, ev_attack, l1n, l2n, ev_success),
                        ):
                            records[key].append(value)
                    if self.keep_best:
                        reg = self._regulariser(opt, l1n, l2n)
                        better = ev_success & (reg < best_reg)
                        best_reg = torch.where(better, reg, best_reg)
                        mask = better.reshape((-1,) + (1,) * (current.dim() - 1))
                        best = torch.where(mask, current, best)
                        best_found |= better
                    if self.early_stop:
                        change = (current - previous).abs().reshape(n, -1).amax(dim=1)
                        done = (ev_attack <= -kappa) & (change <= self.early_stop_tol)
                        active = active & ~done
                        if hasattr(opt, "set_active"):
                            opt.set_active(active, param)
                        if iteration % self.early_stop_check == 0 and not bool(active.any()):
                            stop = True
                    if self.callback is not None:
                        info = {
                            "delta": current, "loss": ev_loss, "attack": ev_attack,
                            "success": ev_success, "l1": l1n, "l2": l2n, "active": active,
                        }  # fmt: skip
                        if self.callback(iteration, info):
                            stop = True
                    if self.verbose_every and iteration % self.verbose_every == 0:
                        print(
                            f"CEM iter {iteration}/{self.num_iter}: "
                            f"loss {float(ev_loss.float().mean()):.4g}  "
                            f"l1 {float(l1n.mean()):.4g}  l2 {float(l2n.mean()):.4g}  "
                            f"success {float(ev_success.float().mean()):.2%}"
                        )
                previous = current
                bar.update(1)
                if stop:
                    break
                if (
                    self.save_freq is not None
                    and iteration % self.save_freq == 0
                    and iteration != self.num_iter
                    and iteration > 1
                ):
                    savepoints[str(iteration)] = current.clone()
        finally:
            bar.close()

        result = current
        if self.keep_best and best is not None:
            mask = best_found.reshape((-1,) + (1,) * (current.dim() - 1))
            result = torch.where(mask, best, current)
        savepoints[str(iteration)] = result.clone()
        # Without keep_best the result is the iterate evaluated last in the loop (when tracked).
        if last_eval is not None and not self.keep_best:
            final = last_eval
        else:
            final = self._evaluate(loss, evaluate, result)

        meta: dict[str, Any] = dict(meta_data or {})
        if self.history and records["loss"]:
            for key, values in records.items():
                meta[f"{key}_history"] = torch.stack(values)
        meta["loss"], meta["attack"], meta["success"] = final
        meta["iterations"] = iterations
        meta["num_iter"] = iteration
        if self.keep_best:
            meta["best_found"] = best_found
        return savepoints, meta

    @staticmethod
    def _evaluate(
        loss: Any, evaluate: Optional[Callable[..., Any]], delta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, attack, success) per sample; attack/success are NaN/False for a plain loss."""
        with torch.no_grad():
            if evaluate is not None:
                ev = evaluate(delta)
                return ev.loss.detach(), ev.attack.detach(), ev.success
            value = loss(delta).detach()
        return (
            value,
            torch.full_like(value, float("nan")),
            torch.zeros_like(value, dtype=torch.bool),
        )

    def __repr__(self) -> str:
        return (
            f"ExplanationGenerator(loss={getattr(self.loss, '__name__', self.loss)}, "
            f"optimizer={getattr(self.optimizer, '__name__', self.optimizer)}, "
            f"gradient={getattr(self.gradient, '__name__', self.gradient)}, "
            f"num_iter={self.num_iter}, save_freq={self.save_freq})"
        )
