"""MAX's optimizer classes: foxcem's ExpGrad optimizers (``torch.optim.Optimizer`` subclasses).

MAX's ``channels_first`` is accepted and has no effect: the proximal step is elementwise, the
same in every layout. MAX's construction keywords (``org_img``, ``loss``, ``gradient``, ``x0``)
are accepted too; the generator hands the optimizer δ as its parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

import torch

from foxcem.cem.optimizers import AdaExpGrad, AoExpGrad

__all__ = ["AdaExpGradOptimizer", "AoExpGradOptimizer"]

_MAX_ONLY = ("channels_first", "org_img", "loss", "gradient")


def _params(params: Optional[Iterable[torch.Tensor]], kwargs: dict) -> Iterable[torch.Tensor]:
    for name in _MAX_ONLY:
        kwargs.pop(name, None)
    x0 = kwargs.pop("x0", None)
    if params is None:
        if x0 is None:
            raise TypeError("give the optimizer its parameters (or MAX's `x0`)")
        params = [x0]
    return params


class AdaExpGradOptimizer(AdaExpGrad):
    """:class:`~foxcem.cem.AdaExpGrad` under MAX's name and keywords."""

    def __init__(self, params: Optional[Iterable[torch.Tensor]] = None, **kwargs: Any) -> None:
        super().__init__(_params(params, kwargs), **kwargs)


class AoExpGradOptimizer(AoExpGrad):
    """:class:`~foxcem.cem.AoExpGrad` under MAX's name and keywords."""

    def __init__(self, params: Optional[Iterable[torch.Tensor]] = None, **kwargs: Any) -> None:
        super().__init__(_params(params, kwargs), **kwargs)
