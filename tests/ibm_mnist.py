"""IBM's CEM MNIST classifier and autoencoder (``../shared/ibm_mnist``), taking [0, 1] images.

The weights, images and IBM's published results live beside the checkout, never in it: every
loader returns ``None`` when they are absent (a user's clone), so callers can skip.
The architectures are the torch port described in ``../shared/ibm_mnist/SOURCE.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SHARED = Path(__file__).resolve().parents[2] / "shared" / "ibm_mnist"

#: IBM's published explanations: (‖δ‖₀ with |δ| > 0.01, ‖δ‖₁), from SOURCE.md.
PUBLISHED = {"PN340": (13, 3.634), "PP2953": (83, 22.513)}


class IBMClassifier(nn.Module):
    """Carlini's MNIST CNN as IBM trained it; logits. Takes [0, 1] images (N, 1, 28, 28)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 32, 3)
        self.conv3 = nn.Conv2d(32, 64, 3)
        self.conv4 = nn.Conv2d(64, 64, 3)
        self.fc1 = nn.Linear(1024, 200)
        self.fc2 = nn.Linear(200, 200)
        self.fc3 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5  # IBM's models take inputs in [-0.5, 0.5]
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class IBMAutoencoder(nn.Module):
    """IBM's MNIST autoencoder, mapping [0, 1] images to [0, 1]-scaled reconstructions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 1, 3, padding=1)
        self.conv4 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv5 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv6 = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.conv3(F.max_pool2d(x, 2))
        x = F.interpolate(F.relu(self.conv4(x)), scale_factor=2, mode="nearest")
        x = self.conv6(F.relu(self.conv5(x)))
        return x + 0.5


def available() -> bool:
    """Whether ``../shared/ibm_mnist`` is beside the checkout."""
    return (SHARED / "ibm_mnist_weights.npz").is_file()


def load_models() -> Optional[tuple[IBMClassifier, IBMAutoencoder]]:
    """The classifier and the autoencoder in eval mode, or ``None`` without the shared files."""
    if not available():
        return None
    weights = np.load(SHARED / "ibm_mnist_weights.npz")
    models = IBMClassifier(), IBMAutoencoder()
    for prefix, model in zip(("clf.", "ae."), models):
        state = {
            k[len(prefix) :]: torch.from_numpy(weights[k].copy())
            for k in weights.files
            if k.startswith(prefix)
        }
        model.load_state_dict(state)
        model.eval().requires_grad_(False)
    return models


def load_images(first: int = 0, count: int = 64) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """MNIST test images ``first`` … ``first + count - 1`` as [0, 1] floats (n, 1, 28, 28) and
    their labels, or ``None`` without the shared files."""
    if not available():
        return None
    images = np.load(SHARED / "mnist_test_images_0000_0999.npy")[first : first + count]
    labels = np.load(SHARED / "mnist_test_labels_0000_0999.npy")[first : first + count]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_ibm_examples() -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """IBM's two README images, 340 (a 3, explained by a PN) and 2953 (a 5, by a PP), as [0, 1]
    floats (2, 1, 28, 28) with their labels; ``None`` without the shared files."""
    if not available():
        return None
    images = np.load(SHARED / "mnist_test_images_340_2953.npy")
    labels = np.load(SHARED / "mnist_test_labels_340_2953.npy")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_published() -> Optional[dict[str, torch.Tensor]]:
    """IBM's published result arrays (``pn340_orig``, ``pn340_adv``, ``pp2953_orig``,
    ``pp2953_adv``) as (1, 1, 28, 28) tensors in IBM's [-0.5, 0.5] input space; ``None``
    without the shared files."""
    if not available():
        return None
    arrays = np.load(SHARED / "ibm_published_results.npz")
    return {k: torch.from_numpy(arrays[k].astype(np.float32)).permute(0, 3, 1, 2) for k in arrays}
