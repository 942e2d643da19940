"""One call of :meth:`ExplanationGenerator.run <foxcem.cem.ExplanationGenerator.run>`: the rounds
of the c search, each an ordinary PyTorch optimisation loop, and what they leave behind.

Everything a call accumulates (model calls, history, savepoints, the progress bar) lives in one
:class:`OptimisationRun` object, so a generator holds only its settings and can be run from
several threads at once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from foxcem.cem.evaluation import CEMEvaluation
from foxcem.cem.search import CSearch
from foxcem.cem.sparsify import sparsify
from foxcem.cem.tracking import (
    BestIterate,
    History,
    RoundState,
    as_evaluation,
    make_optimizer,
    merge,
    regulariser_weights,
    warn_missing,
)
from foxcem.core.cost import CostWatch
from foxcem.core.progress import progress_bar


class CountedModel:
    """The model of a run, counting its calls (``meta_data["model_calls"]``): every evaluation
    is counted where it happens, whichever loss or gradient source makes it."""

    def __init__(self, model: Callable[..., Any]) -> None:
        self.model = model
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["model"], name)


def check_gradient(grad: object, rows: torch.Tensor, source: Any) -> torch.Tensor:
    """A gradient source's answer: a tensor shaped like the δ rows it was given."""
    if not isinstance(grad, torch.Tensor) or grad.shape != rows.shape:
        got = f"shape {tuple(grad.shape)}" if isinstance(grad, torch.Tensor) else repr(grad)
        raise ValueError(
            f"the gradient source {type(source).__name__} must return a tensor shaped like δ, "
            f"{tuple(rows.shape)}, got {got}"
        )
    if not grad.is_floating_point():
        raise ValueError(
            f"the gradient source {type(source).__name__} must return a floating tensor, got "
            f"{grad.dtype}"
        )
    return grad


def check_callback_answer(answer: object) -> bool:
    """A callback's answer: ``None`` or ``False`` (go on), ``True`` (stop)."""
    if answer is None:
        return False
    if isinstance(answer, bool):
        return answer
    what = (
        f"a tensor of shape {tuple(answer.shape)}"
        if isinstance(answer, torch.Tensor)
        else type(answer).__name__
    )
    raise TypeError(f"`callback` must return None, True (stop) or False, got {what}")


if TYPE_CHECKING:  # pragma: no cover
    from foxcem.cem.generator import ExplanationGenerator

__all__ = ["CountedModel", "OptimisationRun", "check_callback_answer", "check_gradient",
           "cheaper_options", "describe"]  # fmt: skip

#: Readable names of the built-in gradient sources.
_SOURCES = {"AutogradGradient": "autograd", "URVGradientEstimator": "URV"}


def describe(loss: Any, gradient: Any, delta0: torch.Tensor) -> str:
    """What runs, for progress and cost messages: ``"CEM PN · URV"``."""
    mode = getattr(loss, "mode", None)
    name = type(gradient).__name__
    return " ".join(["CEM"] + ([mode] if mode else [])) + f" · {_SOURCES.get(name, name)}"


def cheaper_options(settings: Any, gradient: Any, loss: Any, delta0: torch.Tensor) -> list[str]:
    """What would make this run cheaper, for the long-run warning."""
    hints = []
    if delta0.device.type == "cpu":
        hints.append("a GPU (model and inputs on 'cuda')")
    directions = getattr(gradient, "num_directions", None)
    if directions is not None:
        hints.append(f"fewer num_directions (now {directions})")
        if getattr(loss, "segments", None) is None and delta0[0].numel() > 4096:
            hints.append("segments='grid:28' (one value per block, not per pixel)")
    hints.append(f"fewer num_iter or c_steps (now {settings.num_iter} × {settings.c_steps})")
    if not settings.early_stop:
        hints.append("early_stop=True")
    return hints


class OptimisationRun:
    """The state of one ``run``: the loss and gradient source it built, and its accumulators.

    Args:
        settings: the generator whose options apply.
        loss: the loss object of this run.
        gradient: the gradient source of this run.
        delta0: the start δ₀ (N, …).
    """

    def __init__(
        self,
        settings: ExplanationGenerator,
        loss: Any,
        gradient: Any,
        delta0: torch.Tensor,
        model: CountedModel,
    ) -> None:
        self.settings = settings
        self.model = model
        self.loss, self.gradient = loss, gradient
        self.delta0 = delta0
        self.feasible = getattr(loss, "feasible", None)
        self.rounds = settings.c_steps if hasattr(loss, "set_c") else 1
        #: optimizer steps so far, over all rounds.
        self.done = 0
        self.iterations = torch.zeros(delta0.shape[0], dtype=torch.long, device=delta0.device)
        self.history = History(settings.history)
        self.savepoints: OrderedDict[str, torch.Tensor] = OrderedDict()
        if settings.save_freq is not None:
            self.savepoints["1"] = self.in_input_space(delta0)
        self.label = describe(loss, gradient, delta0)
        total = self.rounds * settings.num_iter
        self.bar = progress_bar(total, self.label, enabled=settings.progress, unit="step")
        inputs = getattr(loss, "x", delta0)
        self.watch = CostWatch(
            total,
            f"{self.label} on {len(delta0)} inputs of {'×'.join(map(str, inputs.shape[1:]))}",
            cheaper=cheaper_options(settings, gradient, loss, delta0),
        )

    # ------------------------------------------------------------------------------ rounds
    def search(self) -> tuple[RoundState, Optional[BestIterate], torch.Tensor]:
        """Run every round of the c search; returns the last round's state, the best feasible
        iterates (tracked whenever the loss can judge feasibility: the search needs them even
        without ``keep_best``) and the (N,) samples that met a NaN/inf gradient."""
        settings, loss = self.settings, self.loss
        search = CSearch(loss.c) if self.rounds > 1 else None
        best: Optional[BestIterate] = None
        invalid = torch.zeros_like(self.iterations, dtype=torch.bool)
        try:
            for index in range(self.rounds):
                if search is not None and index > 0:
                    assert best is not None
                    loss.set_c(search.update(best.found_this_round))
                param = self.delta0.clone()
                if self.rounds > 1:
                    self.bar.set_description(f"{self.label} · round {index + 1}/{self.rounds}")
                optimizer = make_optimizer(
                    settings.optimizer, settings.optimizer_kwargs, param, loss
                )
                state = RoundState(param, optimizer)
                tracks = settings.keep_best or self.rounds > 1
                if best is None and tracks and self.feasible is not None:
                    best = BestIterate(self.delta0, *regulariser_weights(state.opt))
                if best is not None:
                    best.new_round()
                stopped = self.run_round(state, best)
                if callable(getattr(state.opt, "invalid", None)):
                    invalid |= state.opt.invalid(param)  # type: ignore[attr-defined]
                if stopped:
                    break
        finally:
            self.bar.close()
        return state, best, invalid

    def evaluate(self, delta: torch.Tensor, index: Optional[torch.Tensor]) -> CEMEvaluation:
        """The loss at rows of δ through the gradient source's loss (one model call)."""
        return self.evaluate_rows(delta if index is None else delta[index], index)

    def evaluate_rows(self, rows: torch.Tensor, index: Optional[torch.Tensor]) -> CEMEvaluation:
        """The loss at δ rows (n, …) of the samples ``index`` (one model call)."""
        kwargs = {} if index is None else {"samples": index}
        # A gradient source of its own kind (no ``evaluate``): ask the loss.
        evaluate = getattr(self.gradient, "evaluate", None) or getattr(self.loss, "evaluate", None)
        with torch.no_grad():
            return as_evaluation((evaluate or self.loss)(rows, **kwargs))  # type: ignore[return-value]

    def run_round(self, state: RoundState, best: Optional[BestIterate]) -> bool:
        """Run one round; True when a callback asked to stop."""
        settings, gradient = self.settings, self.gradient
        track = (
            self.history.enabled or best is not None or settings.early_stop
            or settings.callback is not None or settings.verbose_every > 0
        )  # fmt: skip
        takes_samples = getattr(gradient, "takes_samples", False)
        kappa = float(getattr(self.loss, "K", 0.0))
        for step in range(1, settings.num_iter + 2):
            last = step == settings.num_iter + 1
            index = state.index
            if not last:
                rows = state.param if index is None else state.param[index]
                kwargs = {} if index is None else {"samples": index}
                grad_rows = check_gradient(gradient(rows.detach(), **kwargs), rows, gradient)
                seen = as_evaluation(getattr(gradient, "last_evaluation", None))
            else:
                seen = None
            if track:
                if seen is None:
                    seen = self.evaluate(state.param.detach(), index)
                state.evaluation = merge(state.evaluation, seen, index)
                if best is not None:
                    assert self.feasible is not None
                    state.engaged |= ~(state.evaluation.attack <= -kappa)
                    best.offer(state.param, self.feasible(state.evaluation), state.engaged)
                if step > 1 and self.after_step(state):
                    return True
            if last:
                return False
            grad = grad_rows
            if index is not None:
                grad = torch.zeros_like(state.param).index_copy_(0, index, grad_rows)
            # Assigning ``.grad`` replaces the last one: ``zero_grad`` would only cost time.
            state.param.grad = grad.to(state.param.dtype)
            state.opt.step()
            if hasattr(self.loss, "lower"):  # also after an optimizer that clips: rounding
                with torch.no_grad():
                    torch.clamp(state.param, self.loss.lower, self.loss.upper, out=state.param)
            self.iterations += state.active
            self.done += 1
            self.bar.update(1)
            self.watch.update(1)
            self.save(state)
            if settings.early_stop and step % settings.early_stop_check == 0:
                if not bool(state.active.any()):
                    return False
                if takes_samples:
                    state.index = state.active.nonzero().flatten()
        return False

    def after_step(self, state: RoundState) -> bool:
        """Bookkeeping for the current iterate (its evaluation is known); True: stop."""
        settings = self.settings
        assert state.evaluation is not None
        current = state.param.detach()
        verbose = settings.verbose_every and self.done % settings.verbose_every == 0
        # The record costs a few launches per step: built only when someone reads it.
        record: dict[str, torch.Tensor] = {}
        if self.history.enabled or settings.callback is not None or verbose:
            record = History.describe(current, state.evaluation)
            self.history.append(record)
        if settings.early_stop:
            change = (current - state.previous).abs().reshape(len(current), -1).amax(dim=1)
            kappa = float(getattr(self.loss, "K", 0.0))
            done = (state.evaluation.attack <= -kappa) & (change <= settings.early_stop_tol)
            state.active = state.active & ~done
            if hasattr(state.opt, "set_active"):
                state.opt.set_active(state.active, state.param)
            state.previous = current.clone()
        stop = False
        if settings.callback is not None:
            info = {"delta": current, **record, "active": state.active}
            stop = check_callback_answer(settings.callback(self.done, info))
        if verbose:
            print(f"CEM iter {self.done}/{settings.num_iter}: {History.summary(record)}")
        return stop

    # ------------------------------------------------------------------------------ results
    def in_input_space(self, delta: torch.Tensor) -> torch.Tensor:
        """δ shaped like the input (segment values expanded to their pixels)."""
        to_input = getattr(self.loss, "to_input_space", None)
        with torch.no_grad():
            return (to_input(delta) if callable(to_input) else delta).detach().clone()

    def save(self, state: RoundState) -> None:
        """Keep the explanation so far as a savepoint when ``save_freq`` says so."""
        freq = self.settings.save_freq
        if freq is not None and self.done % freq == 0 and self.done > 1:
            self.savepoints[str(self.done)] = self.in_input_space(state.output())

    def finish(
        self,
        state: RoundState,
        best: Optional[BestIterate],
        invalid: torch.Tensor,
        meta_data: Optional[dict[str, Any]],
        warn: bool = True,
    ) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
        """The savepoints (the result last) and the meta data of the run; ``warn``: warn about
        samples without a feasible explanation."""
        result = state.output()
        meta: dict[str, Any] = dict(meta_data or {})
        if best is not None and self.settings.keep_best:
            keep = best.found & ~invalid
            mask = keep.reshape((-1,) + (1,) * (result.dim() - 1))
            result = torch.where(mask, best.delta.to(result.dtype), result)
        final = self.evaluate(result, None)
        if self.settings.sparsify and self.feasible is not None:
            holds = self.feasible(final) & ~invalid
            sparse = sparsify(
                self.evaluate_rows, self.feasible, result, self.loss.lower, self.loss.upper, holds
            )
            if not torch.equal(sparse, result):  # judge what is returned
                result = sparse
                final = self.evaluate(result, None)
        self.savepoints.pop(str(self.done), None)
        self.savepoints[str(self.done)] = self.in_input_space(result)
        if getattr(self.loss, "segments", None) is not None:
            meta["segment_values"] = result.clone()
        meta["loss"], meta["attack"], meta["success"] = final.loss, final.attack, final.success
        meta["prediction"] = final.prediction  # the class the model gives the explanation
        for key in ("target", "base"):  # the explained class; what the model sees for δ = 0
            value = getattr(self.loss, key, None)
            if isinstance(value, torch.Tensor):
                meta[key] = value.detach().clone()
        if self.feasible is not None:
            # Judged on the returned δ with the model, whatever the options.
            found = self.feasible(final) & ~invalid
            meta["found"] = meta["best_found"] = found
            if warn:
                warn_missing(found)
        self.history.to_meta(meta)
        meta["iterations"] = self.iterations
        meta["num_iter"] = self.done
        meta["model_calls"] = self.model.calls
        meta["invalid"] = invalid
        if isinstance(getattr(self.loss, "c", None), torch.Tensor):
            meta["c"] = self.loss.c.clone()
        return self.savepoints, meta
