"""Real data with no download: scikit-learn's bundled 8x8 handwritten digits, and a small CNN.

Used by ``foxcem demo`` and by the tests. Needs the ``demo`` extra (scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

__all__ = [
    "DigitsAutoencoder",
    "DigitsCNN",
    "DigitsSplit",
    "accuracy",
    "load_digits_split",
    "train_digits_autoencoder",
    "train_digits_model",
]


@dataclass
class DigitsSplit:
    """Train/test tensors: images (N, 1, 8, 8) scaled to [0, 1], labels (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """The 1,797 digits of ``sklearn.datasets.load_digits``, split with a fixed permutation."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data needs scikit-learn: pip install 'foxcem[demo]'") from exc
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return DigitsSplit(images[train], labels[train], images[test], labels[test])


class DigitsCNN(nn.Module):
    """conv16-conv32-pool-fc64-fc10 for 1x8x8 inputs; returns logits (N, 10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` whose argmax score equals ``labels``."""
    was_training = model.training
    model.eval()
    predicted = model(images).argmax(dim=1)
    model.train(was_training)
    return float((predicted == labels.to(predicted.device)).float().mean())


def train_digits_model(
    split: Optional[DigitsSplit] = None,
    epochs: int = 30,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    lr: float = 2e-3,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> nn.Module:
    """Train :class:`DigitsCNN` deterministically (fixed seed); returns it in eval mode.

    ``on_epoch(epoch, mean_loss)`` is called after each epoch (e.g. to advance a progress bar).
    """
    split = split or load_digits_split(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = split.x_train.to(device), split.y_train.to(device)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, total / len(y))
    return model.eval()


class DigitsAutoencoder(nn.Module):
    """A small convolutional autoencoder for 1x8x8 digits in [0, 1] (output in [0, 1]).

    CEM's autoencoder term γ·‖v − AE(v)‖² keeps an explanation close to what digits look like:
    a PP keeps strokes, a PN adds strokes, rather than scattered pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 4, kernel_size=3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(4, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(16, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 1, kernel_size=3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def train_digits_autoencoder(
    split: Optional[DigitsSplit] = None,
    epochs: int = 40,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    lr: float = 3e-3,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> nn.Module:
    """Train :class:`DigitsAutoencoder` on the training digits (mean squared error, fixed seed);
    returns it in eval mode."""
    split = split or load_digits_split(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsAutoencoder().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x = split.x_train.to(device)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = x[order[start : start + batch_size]]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(batch), batch)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if on_epoch is not None:
            on_epoch(epoch, total / len(x))
    return model.eval()
