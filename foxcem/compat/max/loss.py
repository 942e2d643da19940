"""MAX's loss classes: ``Torch_CEMLoss`` (and ``TF_CEMLoss``, the name a TensorFlow user of MAX
writes) — foxcem's :class:`~foxcem.cem.CEMLoss` built by MAX's keywords, with ``get_loss``."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from foxcem.cem.lime import LimeLoss, SuperpixelLimeLoss
from foxcem.cem.loss import CEMLoss

__all__ = ["LimeLoss", "SuperpixelLimeLoss", "TF_CEMLoss", "Torch_CEMLoss", "per_sample_shape"]

#: MAX's modes; the SMOOTH ones use the smooth hinge.
MODES = {
    "PP": ("PP", False),
    "PN": ("PN", False),
    "PPSMOOTH": ("PP", True),
    "PNSMOOTH": ("PN", True),
}


def per_sample_shape(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) loss values as (N, 1, …, 1), so that ``values * direction`` broadcasts per sample."""
    return values.reshape((len(values),) + (1,) * (like.dim() - 1))


class Torch_CEMLoss(CEMLoss):  # noqa: N801 - MAX's name
    """The CEM loss with MAX's signature.

    Args:
        mode: ``"PP"``, ``"PN"``, ``"PPSMOOTH"`` or ``"PNSMOOTH"`` (smooth hinge).
        org_img: the image(s) explained, a tensor (N, …) (a NumPy array is converted).
        inference: the model (class scores).
        gamma, K, c, AE, lower, upper: as in MAX (K defaults to MAX's 1.0, c to 1.0).
        channels_first: the layout of ``org_img``; ``None`` (default): (N, C, H, W) when the
            second dimension looks like channels (1 or 3), (N, H, W, C) when the last does.
        device: accepted for MAX code; the image's device is used.
        **kwargs: the other options of :class:`~foxcem.cem.CEMLoss` (``feature_range``, …).
    """

    def __init__(
        self,
        mode: str,
        org_img: Any,
        inference: Callable[[torch.Tensor], torch.Tensor],
        gamma: float = 0.0,
        K: float = 1.0,
        c: float = 1.0,
        AE: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        lower: Any = None,
        upper: Any = None,
        channels_first: Optional[bool] = None,
        device: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise ValueError(f"`mode` must be one of {list(MODES)}, got {mode!r}")
        base_mode, smooth = MODES[mode.upper()]
        x = org_img if isinstance(org_img, torch.Tensor) else torch.as_tensor(org_img)
        if channels_first is None:
            channels_first = not (
                x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3)
            )
        super().__init__(
            inference, x, base_mode, c=c, gamma=gamma, K=K, AE=AE, lower=lower, upper=upper,
            channels_first=channels_first, smooth=kwargs.pop("smooth", smooth), **kwargs,
        )  # fmt: skip

    def get_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The loss at δ = ``x``, one value per sample shaped (N, 1, …, 1) (MAX's name)."""
        return per_sample_shape(self(x), x)


TF_CEMLoss = Torch_CEMLoss
