"""What a model needs to be for Captum's hooks to work, arranged for one call and undone after.

* In-place activations (``nn.ReLU(inplace=True)``, as in VGG and AlexNet) overwrite the tensor a
  layer method hooks (``a leaf Variable that requires grad is being used in an in-place
  operation``): they run out of place during the call, which changes no value.
* DeepLIFT skips a non-linearity that already carries a backward hook (Captum's
  ``_can_register_hook``), silently giving wrong attributions: a user's backward hooks on those
  modules are set aside during the call.
* DeepLIFT and LRP cannot handle a module called twice in one forward pass (torchvision's ResNet
  blocks reuse their ``relu``): the error names the modules and what to use instead.
"""

from __future__ import annotations

import contextlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from captum.attr import LRP, Deconvolution, DeepLift, GuidedBackprop, LayerAttribution
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn

__all__ = ["captum_ready", "reused_module_error"]


@contextlib.contextmanager
def captum_ready(algorithm: Any) -> Iterator[None]:
    """Prepare the model of a Captum ``algorithm`` for one attribution call (see the module)."""
    model = getattr(algorithm, "model", None) or getattr(algorithm, "forward_func", None)
    if not isinstance(model, nn.Module):
        yield
        return
    modules = list(model.modules())
    # Only methods that hook modules meet the in-place problem; the others keep in-place
    # activations, which are faster.
    hooking = isinstance(
        algorithm, (LayerAttribution, DeepLift, LRP, GuidedBackprop, Deconvolution)
    )
    inplace = [m for m in modules if hooking and getattr(m, "inplace", False) is True]
    stashed = []
    if isinstance(algorithm, DeepLift):
        for m in modules:
            if type(m) in SUPPORTED_NON_LINEAR and len(m._backward_hooks) > 0:
                stashed.append((m, m._backward_hooks))
                m._backward_hooks = OrderedDict()
    for m in inplace:
        m.inplace = False
    try:
        yield
    finally:
        for m in inplace:
            m.inplace = True
        for m, hooks in stashed:
            m._backward_hooks = hooks


def reused_module_error(algorithm: Any, inputs: Any, method: str) -> ValueError:
    """A ValueError naming the non-linear modules the model calls more than once per forward."""
    model = getattr(algorithm, "model", None) or getattr(algorithm, "forward_func", None)
    names: list[str] = []
    if isinstance(model, nn.Module):
        calls: Counter[str] = Counter()
        handles = [
            module.register_forward_hook(lambda *_, name=name: calls.update([name]))
            for name, module in model.named_modules()
            if type(module) in SUPPORTED_NON_LINEAR
        ]
        try:
            with torch.no_grad():
                inputs.rows(slice(0, 1)).scores(model)
        finally:
            for handle in handles:
                handle.remove()
        names = [name for name, count in calls.items() if count > 1]
    which = ", ".join(repr(n) for n in names[:4]) or "a non-linearity"
    return ValueError(
        f"{method} needs every non-linear module used once per forward pass, but the model "
        f"calls {which} more than once (as torchvision's ResNet blocks do with their relu): "
        "give each use its own module, or use integrated_gradients or gradient_shap"
    )
