"""A lighter wrapper for ``torch.optim.Optimizer.step``: the same step hooks, the profiler's
label only while a profiler runs.

``torch.optim`` wraps every optimizer's ``step`` in a ``record_function`` and walks the hook
dictionaries on each call; a CEM run takes thousands of steps on a small δ, where that costs
as much as a few elementwise operations per step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.optim.optimizer as torch_optimizer

__all__ = ["light_profile_hook_step"]


#: The torch internals the wrapper reads; without them (another torch version) torch's own
#: wrapper is used, so no step hook is ever skipped.
_INTERNALS = all(
    hasattr(module, name)
    for module, name in (
        (torch_optimizer, "_global_optimizer_pre_hooks"),
        (torch_optimizer, "_global_optimizer_post_hooks"),
        (torch.autograd, "_profiler_enabled"),
    )
)


def _run_hooked(self: Any, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` between the optimizer step hooks, as ``torch.optim`` runs it."""
    for pre_hook in (
        *torch_optimizer._global_optimizer_pre_hooks.values(),
        *self._optimizer_step_pre_hooks.values(),
    ):
        result = pre_hook(self, args, kwargs)
        if result is not None:
            if not (isinstance(result, tuple) and len(result) == 2):
                raise RuntimeError(
                    f"{func} must return None or a tuple of (new_args, new_kwargs), but got "
                    f"{result}."
                )
            args, kwargs = result
    out = func(*args, **kwargs)
    self._optimizer_step_code()
    for post_hook in (
        *self._optimizer_step_post_hooks.values(),
        *torch_optimizer._global_optimizer_post_hooks.values(),
    ):
        post_hook(self, args, kwargs)
    return out


def light_profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.optim.Optimizer.profile_hook_step`` at a fraction of its cost per step: the
    global and per-optimizer pre- and post-step hooks run as there, the profiler's
    ``record_function`` only while a profiler is enabled (torch's own wrapper where this
    torch lacks the internals it reads)."""
    if not _INTERNALS:  # pragma: no cover - depends on the torch version
        return torch.optim.Optimizer.profile_hook_step(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if torch.autograd._profiler_enabled():
            name = f"Optimizer.step#{type(self).__name__}.step"
            with torch.autograd.profiler.record_function(name):
                return _run_hooked(self, func, args, kwargs)
        return _run_hooked(self, func, args, kwargs)

    return wrapper
