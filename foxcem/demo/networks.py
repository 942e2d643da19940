"""The demo's networks and digits for your own code: what ``foxcem demo`` explains, in one call."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Union

import torch
from torch import nn

from foxcem.demo.config import DEFAULT_NUM_IMAGES, select_images
from foxcem.demo.digits import load_digits_split
from foxcem.demo.model import load_or_train_model

__all__ = ["DemoNetworks", "load_demo_networks"]


class DemoNetworks(NamedTuple):
    """The demo's digits CNN and autoencoder (eval mode) and test digits (N, 1, 8, 8) in
    [0, 1] with their labels (N,); unpacks as ``model, autoencoder, x, labels``."""

    model: nn.Module
    autoencoder: nn.Module
    x: torch.Tensor
    labels: torch.Tensor


def load_demo_networks(
    num_images: int = DEFAULT_NUM_IMAGES,
    device: Union[str, torch.device] = "cpu",
    cache_dir: Optional[Union[str, Path]] = None,
    seed: int = 0,
    progress: bool = False,
) -> DemoNetworks:
    """The networks ``foxcem demo`` explains, trained with its settings on scikit-learn's real
    digits (no download) — read from the demo's weights cache when it has run before, else
    trained once (about 10 s on 2 CPU cores) and cached — and the test digits it shows: the
    first of each class 0, 1, 2, ….

    Args:
        num_images: how many test digits.
        device: where the networks and digits go.
        cache_dir: the weights cache (default ``$XDG_CACHE_HOME/foxcem``, as the demo's).
        seed: the demo's seed (split and training).
        progress: show a progress bar while training.

    Example::

        from foxcem.demo import load_demo_networks
        model, autoencoder, x, labels = load_demo_networks()
    """
    split = load_digits_split(seed=seed)
    networks = []
    for kind in ("cnn", "autoencoder"):
        network, _ = load_or_train_model(
            split, seed=seed, device=str(device), cache_dir=cache_dir, progress=progress, kind=kind
        )
        networks.append(network.eval())
    indices = select_images(split.y_test, num_images)
    x = split.x_test[indices].to(device)
    return DemoNetworks(networks[0], networks[1], x, split.y_test[indices].to(device))
