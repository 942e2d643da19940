"""ExplanationGenerator: the optimisation loop composing a loss, an optimizer and a gradient source.

It reads like a PyTorch training loop — ``zero_grad``, the gradient source fills ``.grad``,
``step`` — run in rounds of a per-sample search over c (:mod:`foxcem.cem.search`), remembering the
best feasible iterate (:mod:`foxcem.cem.tracking`). Each iterate is judged by the evaluation the
gradient source made at it anyway, so knowing how good δ is costs no extra model call.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import OrderedDict
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from foxcem.cem.evaluation import check_mode
from foxcem.cem.loss import CEMLoss
from foxcem.cem.optimisation import CountedModel, OptimisationRun
from foxcem.cem.optimizers import AoExpGrad
from foxcem.cem.restart import check_pn_start, far_corner, merge_restart
from foxcem.cem.tracking import start_point, warn_missing
from foxcem.cem.urv import URVGradientEstimator
from foxcem.core.checks import TargetLike, check_bool, check_finite_float, check_positive_int
from foxcem.core.model_state import preserve_model_state
from foxcem.core.threads import ThreadsLike, check_threads, choose_threads, cpu_threads

__all__ = ["ExplanationGenerator", "Callback"]

#: ``callback(iteration, info)``; ``info`` holds (N,) tensors ``loss``, ``attack``, ``success``,
#: ``l1``, ``l2``, ``active`` and the current explanation ``delta`` (N, …). Return True to stop.
Callback = Callable[[int, dict[str, Any]], Optional[bool]]


def check_closure_free(optimizer: Any) -> None:
    """Refuse an optimizer whose ``step`` needs a closure (e.g. ``torch.optim.LBFGS``): the loop
    fills ``.grad`` from its gradient source once per step and has no closure to give."""
    step = getattr(optimizer, "step", None)
    try:
        parameter = inspect.signature(step).parameters.get("closure")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        name = getattr(optimizer, "__name__", type(optimizer).__name__)
        raise TypeError(
            f"`optimizer` {name} needs a closure that re-evaluates the loss at every step; the "
            "generator fills .grad from its gradient source once per step instead: use an "
            "optimizer whose step() takes no closure (AoExpGrad, AdaExpGrad, SGD, Adam, ...)"
        )


def values_per_call(gradient: Any, delta0: torch.Tensor, image: torch.Tensor) -> int:
    """Input values the model sees per call of ``gradient`` (what the thread choice follows)."""
    rows_per_call = getattr(gradient, "rows_per_call", None)
    n = delta0.shape[0]
    rows = rows_per_call(n, delta0.shape[1:]) if callable(rows_per_call) else n
    return int(rows) * image[0].numel()


class ExplanationGenerator:
    """Run a CEM optimisation: ``savepoints, meta_data = generator.run(image=x, inference_call=f)``.

    Args:
        loss: the loss class, called as ``loss(inference_call, image, **loss_kwargs)``
            (:class:`~foxcem.cem.CEMLoss`).
        optimizer: any ``torch.optim.Optimizer`` class, called as
            ``optimizer([delta], **optimizer_kwargs)`` (:class:`~foxcem.cem.AoExpGrad`). The
            loss's bounds are passed as ``lower``/``upper`` when the optimizer takes them, and
            enforced by projection after every step in any case; ``output()`` gives the
            explanation when the optimizer has it (else δ itself).
        gradient: the gradient-source class, called as ``gradient(loss, **gradient_kwargs)``
            (:class:`~foxcem.cem.URVGradientEstimator`; :class:`~foxcem.cem.AutogradGradient`
            for white-box models; any :class:`~foxcem.cem.GradientSource`).
        loss_kwargs, optimizer_kwargs, gradient_kwargs: their keyword arguments.
        num_iter: optimizer steps per round.
        save_freq: ``None`` keeps only the final explanation. An int k keeps the start value under
            key ``"1"``, the explanation after every k-th iteration (k ≥ 2) and the final one
            (keys count iterations across rounds).
        verbose: print the mean loss, ‖δ‖₁, ‖δ‖²₂ and success rate as it goes: ``True`` every
            ``num_iter // 10`` iterations, an int k every k iterations.
        early_stop: freeze a sample once its attack reached −κ and δ changed by at most
            ``early_stop_tol`` (max-abs) in an iteration; frozen samples leave the model calls,
            and a round ends when all are frozen (checked every ``early_stop_check`` iterations).
        early_stop_tol, early_stop_check: see ``early_stop``.
        keep_best: return per sample the feasible iterate (attack holds with margin κ) with the
            smallest l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ of any round (the optimizer's l1, l2; 1, 0 without).
            A sample without one keeps its last iterate, ``meta_data["found"]`` False, warned.
        history: record per-sample loss, attack, ‖δ‖₁, ‖δ‖²₂ and success of every iterate.
        progress: show a tqdm progress bar.
        callback: called every iteration, see :data:`Callback`.
        start_noise: PN only: standard deviation of the Gaussian start (0: start at zeros).
        generator: ``torch.Generator`` on the input's device for the start noise.
        c_steps: rounds of the per-sample search over c (1: no search); each round restarts
            from δ₀. Needs a loss with ``set_c`` (as :class:`~foxcem.cem.CEMLoss`).
        sparsify: after the run, drop the smallest entries of each feasible δ while it stays
            feasible, moving the dropped mass onto the kept entries where that keeps it feasible
            (:mod:`foxcem.cem.sparsify`; a few model calls): removes the faint entries a noisy
            gradient estimate leaves behind.
        pn_start: where a PN's search starts: ``"zeros"`` (δ = 0, or the start noise),
            ``"full"`` (the box's far corner, every entry at its largest change) or ``"auto"``
            (δ = 0, then a second search from the far corner for the samples the first leaves
            without a PN, at the cost of a second search of the batch;
            ``meta_data["restarted"]`` says which; :mod:`foxcem.cem.restart`).
        threads: CPU threads for the optimisation: ``"auto"`` (default: one thread when a model
            call is small, where more threads lose on a busy machine and gain little on an idle
            one; the caller's setting otherwise), an int, or ``None`` (the caller's setting). The
            caller's setting is restored afterwards (:mod:`foxcem.core.threads`).
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
        c_steps: int = 1,
        threads: ThreadsLike = "auto",
        sparsify: bool = False,
        pn_start: str = "zeros",
    ) -> None:
        for name, cls in (("loss", loss), ("optimizer", optimizer), ("gradient", gradient)):
            if not callable(cls):
                raise TypeError(f"`{name}` must be a class (callable), got {type(cls).__name__}")
        self.loss, self.optimizer, self.gradient = loss, optimizer, gradient
        check_closure_free(optimizer)
        self.loss_kwargs = dict(loss_kwargs or {})
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.gradient_kwargs = dict(gradient_kwargs or {})
        self.num_iter = check_positive_int(num_iter, "num_iter")
        self.save_freq = None if save_freq is None else check_positive_int(save_freq, "save_freq")
        if isinstance(verbose, bool):
            self.verbose_every = max(1, self.num_iter // 10) if verbose else 0
        else:
            self.verbose_every = check_positive_int(verbose, "verbose")
        self.early_stop = check_bool(early_stop, "early_stop")
        self.early_stop_tol = check_finite_float(early_stop_tol, "early_stop_tol", minimum=0.0)
        self.early_stop_check = check_positive_int(early_stop_check, "early_stop_check")
        self.keep_best = check_bool(keep_best, "keep_best")
        self.history = check_bool(history, "history")
        self.progress = check_bool(progress, "progress")
        if callback is not None and not callable(callback):
            raise TypeError(f"`callback` must be callable, got {type(callback).__name__}")
        self.callback = callback
        self.start_noise = check_finite_float(start_noise, "start_noise", minimum=0.0)
        self.generator = generator
        self.c_steps = check_positive_int(c_steps, "c_steps")
        self.threads = check_threads(threads)
        self.sparsify = check_bool(sparsify, "sparsify")
        mode = check_mode(self.loss_kwargs.get("mode", "PN")) if loss is CEMLoss else "PN"
        self.pn_start = check_pn_start(pn_start, mode, self.start_noise)

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
            ``(savepoints, meta_data)``: ``savepoints`` maps the iteration (a string) to δ
            shaped like the input (segment values expanded; see ``save_freq``), the last entry
            being the result. ``meta_data`` adds ``<loss|attack|l1|l2|success>_history``
            (T, N) with ``history``; ``loss``, ``attack``, ``success`` (N,) of the result;
            ``prediction`` (N,: the class the model gives the returned explanation), ``target``
            (N,: the explained class), ``base`` (what the model sees for δ = 0: v for PP, x for
            PN; for a :class:`~foxcem.cem.CEMLoss`),
            ``iterations`` (N,), ``num_iter`` (all rounds), ``c`` (N,) of the last round,
            ``model_calls``, ``invalid`` (N,: a NaN/inf gradient), ``segment_values`` for a
            segment-space loss, and ``found`` (N,) (also ``best_found``): whether the returned
            δ holds its attack with margin κ, judged by the model on the returned δ whatever the
            options (for a loss with ``feasible``, as :class:`~foxcem.cem.CEMLoss`). ``model_calls``
            counts every call of ``inference_call`` during the run, whichever loss or gradient
            source made it.
        """
        # Every module the run calls — the model, an autoencoder, any module among the loss's
        # arguments — in eval mode (no BatchNorm update), everything restored afterwards.
        modules = [inference_call, *self.loss_kwargs.values()]
        with contextlib.ExitStack() as stack:
            for index, module in enumerate(modules):
                if isinstance(module, nn.Module) and all(module is not m for m in modules[:index]):
                    inputs = image if index == 0 else None
                    stack.enter_context(preserve_model_state(module, inputs, copy_grads=False))
            return self._run(image, inference_call, meta_data, target)

    def _run(
        self,
        image: torch.Tensor,
        inference_call: Callable[[torch.Tensor], torch.Tensor],
        meta_data: Optional[dict[str, Any]],
        target: TargetLike,
    ) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
        loss_kwargs = dict(self.loss_kwargs)
        if target is not None:
            loss_kwargs["target"] = target
        model = CountedModel(inference_call)
        loss, gradient = self.build(model, image, loss_kwargs)
        if not callable(gradient):
            raise TypeError(f"the gradient source must be callable, got {type(gradient).__name__}")
        delta0 = start_point(loss, image, self.start_noise, self.generator)
        is_pn = getattr(loss, "mode", None) == "PN" and hasattr(loss, "upper")
        if self.pn_start == "full" and is_pn:
            delta0 = far_corner(loss, delta0)
        c0 = getattr(loss, "c", None)
        c0 = c0.clone() if isinstance(c0, torch.Tensor) else c0
        run = OptimisationRun(self, loss, gradient, delta0, model)
        values = values_per_call(gradient, delta0, image)
        restart = self.pn_start == "auto" and is_pn and hasattr(loss, "set_c")
        with cpu_threads(choose_threads(self.threads, values, image.device)):
            first = run.finish(*run.search(), meta_data, warn=not restart)
            found = first[1].get("found")
            if not restart or found is None or bool(found.all()):
                return first
            loss.set_c(c0)  # the second search starts its c search afresh
            again = OptimisationRun(self, loss, gradient, far_corner(loss, delta0), model)
            again.done = run.done  # steps (callbacks, savepoints) count on across both
            again.watch = run.watch  # one cost announcement per call
            second = again.finish(*again.search(), meta_data, warn=False)
            merged = merge_restart(first, second, ~found)
            warn_missing(merged[1]["found"])
            return merged

    def build(
        self, model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, loss_kwargs: dict
    ) -> tuple[Any, Any]:
        """The loss and the gradient source of a run: ``loss(model, image, **loss_kwargs)`` and
        ``gradient(loss, **gradient_kwargs)``. ``model`` is the counted model every model call
        must go through (override to build other component classes, as
        :mod:`foxcem.compat.max` does)."""
        loss = self.loss(model, image, **loss_kwargs)
        return loss, self.gradient(loss, **self.gradient_kwargs)

    def __repr__(self) -> str:
        parts = [getattr(c, "__name__", c) for c in (self.loss, self.optimizer, self.gradient)]
        return (
            f"ExplanationGenerator(loss={parts[0]}, optimizer={parts[1]}, gradient={parts[2]}, "
            f"num_iter={self.num_iter}, save_freq={self.save_freq}, c_steps={self.c_steps})"
        )
