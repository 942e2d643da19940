"""Checks of the CEM loss's arguments; each error names the argument."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from foxcem.cem.evaluation import accumulation_dtype
from foxcem.core.checks import TargetLike, check_target

__all__ = ["check_autoencoder", "check_c", "check_pn_target", "check_reconstruction"]


def check_c(c: Union[float, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The attack weight as a (N,) tensor for the batch ``x`` (N, …), in float32 or wider.

    Raises:
        TypeError: ``c`` is neither a number nor a tensor.
        ValueError: a shape other than () or (N,), a negative or non-finite value.
    """
    n = x.shape[0]
    if isinstance(c, bool) or not isinstance(c, (int, float, torch.Tensor)):
        raise TypeError(f"`c` must be a float or a (N,) tensor, got {type(c).__name__}")
    value = torch.as_tensor(c, device=x.device).to(accumulation_dtype(x.dtype))
    if value.dim() == 0:
        value = value.expand(n)
    if value.shape != (n,):
        raise ValueError(
            f"`c` must be a float or a tensor of shape (N,) = ({n},), got {tuple(value.shape)}"
        )
    if bool((value < 0).any()) or not bool(torch.isfinite(value).all()):
        raise ValueError("`c` must be finite and >= 0")
    return value.clone()


def check_pn_target(
    pn_target: TargetLike, mode: str, target: torch.Tensor, num_classes: int
) -> Optional[torch.Tensor]:
    """``pn_target`` as (N,) classes, each different from the explained one (PN only)."""
    if pn_target is None:
        return None
    if mode != "PN":
        raise ValueError("`pn_target` applies to mode='PN' only")
    resolved = check_target(
        pn_target, len(target), num_classes, device=target.device, name="pn_target"
    )
    assert resolved is not None
    same = resolved == target
    if bool(same.any()):
        first = int(same.nonzero()[0, 0])
        raise ValueError(
            f"`pn_target` must differ from the explained class, but sample {first} has "
            f"pn_target = class {int(target[first])} = its explained class"
        )
    return resolved


def check_reconstruction(out: object, inputs: torch.Tensor) -> torch.Tensor:
    """The autoencoder's answer for ``inputs``: a tensor of exactly their shape (the whole batch:
    an autoencoder with a fixed batch size would otherwise be broadcast against its first row).

    Raises:
        ValueError: naming ``AE``, what came back and what is expected.
    """
    if not isinstance(out, torch.Tensor) or out.shape != inputs.shape:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"`AE` must return a tensor shaped like its input, {tuple(inputs.shape)} for this "
            f"batch of {inputs.shape[0]}, got {got}"
        )
    return out


def check_autoencoder(autoencoder: Callable[[torch.Tensor], Any], probe: torch.Tensor) -> None:
    """The autoencoder maps a probe batch (two rows where there are two, so a fixed batch of
    one shows) to a tensor of the same shape."""
    with torch.no_grad():
        check_reconstruction(autoencoder(probe), probe)
