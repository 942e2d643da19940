"""Finding the layer a layer-attribution method explains."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

from torch import nn

__all__ = [
    "LayerLike",
    "check_grad_kwargs",
    "get_last_block",
    "get_last_conv_layer",
    "layer_name",
    "resolve_layer",
    "require_module",
]

#: One layer, a list of layers (for the methods that take one), or ``None`` (the default).
LayerLike = Union[nn.Module, Sequence[nn.Module], None]


def layer_name(model: Any, layer: nn.Module) -> str:
    """The layer's name in the model (``"layer4.1.conv2"``), or its class name."""
    if isinstance(model, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name or type(layer).__name__
    return type(layer).__name__


def check_grad_kwargs(value: object) -> Optional[dict]:
    """Captum's ``grad_kwargs`` (keyword arguments for ``torch.autograd.grad``): a dict or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"`grad_kwargs` must be a dict or None, got {type(value).__name__}")
    return dict(value)


def require_module(model: Any, method: str) -> nn.Module:
    """Check that ``model`` is an ``nn.Module`` (methods that hook layers need one).

    Raises:
        TypeError: naming ``model`` when it is a plain callable.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"`model` must be a torch.nn.Module for {method} (it hooks the model's layers), "
            f"got {type(model).__name__}"
        )
    return model


def get_last_conv_layer(model: nn.Module) -> nn.Conv2d:
    """The last ``nn.Conv2d`` of ``model`` in registration order (``model.modules()``).

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
        ValueError: if ``model`` has no ``nn.Conv2d``; pass the layer explicitly then.
    """
    require_module(model, "finding the last convolution")
    last: Optional[nn.Conv2d] = None
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            last = module
    if last is None:
        raise ValueError(
            f"`model` ({type(model).__name__}) has no torch.nn.Conv2d layer to default to; "
            "pass `layer=` explicitly"
        )
    return last


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def get_last_block(model: nn.Module) -> nn.Module:
    """The output of the model's last convolutional block, Grad-CAM's usual layer.

    From the model down: the last child (in registration order) that holds a ``nn.Conv2d``,
    descending through containers (``Sequential``, ``ModuleList``, ``ModuleDict``): for a
    torchvision ResNet ``layer4[-1]``, for a plain stack of convolutions its last ``Conv2d``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
        ValueError: if ``model`` has no ``nn.Conv2d``; pass the layer explicitly then.
    """
    get_last_conv_layer(model)  # the same checks and message when there is no convolution
    node = model
    while True:
        holders = [
            child
            for child in node.children()
            if isinstance(child, nn.Conv2d)
            or any(isinstance(m, nn.Conv2d) for m in child.modules())
        ]
        if not holders:
            return node
        node = holders[-1]
        if not isinstance(node, _CONTAINERS):
            return node


def resolve_layer(
    model: Any, layer: Optional[nn.Module], default: Any = get_last_conv_layer
) -> nn.Module:
    """``layer`` checked to be a submodule of ``model``; ``None`` means ``default(model)`` (the
    last ``nn.Conv2d``).

    Raises:
        TypeError: if ``layer`` is not an ``nn.Module``.
        ValueError: if ``layer`` is not part of ``model`` or ``model`` has no ``nn.Conv2d``.
    """
    if layer is None:
        return default(model)
    if not isinstance(layer, nn.Module):
        raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")
    if isinstance(model, nn.Module) and not any(m is layer for m in model.modules()):
        raise ValueError(
            f"`layer` ({type(layer).__name__}) is not a submodule of the model "
            f"({type(model).__name__})"
        )
    return layer
