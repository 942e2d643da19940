"""ExplanationGenerator: the optimisation loop composing a loss, an optimizer and a gradient source.

It reads like a PyTorch training loop — ``zero_grad``, the gradient source fills ``.grad``,
``step`` — run in rounds of a per-sample search over c (:mod:`foxcem.cem.search`), remembering the
best feasible iterate (:mod:`foxcem.cem.tracking`). Each iterate is judged by the evaluation the
gradient source made at it anyway, so knowing how good δ is costs no extra model call.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from foxcem.cem.loss import CEMEvaluation, CEMLoss
from foxcem.cem.optimizers import AoExpGrad
from foxcem.cem.search import CSearch
from foxcem.cem.tracking import (
    BestIterate,
    History,
    RoundState,
    as_evaluation,
    make_optimizer,
    merge,
    regulariser_weights,
    start_point,
    warn_missing,
)
from foxcem.cem.urv import URVGradientEstimator
from foxcem.core.checks import TargetLike, check_finite_float, check_positive_int
from foxcem.core.model_state import preserve_model_state
from foxcem.core.progress import progress_bar

__all__ = ["ExplanationGenerator", "Callback"]

#: ``callback(iteration, info)``; ``info`` holds (N,) tensors ``loss``, ``attack``, ``success``,
#: ``l1``, ``l2``, ``active`` and the current explanation ``delta`` (N, …). Return True to stop.
Callback = Callable[[int, dict[str, Any]], Optional[bool]]


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
    ) -> None:
        for name, cls in (("loss", loss), ("optimizer", optimizer), ("gradient", gradient)):
            if not callable(cls):
                raise TypeError(f"`{name}` must be a class (callable), got {type(cls).__name__}")
        self.loss, self.optimizer, self.gradient = loss, optimizer, gradient
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
        self.early_stop_tol = check_finite_float(early_stop_tol, "early_stop_tol", minimum=0.0)
        self.early_stop_check = check_positive_int(early_stop_check, "early_stop_check")
        self.keep_best = bool(keep_best)
        self.history = bool(history)
        self.progress = bool(progress)
        if callback is not None and not callable(callback):
            raise TypeError(f"`callback` must be callable, got {type(callback).__name__}")
        self.callback = callback
        self.start_noise = check_finite_float(start_noise, "start_noise", minimum=0.0)
        self.generator = generator
        self.c_steps = check_positive_int(c_steps, "c_steps")

    # ------------------------------------------------------------------------------ helpers
    # ------------------------------------------------------------------------------ run
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
            ``iterations`` (N,), ``num_iter`` (all rounds), ``c`` (N,) of the last round,
            ``model_calls``, ``invalid`` (N,: a NaN/inf gradient), ``segment_values`` for a
            segment-space loss, and with ``keep_best`` ``found`` (N,) (also ``best_found``).
        """
        guard = (
            preserve_model_state(inference_call, inputs=image, copy_grads=False)
            if isinstance(inference_call, nn.Module)
            else contextlib.nullcontext()
        )
        with guard:  # eval mode (no BatchNorm update), everything restored afterwards
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
        loss = self.loss(inference_call, image, **loss_kwargs)
        gradient = self.gradient(loss, **self.gradient_kwargs)
        if not callable(gradient):
            raise TypeError(f"the gradient source must be callable, got {type(gradient).__name__}")
        delta0 = start_point(loss, image, self.start_noise, self.generator)
        feasible = getattr(loss, "feasible", None)
        rounds = self.c_steps if hasattr(loss, "set_c") else 1
        search = CSearch(loss.c) if rounds > 1 else None
        self._loss, self._gradient, self._calls = loss, gradient, 0
        self._bar = progress_bar(rounds * self.num_iter, "CEM", enabled=self.progress)
        self._history = History(self.history)
        self._savepoints: OrderedDict[str, torch.Tensor] = OrderedDict()
        if self.save_freq is not None:
            self._savepoints["1"] = self._in_input_space(delta0)
        self._iterations = torch.zeros(delta0.shape[0], dtype=torch.long, device=delta0.device)
        self._done = 0
        best: Optional[BestIterate] = None
        invalid = torch.zeros_like(self._iterations, dtype=torch.bool)
        try:
            for index in range(rounds):
                if search is not None and index > 0:
                    assert best is not None
                    loss.set_c(search.update(best.found_this_round))
                param = delta0.clone()
                state = RoundState(
                    param, make_optimizer(self.optimizer, self.optimizer_kwargs, param, loss)
                )
                if best is None and self.keep_best and feasible is not None:
                    best = BestIterate(delta0, *regulariser_weights(state.opt))
                if best is not None:
                    best.new_round()
                stopped = self._run_round(state, best, feasible)
                if callable(getattr(state.opt, "invalid", None)):
                    invalid |= state.opt.invalid(param)  # type: ignore[attr-defined]
                if stopped:
                    break
        finally:
            self._bar.close()
        return self._finish(state, best, invalid, meta_data)

    def _evaluate(self, delta: torch.Tensor, index: Optional[torch.Tensor]) -> CEMEvaluation:
        """The loss at rows of δ through the gradient source's loss (one model call)."""
        self._calls += 1
        with torch.no_grad():
            rows = delta if index is None else delta[index]
            return as_evaluation(self._gradient.evaluate(rows, index))  # type: ignore[return-value]

    def _run_round(self, state: RoundState, best: Optional[BestIterate], feasible: Any) -> bool:
        """Run one round; True when a callback asked to stop."""
        track = (
            self._history.enabled or best is not None or self.early_stop
            or self.callback is not None or self.verbose_every > 0
        )  # fmt: skip
        takes_samples = getattr(self._gradient, "takes_samples", False)
        for step in range(1, self.num_iter + 2):
            last = step == self.num_iter + 1
            index = state.index
            if not last:
                rows = state.param if index is None else state.param[index]
                kwargs = {} if index is None else {"samples": index}
                grad_rows = self._gradient(rows.detach(), **kwargs)
                self._calls += int(getattr(self._gradient, "last_num_calls", 1))
                seen = as_evaluation(getattr(self._gradient, "last_evaluation", None))
            else:
                seen = None
            if track:
                if seen is None:
                    seen = self._evaluate(state.param.detach(), index)
                state.evaluation = merge(state.evaluation, seen, index)
                if best is not None:
                    kappa = float(getattr(self._loss, "K", 0.0))
                    state.engaged |= ~(state.evaluation.attack <= -kappa)
                    best.offer(state.param, feasible(state.evaluation), state.engaged)
                if step > 1 and self._after_step(state, step - 1):
                    return True
            if last:
                return False
            grad = grad_rows
            if index is not None:
                grad = torch.zeros_like(state.param).index_copy_(0, index, grad_rows)
            state.opt.zero_grad()
            state.param.grad = grad.to(state.param.dtype)
            state.opt.step()
            with torch.no_grad():
                if hasattr(self._loss, "lower"):
                    torch.maximum(state.param, self._loss.lower, out=state.param)
                    torch.minimum(state.param, self._loss.upper, out=state.param)
            self._iterations += state.active.long()
            self._done += 1
            self._bar.update(1)
            self._save(state, self._done)
            if self.early_stop and step % self.early_stop_check == 0:
                if not bool(state.active.any()):
                    return False
                if takes_samples:
                    state.index = state.active.nonzero().flatten()
        return False

    def _after_step(self, state: RoundState, step: int) -> bool:
        """Bookkeeping for the iterate after ``step`` (its evaluation is known); True: stop."""
        assert state.evaluation is not None
        current = state.param.detach()
        record = History.describe(current, state.evaluation)
        self._history.append(record)
        if self.early_stop:
            change = (current - state.previous).abs().reshape(len(current), -1).amax(dim=1)
            kappa = float(getattr(self._loss, "K", 0.0))
            done = (state.evaluation.attack <= -kappa) & (change <= self.early_stop_tol)
            state.active = state.active & ~done
            if hasattr(state.opt, "set_active"):
                state.opt.set_active(state.active, state.param)
        state.previous = current.clone()
        stop = False
        if self.callback is not None:
            info = {"delta": current, **record, "active": state.active}
            stop = bool(self.callback(self._done, info))
        if self.verbose_every and self._done % self.verbose_every == 0:
            print(f"CEM iter {self._done}/{self.num_iter}: {History.summary(record)}")
        return stop

    def _in_input_space(self, delta: torch.Tensor) -> torch.Tensor:
        """δ shaped like the input (segment values expanded to their pixels)."""
        to_input = getattr(self._loss, "to_input_space", None)
        with torch.no_grad():
            return (to_input(delta) if callable(to_input) else delta).detach().clone()

    def _save(self, state: RoundState, done: int) -> None:
        if self.save_freq is not None and done % self.save_freq == 0 and done > 1:
            self._savepoints[str(done)] = self._in_input_space(state.output())

    def _finish(
        self,
        state: RoundState,
        best: Optional[BestIterate],
        invalid: torch.Tensor,
        meta_data: Optional[dict[str, Any]],
    ) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
        result = state.output()
        meta: dict[str, Any] = dict(meta_data or {})
        if best is not None:
            found = best.found & ~invalid
            mask = found.reshape((-1,) + (1,) * (result.dim() - 1))
            result = torch.where(mask, best.delta.to(result.dtype), result)
            meta["found"] = meta["best_found"] = found
            warn_missing(found)
        self._savepoints.pop(str(self._done), None)
        self._savepoints[str(self._done)] = self._in_input_space(result)
        if getattr(self._loss, "segments", None) is not None:
            meta["segment_values"] = result.clone()
        final = self._evaluate(result, None)
        meta["loss"], meta["attack"], meta["success"] = final.loss, final.attack, final.success
        self._history.to_meta(meta)
        meta["iterations"] = self._iterations
        meta["num_iter"] = self._done
        meta["model_calls"] = self._calls
        meta["invalid"] = invalid
        if isinstance(getattr(self._loss, "c", None), torch.Tensor):
            meta["c"] = self._loss.c.clone()
        return self._savepoints, meta

    def __repr__(self) -> str:
        parts = [getattr(c, "__name__", c) for c in (self.loss, self.optimizer, self.gradient)]
        return (
            f"ExplanationGenerator(loss={parts[0]}, optimizer={parts[1]}, gradient={parts[2]}, "
            f"num_iter={self.num_iter}, save_freq={self.save_freq}, c_steps={self.c_steps})"
        )
