"""The box δ lives in: feature ranges, "no information" values, and the PP / PN default bounds.

A pertinent positive keeps part of x; a pertinent negative adds what is absent from x. "Absent"
needs a value that carries no information (black for images, a median for tabular data): by
default the lower end of the feature range. The defaults, per element:

* PP: the model sees ``v + δ`` with δ between 0 and ``x − v`` (δ keeps part of what x has above
  the no-information value v);
* PN: the model sees ``x + δ``, inside the feature range, with δ moving x away from v only:
  ``δ ≥ 0`` where ``x ≥ v`` (for images: ink is added, never removed). With
  ``no_info_value=None`` δ may move either way within the feature range.

``no_info_value="auto"`` (the default) is ``"min"`` for images and sequences, and for tables the
per-feature median for PP and no constraint for PN (:func:`auto_no_info_value`).

The feature range defaults to the batch's smallest and largest value (one range for the whole
batch, never each sample's own: a blank image would get an empty range). For tables, give
reference data instead (``feature_range=X_train``: each feature's own min and max over its rows)
and ``no_info_value="median"`` (each feature's median over the same rows).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

__all__ = [
    "BoundLike",
    "NoInfoLike",
    "RangeLike",
    "reference_data",
    "bound_tensor",
    "broadcast_bound",
    "auto_no_info_value",
    "fit_no_info_value",
    "resolve_feature_range",
    "resolve_no_info_value",
    "default_bounds",
    "resolve_box",
]

BoundLike = Union[float, torch.Tensor, None]
#: ``"auto"`` (see :func:`auto_no_info_value`), ``"min"`` (the feature range's lower end),
#: ``"median"`` / ``"mean"`` (per feature, of the reference data or the batch), a number, a tensor
#: broadcastable to x, or ``None``.
NoInfoLike = Union[str, float, torch.Tensor, None]
#: ``(lo, hi)`` (numbers or tensors broadcastable to x), reference data (M, …) shaped like the
#: samples (each feature's min and max over the M rows), or ``None`` (the batch's min and max).
RangeLike = Union[tuple[BoundLike, BoundLike], torch.Tensor, np.ndarray, None]


def reference_data(feature_range: object, x: torch.Tensor) -> Optional[torch.Tensor]:
    """``feature_range`` as reference data (M, …) on x's device and dtype, or ``None`` when it
    is a ``(lo, hi)`` pair or ``None``.

    Raises:
        ValueError: an array whose rows are not shaped like x's samples, or that is empty or
            holds NaN or inf.
    """
    if not isinstance(feature_range, (torch.Tensor, np.ndarray)):
        return None
    data = torch.as_tensor(feature_range).to(device=x.device, dtype=x.dtype)
    if data.dim() != x.dim() or data.shape[1:] != x.shape[1:] or data.shape[0] == 0:
        raise ValueError(
            "`feature_range` must be a pair (lo, hi) or reference data (M, "
            f"{', '.join(map(str, x.shape[1:]))}) shaped like the samples, got an array of "
            f"shape {tuple(data.shape)}"
        )
    if not bool(torch.isfinite(data).all()):
        raise ValueError("`feature_range` reference data must be finite (no NaN or inf)")
    return data.detach()


def bound_tensor(
    value: BoundLike, x: torch.Tensor, name: str, channel_dim: int
) -> Optional[torch.Tensor]:
    """A bound given as a scalar or a tensor broadcastable to ``x`` (N, …), expanded to x.shape.

    A 1-D tensor with one value per channel (length C) is placed along the channel axis.

    Raises:
        TypeError: ``value`` is neither a number nor a tensor.
        ValueError: the shape does not broadcast, or a value is NaN or infinite.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"`{name}` must be a float or a tensor, got {type(value).__name__}")
    bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if bound.dim() == 1 and x.dim() > 2 and bound.shape[0] == x.shape[channel_dim] > 1:
        shape = [1] * x.dim()
        shape[channel_dim] = bound.shape[0]
        bound = bound.reshape(shape)
    return broadcast_bound(
        bound, x.shape, name, "a scalar or a tensor broadcastable to the input's"
    )


def broadcast_bound(
    bound: torch.Tensor, shape: torch.Size, name: str, expected: str
) -> torch.Tensor:
    """The one check of a bound: ``bound`` expanded to ``shape`` (a copy); ``ValueError`` naming
    ``name`` when it does not broadcast (the message reads "`name` must be {expected} shape …")
    or holds a NaN or an infinite value (an infinite box makes the optimizers' scale infinite
    and every entry of δ zero)."""
    try:
        bound = torch.broadcast_to(bound, shape).clone()
    except RuntimeError:
        raise ValueError(
            f"`{name}` must be {expected} shape {tuple(shape)}, got shape {tuple(bound.shape)}"
        ) from None
    if not bool(torch.isfinite(bound).all()):
        raise ValueError(f"`{name}` must be finite (no NaN or inf); leave it None for the default")
    return bound


def auto_no_info_value(mode: str, x: torch.Tensor) -> Optional[str]:
    """What ``no_info_value="auto"`` means for ``mode`` on ``x``: ``"min"`` for images and
    sequences (black carries no information); for a table (N, F), ``"median"`` for PP (the
    typical row is what a PP keeps part of) and ``None`` for PN (a feature may move either way:
    below the median is as informative as above, and a PN confined to moving away from the
    median cannot change the class of many rows)."""
    if x.dim() != 2:
        return "min"
    return "median" if mode == "PP" else None


def resolve_feature_range(
    feature_range: RangeLike, x: torch.Tensor, channel_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)`` expanded to x.shape: the given range, each feature's min and max over
    reference data, or the batch's min and max."""
    data = reference_data(feature_range, x)
    if data is not None:
        return data.amin(dim=0).expand(x.shape).clone(), data.amax(dim=0).expand(x.shape).clone()
    if feature_range is None:
        lo = x.detach().amin().expand(x.shape).clone()
        hi = x.detach().amax().expand(x.shape).clone()
        return lo, hi
    if not isinstance(feature_range, (tuple, list)) or len(feature_range) != 2:
        raise ValueError(
            f"`feature_range` must be a pair (lo, hi), got {type(feature_range).__name__}"
        )
    lo = bound_tensor(feature_range[0], x, "feature_range", channel_dim)
    hi = bound_tensor(feature_range[1], x, "feature_range", channel_dim)
    if lo is None or hi is None:
        raise ValueError("`feature_range` must give both ends, got None")
    if bool((lo > hi).any()):
        raise ValueError("`feature_range` must have lo <= hi")
    return lo, hi


def resolve_no_info_value(
    no_info_value: NoInfoLike,
    x: torch.Tensor,
    lo: torch.Tensor,
    channel_dim: int,
    reference: Optional[torch.Tensor] = None,
) -> Optional[torch.Tensor]:
    """The no-information value expanded to x.shape, or ``None``: ``"min"`` is ``lo``;
    ``"median"`` and ``"mean"`` are per feature, over ``reference`` (M, …) when given, else over
    the batch."""
    if no_info_value is None:
        return None
    if isinstance(no_info_value, str):
        if no_info_value == "min":
            return lo.clone()
        if no_info_value in ("median", "mean"):
            data = x if reference is None else reference
            return fit_no_info_value(data, no_info_value).expand(x.shape).clone()
        raise ValueError(
            "`no_info_value` must be 'min', 'median', 'mean', a number, a tensor or None, got "
            f"{no_info_value!r}"
        )
    if isinstance(no_info_value, np.ndarray):
        no_info_value = torch.as_tensor(no_info_value)
    if isinstance(no_info_value, torch.Tensor) and no_info_value.dim() == 1 and x.dim() == 2:
        if no_info_value.shape[0] != x.shape[1]:
            raise ValueError(
                f"`no_info_value` must have one value per feature ({x.shape[1]}), got "
                f"{no_info_value.shape[0]}"
            )
    return bound_tensor(no_info_value, x, "no_info_value", channel_dim)


def fit_no_info_value(data: torch.Tensor, statistic: str = "median") -> torch.Tensor:
    """A per-feature no-information value fitted on ``data`` (M, …): its median or mean.

    Returns a tensor of the sample shape (…), to pass as ``no_info_value``.
    """
    if not isinstance(data, torch.Tensor) or data.dim() < 2 or not data.is_floating_point():
        raise TypeError("`data` must be a floating tensor (M, ...) with M samples")
    if statistic == "median":
        return data.detach().median(dim=0).values
    if statistic == "mean":
        return data.detach().mean(dim=0)
    raise ValueError(f"`statistic` must be 'median' or 'mean', got {statistic!r}")


def default_bounds(
    mode: str,
    x: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    no_info: Optional[torch.Tensor],
    add_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The default (lower, upper) bounds on δ for ``mode`` (see the module docstring)."""
    if mode == "PP":
        kept = x - (no_info if no_info is not None else 0.0)
        return torch.clamp(kept, max=0.0), torch.clamp(kept, min=0.0)
    lower, upper = lo - x, hi - x
    if no_info is not None:
        # Away from v: up where x is above it, down where below, either way where x == v.
        lower = torch.where(x > no_info, torch.clamp(lower, min=0.0), lower)
        upper = torch.where(x < no_info, torch.clamp(upper, max=0.0), upper)
    if add_only:
        lower = torch.clamp(lower, min=0.0)
    upper = torch.maximum(upper, lower)  # x outside the range: an empty box becomes a point
    return lower, upper


def resolve_box(
    mode: str,
    x: torch.Tensor,
    channel_dim: int,
    feature_range: RangeLike,
    no_info_value: NoInfoLike,
    lower: BoundLike,
    upper: BoundLike,
    add_only: bool,
) -> tuple[tuple[torch.Tensor, torch.Tensor], Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``((lo, hi), v, lower, upper)`` for a batch ``x``: the feature range, the no-information
    value and the bounds on δ (the user's where given, else :func:`default_bounds`).

    Raises:
        ValueError: a bound of the wrong shape, or ``lower`` > ``upper`` somewhere.
    """
    lo, hi = resolve_feature_range(feature_range, x, channel_dim)
    reference = reference_data(feature_range, x)
    if isinstance(no_info_value, str) and no_info_value == "auto":
        no_info_value = auto_no_info_value(mode, x)
    no_info = resolve_no_info_value(no_info_value, x, lo, channel_dim, reference)
    lo_def, hi_def = default_bounds(mode, x, lo, hi, no_info, add_only)
    lo_user = bound_tensor(lower, x, "lower", channel_dim)
    hi_user = bound_tensor(upper, x, "upper", channel_dim)
    if add_only and lo_user is not None and bool((lo_user < 0).any()):
        raise ValueError(
            "`add_only=True` and `lower` conflict: add_only means δ >= 0, but `lower` allows "
            "negative values; give one of them"
        )
    lower_t = lo_def if lo_user is None else lo_user
    upper_t = hi_def if hi_user is None else hi_user
    if bool((lower_t > upper_t).any()):
        why = " (`add_only=True` sets `lower` to 0)" if add_only and lo_user is None else ""
        raise ValueError(f"the bounds must satisfy `lower` <= `upper` everywhere{why}")
    return (lo, hi), no_info, lower_t, upper_t
