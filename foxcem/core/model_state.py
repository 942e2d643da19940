"""A guard that leaves a model exactly as the caller had it.

Explaining inside a training loop must not change the training: ``preserve_model_state`` puts the
model in eval mode for the duration of an explanation and afterwards restores, also when the
explanation raises:

* the training flag of every submodule,
* every parameter's ``requires_grad``, its ``.grad`` (object and values) and the parameter
  object itself (some attribution rules swap parameters),
* every buffer's values (BatchNorm running statistics, ``num_batches_tracked``),
* the hooks registered on every submodule and attributes added to its ``__dict__``,
* the global RNG states of the CPU, of the input's CUDA device and of NumPy, so an explanation
  never shifts the training's random stream.

Calls that overlap on one model — from other threads, or nested — share one guard: the model is
restored when the last of them ends (:func:`preserve_model_state`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import torch
from torch import nn

from foxcem.core.seeding import preserved_global_rng

__all__ = ["preserve_model_state", "gradients_enabled"]


def _hook_dicts(module: nn.Module) -> dict[str, dict]:
    return {
        name: value
        for name, value in vars(module).items()
        if "hooks" in name and isinstance(value, dict)
    }


class _ModuleSnapshot:
    """Everything the guard restores for one module tree."""

    def __init__(self, model: nn.Module, frozen: bool = False) -> None:
        modules = list(model.modules())
        self.modules = modules
        self.training = [m.training for m in modules]
        self.attributes = [set(vars(m)) for m in modules]
        self.children = [dict(m._modules) for m in modules]
        self.parameters = [dict(m._parameters) for m in modules]
        self.hooks = [{k: dict(v) for k, v in _hook_dicts(m).items()} for m in modules]
        self.buffers = [
            {k: (b, b.detach().clone()) for k, b in m._buffers.items() if b is not None}
            for m in modules
        ]
        params = {id(p): p for m in modules for p in m._parameters.values() if p is not None}
        self.params = list(params.values())
        self.requires_grad = [p.requires_grad for p in self.params]
        # ``frozen``: the parameters stay frozen for the whole block, so autograd cannot
        # accumulate into their .grad; identity and version counter (an in-place write would
        # show there) replace a copy. Otherwise the .grad tensors are copied.
        self.frozen = frozen
        self.grads = [
            (p.grad, None if p.grad is None else p.grad._version if frozen else p.grad.clone())
            for p in self.params
        ]

    def restore(self) -> None:
        for module, training, attrs, children, params, hooks, buffers in zip(
            self.modules,
            self.training,
            self.attributes,
            self.children,
            self.parameters,
            self.hooks,
            self.buffers,
        ):
            for name, hook_dict in _hook_dicts(module).items():
                before = hooks.get(name, {})
                for key in [k for k in hook_dict if k not in before]:
                    del hook_dict[key]
            for name in [n for n in vars(module) if n not in attrs]:
                delattr(module, name)
            if not isinstance(module, torch.jit.ScriptModule):  # TorchScript's are fixed views
                module._modules.clear()
                module._modules.update(children)
                module._parameters.clear()
                module._parameters.update(params)
            with torch.no_grad():
                for name, (buffer, values) in buffers.items():
                    module._buffers[name] = buffer
                    # Through .data, and only if changed: an in-place write bumps the version
                    # counter that a pending backward checks (a train-mode BatchNorm saves its
                    # running statistics), so an explanation between forward and backward
                    # would break the caller's loss.backward().
                    if not torch.equal(buffer, values):
                        buffer.data.copy_(values)
            module.training = training
        changed = False
        with torch.no_grad():
            for param, flag, (grad, saved) in zip(self.params, self.requires_grad, self.grads):
                param.requires_grad_(flag)
                if grad is not None and not self.frozen:
                    if not torch.equal(grad, saved):  # untouched: no write, no version bump
                        grad.copy_(saved)
                elif grad is not None and grad._version != saved:
                    changed = True
                param.grad = grad
        if changed:
            raise RuntimeError(
                "a parameter's .grad was written in place during the explanation (e.g. by "
                "model.zero_grad(set_to_none=False)); its values cannot be restored"
            )


def _cuda_devices(tensors: tuple[Optional[torch.Tensor], ...]) -> list[int]:
    return sorted(
        {t.device.index or 0 for t in tensors if t is not None and t.device.type == "cuda"}
    )


class _Shared:
    """The guard of one model while any call uses it: the snapshot and how many calls hold it."""

    def __init__(self, snapshot: _ModuleSnapshot) -> None:
        self.snapshot = snapshot
        self.count = 0


class _ModelLock:
    """A re-entrant readers–writer lock of one model: calls that only run the model share it,
    calls that hook its modules (whose hooks another thread's forward pass would trigger) hold
    it alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers: dict[int, int] = {}
        self._writer: Optional[int] = None
        self._depth = 0

    @contextlib.contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:  # nested inside this thread's own exclusive call
                kind = "write"
                self._depth += 1
            elif exclusive:
                while self._writer is not None or any(t != me for t in self._readers):
                    self._cond.wait()
                kind, self._writer, self._depth = "write", me, 1
            else:
                while self._writer is not None:
                    self._cond.wait()
                kind = "read"
                self._readers[me] = self._readers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                if kind == "write":
                    self._depth -= 1
                    if self._depth == 0:
                        self._writer = None
                else:
                    self._readers[me] -= 1
                    if self._readers[me] == 0:
                        del self._readers[me]
                self._cond.notify_all()


#: model -> its shared guard while at least one call is inside ``preserve_model_state``.
_ACTIVE: weakref.WeakKeyDictionary[nn.Module, _Shared] = weakref.WeakKeyDictionary()
#: model -> its readers–writer lock.
_LOCKS: weakref.WeakKeyDictionary[nn.Module, _ModelLock] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _model_lock(model: nn.Module) -> _ModelLock:
    with _LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = _ModelLock()
        return lock


@contextlib.contextmanager
def _shared_snapshot(model: nn.Module, frozen: bool, freeze_parameters: bool) -> Iterator[None]:
    """Enter the model's shared guard: the first call in takes the snapshot and switches the
    model to eval mode (parameters frozen), the last call out restores it."""
    with _LOCK:
        shared = _ACTIVE.get(model)
        if shared is None:
            shared = _ACTIVE[model] = _Shared(_ModuleSnapshot(model, frozen))
            model.eval()
            if freeze_parameters:
                for param in shared.snapshot.params:
                    param.requires_grad_(False)
        shared.count += 1
    try:
        yield
    finally:
        with _LOCK:
            shared.count -= 1
            last = shared.count == 0
            if last:
                del _ACTIVE[model]
                shared.snapshot.restore()


@contextlib.contextmanager
def preserve_model_state(
    model: object,
    inputs: Union[torch.Tensor, Sequence[torch.Tensor], None] = None,
    freeze_parameters: bool = True,
    copy_grads: bool = True,
    exclusive: bool = False,
) -> Iterator[None]:
    """Run a block with ``model`` in eval mode and restore all of its state afterwards.

    Safe under concurrency and nesting: calls that overlap on one model (other threads, or a
    guard inside a guard) share one snapshot — the first call in takes it and switches the model
    to eval mode, the last call out restores it — so no call restores the model while another
    still runs it, and the model ends exactly as it started. The global RNG states are kept the
    same way (:func:`~foxcem.core.seeding.preserved_global_rng`).

    Args:
        model: the model to protect; a callable that is not an ``nn.Module`` is left alone except
            for the RNG isolation.
        inputs: the caller's input tensor (or tensors); their ``requires_grad`` flags are
            restored too.
        freeze_parameters: switch ``requires_grad`` off on the parameters while inside the block
            (attributions are taken with respect to inputs, so weight gradients are wasted work).
        copy_grads: copy the parameters' ``.grad`` to restore them. ``False`` (with frozen
            parameters, for code that never unfreezes them, as foxcem's explainers) keeps only
            their identity and version counters — no memory for a second set of gradients —
            and raises ``RuntimeError`` if one was written in place anyway.
        exclusive: have the model alone for the block: calls that register hooks on the
            model's modules (another thread's forward pass would run them) wait for the calls
            running the model to end, and those wait for it. Calls that only run the model share
            it.
    """
    frozen = freeze_parameters and not copy_grads
    tensors = [] if inputs is None else [inputs] if isinstance(inputs, torch.Tensor) else inputs
    flags = [(t, t.requires_grad) for t in tensors if isinstance(t, torch.Tensor)]
    devices = _cuda_devices(tuple(t for t, _ in flags))
    with contextlib.ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(_model_lock(model).hold(exclusive))
            stack.enter_context(_shared_snapshot(model, frozen, freeze_parameters))
        stack.enter_context(preserved_global_rng(devices))
        try:
            yield
        finally:
            for tensor, flag in flags:
                if tensor.is_leaf and (flag or tensor.is_floating_point()):
                    tensor.requires_grad_(flag)


@contextlib.contextmanager
def gradients_enabled() -> Iterator[None]:
    """Enable autograd even inside ``torch.no_grad()`` or ``torch.inference_mode()``.

    Lightning runs validation and prediction under inference mode, where Captum cannot take
    gradients; this switches it off for the block.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield
