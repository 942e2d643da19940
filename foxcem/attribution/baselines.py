"""Baselines of the path and reference methods: ``None`` means zeros, random only when asked.

A random baseline is drawn from a ``torch.Generator`` seeded with the ``seed`` option, so a call
is reproducible.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from foxcem.core.batching import auto_batch_size, check_batch_size
from foxcem.core.checks import (
    check_bool,
    check_choice,
    check_positive_int,
)
from foxcem.core.seeding import check_seed, make_generator

__all__ = [
    "BaselineLike",
    "IG_METHODS",
    "path_integral_options",
    "resolve_baselines",
    "resolve_baseline_distribution",
]

#: / ``"random"`` (standard normal, drawn from a generator seeded with the ``seed`` option).
BaselineLike = Union[None, int, float, str, torch.Tensor]

#: Integration rules accepted by Captum's path methods (IG, Layer IG, Layer Conductance).
IG_METHODS = (
    "gausslegendre",
    "riemann_right",
    "riemann_left",
    "riemann_middle",
    "riemann_trapezoid",
)


def _check_baseline_tensor(
    baselines: torch.Tensor, inputs: torch.Tensor, shapes: tuple[tuple[int, ...], ...], name: str
) -> torch.Tensor:
    if not baselines.is_floating_point():
        raise TypeError(f"`{name}` must have a floating dtype, got {baselines.dtype}")
    if baselines.device != inputs.device:
        raise ValueError(
            f"`{name}` is on {baselines.device} but `input_data` is on {inputs.device}"
        )
    if tuple(baselines.shape) not in shapes:
        expected = " or ".join(str(s) for s in shapes)
        raise ValueError(
            f"`{name}` must have shape {expected} to match `input_data`, "
            f"got {tuple(baselines.shape)}"
        )
    return baselines.detach().to(inputs.dtype)


def resolve_baselines(
    baselines: BaselineLike,
    inputs: torch.Tensor,
    seed: Optional[int] = 0,
    name: str = "baselines",
) -> Union[None, float, torch.Tensor]:
    """One baseline per sample for the path and reference methods (IG, DeepLift, Occlusion…).

    Args:
        baselines: ``None`` or ``"zeros"``: zeros (Captum's own default, returned as ``None``);
            an int/float: that constant everywhere; a tensor of shape (N, C, H, W) or
            (1, C, H, W) on the input's device; ``"random"``: a standard-normal tensor of the
            input's shape drawn from a ``torch.Generator`` seeded with ``seed``.
        inputs: the (N, C, H, W) input.
        seed: seed of the random baseline (``None``: the global RNG, which the explanation
            restores afterwards).

    Returns:
        What Captum's ``baselines`` argument takes.
    """
    if baselines is None:
        return None
    if isinstance(baselines, str):
        check_choice(baselines, name, ("zeros", "random"))
        if baselines == "zeros":
            return None
        return torch.randn(
            inputs.shape,
            generator=make_generator(check_seed(seed), inputs.device),
            device=inputs.device,
            dtype=inputs.dtype,
        )
    if isinstance(baselines, bool):
        raise TypeError(f"`{name}` must be a number, a tensor, 'zeros' or 'random', got bool")
    if isinstance(baselines, (int, float)):
        return float(baselines)
    if isinstance(baselines, torch.Tensor):
        shapes = (tuple(inputs.shape), (1, *inputs.shape[1:]))
        return _check_baseline_tensor(baselines, inputs, shapes, name)
    raise TypeError(
        f"`{name}` must be None, a number, a tensor, 'zeros' or 'random', "
        f"got {type(baselines).__name__}"
    )


def resolve_baseline_distribution(
    baselines: BaselineLike,
    inputs: torch.Tensor,
    seed: Optional[int] = 0,
    n_baselines: int = 10,
    min_count: int = 1,
    name: str = "baselines",
) -> torch.Tensor:
    """A distribution of baselines (K, C, H, W) for the SHAP methods.

    Args:
        baselines: ``None`` or ``"zeros"``: a zero image (repeated to ``min_count`` rows);
            a number: that constant image; a tensor (K, C, H, W) or (C, H, W);
            ``"random"``: ``n_baselines`` standard-normal images from a ``torch.Generator``
            seeded with ``seed``.
        inputs: the (N, C, H, W) input.
        seed: seed of the random distribution.
        n_baselines: number of random baselines drawn for ``"random"``.
        min_count: the least number of rows the method needs (DeepLiftShap needs 2); a
            constant baseline is repeated to that many rows, which does not change the result.

    Returns:
        A (K, C, H, W) tensor on the input's device and dtype.
    """
    sample = tuple(inputs.shape[1:])
    kwargs: dict[str, Any] = {"device": inputs.device, "dtype": inputs.dtype}
    if baselines is None or (isinstance(baselines, str) and baselines == "zeros"):
        return torch.zeros((min_count, *sample), **kwargs)
    if isinstance(baselines, str):
        check_choice(baselines, name, ("zeros", "random"))
        count = check_positive_int(n_baselines, "n_baselines")
        if count < min_count:
            raise ValueError(f"`n_baselines` must be at least {min_count}, got {count}")
        generator = make_generator(check_seed(seed), inputs.device)
        return torch.randn((count, *sample), generator=generator, **kwargs)
    if isinstance(baselines, bool):
        raise TypeError(f"`{name}` must be a number, a tensor, 'zeros' or 'random', got bool")
    if isinstance(baselines, (int, float)):
        return torch.full((min_count, *sample), float(baselines), **kwargs)
    if isinstance(baselines, torch.Tensor):
        if baselines.dim() == len(sample):
            baselines = baselines.unsqueeze(0)
        if baselines.dim() != len(sample) + 1 or tuple(baselines.shape[1:]) != sample:
            raise ValueError(
                f"`{name}` must have shape (K, {', '.join(map(str, sample))}) to match "
                f"`input_data`, got {tuple(baselines.shape)}"
            )
        baselines = _check_baseline_tensor(baselines, inputs, (tuple(baselines.shape),), name)
        if baselines.shape[0] < min_count:
            if baselines.shape[0] != 1:
                raise ValueError(
                    f"`{name}` must hold at least {min_count} baselines, got {baselines.shape[0]}"
                )
            baselines = baselines.expand(min_count, *sample)
        return baselines
    raise TypeError(
        f"`{name}` must be None, a number, a tensor, 'zeros' or 'random', "
        f"got {type(baselines).__name__}"
    )


def path_integral_options(
    input_data: torch.Tensor,
    baselines: BaselineLike,
    additional_forward_args: Any,
    n_steps: int,
    method: str,
    internal_batch_size: Union[int, str, None],
    return_convergence_delta: bool,
    seed: Optional[int],
) -> dict[str, Any]:
    """Checked keyword arguments shared by the path-integral methods.

    ``internal_batch_size="auto"``: on the CPU passes of a cache-friendly number of rows (64 to
    256, fewer for larger inputs; one huge pass of a small CNN runs up to 1.7× slower); on a GPU
    every step in one pass, halved while it runs out of memory (see :class:`CaptumCall`).
    """
    n_steps = check_positive_int(n_steps, "n_steps")
    batch = check_batch_size(internal_batch_size, "internal_batch_size")
    if batch == "auto":
        total = n_steps * input_data.shape[0]
        device = input_data.device
        batch = auto_batch_size(input_data[0].numel(), device, total, minimum=64)
        batch = None if batch >= total else batch
    return {
        "baselines": resolve_baselines(baselines, input_data, seed),
        "additional_forward_args": additional_forward_args,
        "n_steps": n_steps,
        "method": check_choice(method, "method", IG_METHODS),
        "internal_batch_size": batch,
        "return_convergence_delta": check_bool(
            return_convergence_delta, "return_convergence_delta"
        ),
    }
