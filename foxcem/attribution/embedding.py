"""Token ids for the layer methods that interpolate between input and baseline in input space
(Layer Conductance, Layer GradientSHAP): ids cannot be interpolated, embeddings can. For one call
the ``nn.Embedding`` explained is swapped for a pass-through module and the method runs on the
embeddings of the ids and of the baseline ids — what Captum's
``configure_interpretable_embedding_layer`` does, undone afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from foxcem.core.inputs import Inputs

__all__ = ["EmbeddingsAsInputs", "embeddings_as_inputs"]


class EmbeddingsAsInputs(nn.Module):
    """Stands in for an ``nn.Embedding`` during a call: its input is already the embeddings."""

    def forward(self, values: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return values


def _embed(layer: nn.Embedding, ids: Any, like: torch.Tensor, name: str) -> torch.Tensor:
    if ids is None:
        ids = torch.zeros_like(like[:1])
    elif isinstance(ids, int) and not isinstance(ids, bool):
        ids = torch.full_like(like[:1], ids)
    elif not isinstance(ids, torch.Tensor) or ids.is_floating_point():
        raise TypeError(f"`{name}` must be token ids (an int or an integer tensor) here")
    with torch.no_grad():
        return layer(ids.to(like.device))


@contextlib.contextmanager
def _swapped(model: nn.Module, layer: nn.Module, stand_in: nn.Module) -> Iterator[None]:
    parent, name = next(
        (module, child)
        for module in model.modules()
        for child, sub in module.named_children()
        if sub is layer
    )
    setattr(parent, name, stand_in)
    try:
        yield
    finally:
        setattr(parent, name, layer)


def embeddings_as_inputs(
    model: Any, layer: Any, inputs: Inputs, baselines: Any, method: str
) -> tuple[Inputs, torch.Tensor, nn.Module, contextlib.AbstractContextManager[Any]]:
    """``(embedded inputs, embedded baselines, the stand-in layer, the swap)`` for a call on
    token ids: baselines are token ids (``None``: id 0; an int; an (N, T)/(1, T)/(K, T) tensor).

    Raises:
        TypeError: ``layer`` is not an ``nn.Embedding`` of ``model``, or baselines that are not ids.
        ValueError: a tuple of inputs.
    """
    if not isinstance(layer, nn.Embedding) or not isinstance(model, nn.Module):
        raise TypeError(
            f"{method} interpolates between the input and the baseline, which token ids cannot: "
            "explain them at their nn.Embedding (layer=model.embedding), or use "
            "layer_integrated_gradients"
        )
    ids = inputs.single(method, "one tensor of token ids (N, T)")
    with torch.no_grad():
        embedded = layer(ids)
    stand_in = EmbeddingsAsInputs()
    return (
        Inputs([embedded], False),
        _embed(layer, baselines, ids, "baselines"),
        stand_in,
        _swapped(model, layer, stand_in),
    )
