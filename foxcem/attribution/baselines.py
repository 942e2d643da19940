"""Baselines of the path and reference methods: ``None`` means zeros, random only when asked.

A random baseline is drawn from a ``torch.Generator`` seeded with the ``seed`` option, so a call
is reproducible. For a tuple of inputs (a multi-input model) ``baselines`` is one value for every
input, or a tuple with one per input. For integer inputs (token ids, explained at a layer) a
baseline is a token id — an int, or an integer tensor such as a row of pad tokens.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from foxcem.core.batching import auto_batch_size, check_batch_size
from foxcem.core.checks import check_bool, check_choice, check_positive_int
from foxcem.core.inputs import Inputs
from foxcem.core.seeding import check_seed, make_generator

__all__ = [
    "BaselineLike",
    "IG_METHODS",
    "path_integral_options",
    "resolve_baselines",
    "resolve_baseline_distribution",
]

#: ``None``/``"zeros"``, a number, a tensor, ``"random"`` (standard normal, drawn from a
#: generator seeded with the ``seed`` option), or a tuple of these, one per input.
BaselineLike = Union[None, int, float, str, torch.Tensor, tuple]

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
    if inputs.is_floating_point() and not baselines.is_floating_point():
        raise TypeError(f"`{name}` must have a floating dtype, got {baselines.dtype}")
    if not inputs.is_floating_point() and (baselines.is_floating_point() or baselines.is_complex()):
        raise TypeError(
            f"`{name}` must hold token ids (integers) for integer inputs, got {baselines.dtype}"
        )
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
    if baselines.is_floating_point() and not bool(torch.isfinite(baselines).all()):
        raise ValueError(f"`{name}` must be finite (no NaN or inf)")
    return baselines.detach().to(inputs.dtype)


def _per_input(baselines: Any, inputs: Inputs, name: str) -> list[Any]:
    """One baseline value per input tensor: a tuple is split (its length checked), any other
    value stands for every input."""
    if isinstance(baselines, (tuple, list)):
        if not inputs.is_tuple:
            raise TypeError(
                f"`{name}` is a {type(baselines).__name__}; for one input give a number, a "
                "tensor, 'zeros' or 'random' (a tuple is one baseline per input of a tuple)"
            )
        if len(baselines) != len(inputs.tensors):
            raise ValueError(
                f"`{name}` given as a tuple must hold one baseline per input tensor "
                f"({len(inputs.tensors)}), got {len(baselines)}"
            )
        return list(baselines)
    return [baselines] * len(inputs.tensors)


def _one_baseline(
    baselines: Any, tensor: torch.Tensor, seed: Optional[int], name: str
) -> Union[None, int, float, torch.Tensor]:
    integers = not tensor.is_floating_point()
    if baselines is None:
        return None
    if isinstance(baselines, str):
        check_choice(baselines, name, ("zeros", "random"))
        if baselines == "zeros":
            return None
        if integers:
            raise ValueError(f"`{name}`='random' needs floating inputs, not token ids")
        return torch.randn(
            tensor.shape,
            generator=make_generator(check_seed(seed), tensor.device),
            device=tensor.device,
            dtype=tensor.dtype,
        )
    if isinstance(baselines, bool):
        raise TypeError(f"`{name}` must be a number, a tensor, 'zeros' or 'random', got bool")
    if isinstance(baselines, int):
        return baselines if integers else float(baselines)
    if isinstance(baselines, float):
        if integers:
            raise TypeError(f"`{name}` must be a token id (an int) for integer inputs, got float")
        if baselines != baselines or baselines in (float("inf"), float("-inf")):
            raise ValueError(f"`{name}` must be finite, got {baselines}")
        return baselines
    if isinstance(baselines, torch.Tensor):
        shapes = (tuple(tensor.shape), (1, *tensor.shape[1:]))
        return _check_baseline_tensor(baselines, tensor, shapes, name)
    raise TypeError(
        f"`{name}` must be None, a number, a tensor, 'zeros' or 'random', "
        f"got {type(baselines).__name__}"
    )


def resolve_baselines(
    baselines: BaselineLike,
    inputs: Union[Inputs, torch.Tensor],
    seed: Optional[int] = 0,
    name: str = "baselines",
) -> Any:
    """One baseline per sample for the path and reference methods (IG, DeepLift, Occlusion…).

    Args:
        baselines: ``None`` or ``"zeros"``: zeros (Captum's own default, returned as ``None``);
            an int/float: that constant everywhere (a token id for integer inputs); a tensor of
            the input's shape (N, …) or (1, …) on the input's device; ``"random"``: a
            standard-normal tensor of the input's shape drawn from a ``torch.Generator`` seeded
            with ``seed``; for a tuple of inputs, one of these for all or a tuple of them.
        inputs: the checked inputs (or one tensor).
        seed: seed of the random baseline.

    Returns:
        What Captum's ``baselines`` argument takes (a tuple for several inputs).
    """
    inputs = inputs if isinstance(inputs, Inputs) else Inputs([inputs], False)
    values = [
        _one_baseline(value, tensor, seed, f"{name}[{i}]" if inputs.is_tuple else name)
        for i, (value, tensor) in enumerate(
            zip(_per_input(baselines, inputs, name), inputs.tensors)
        )
    ]
    if not inputs.is_tuple:
        return values[0]
    if all(v is None for v in values):
        return None
    return tuple(0 if v is None else v for v in values)  # Captum takes no None in a tuple


def _one_distribution(
    baselines: Any, tensor: torch.Tensor, seed: Optional[int], n_baselines: int,
    min_count: int, name: str,
) -> torch.Tensor:  # fmt: skip
    sample = tuple(tensor.shape[1:])
    kwargs: dict[str, Any] = {"device": tensor.device, "dtype": tensor.dtype}
    if baselines is None or (isinstance(baselines, str) and baselines == "zeros"):
        return torch.zeros((min_count, *sample), **kwargs)
    if isinstance(baselines, str):
        check_choice(baselines, name, ("zeros", "random"))
        count = check_positive_int(n_baselines, "n_baselines")
        if count < min_count:
            raise ValueError(f"`n_baselines` must be at least {min_count}, got {count}")
        generator = make_generator(check_seed(seed), tensor.device)
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
        baselines = _check_baseline_tensor(baselines, tensor, (tuple(baselines.shape),), name)
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


def resolve_baseline_distribution(
    baselines: BaselineLike,
    inputs: Union[Inputs, torch.Tensor],
    seed: Optional[int] = 0,
    n_baselines: int = 10,
    min_count: int = 1,
    name: str = "baselines",
) -> Any:
    """A distribution of baselines (K, …) per input for the SHAP methods.

    Args:
        baselines: ``None`` or ``"zeros"``: a zero sample (repeated to ``min_count`` rows);
            a number: that constant sample; a tensor (K, …) or one sample (…);
            ``"random"``: ``n_baselines`` standard-normal samples from a ``torch.Generator``
            seeded with ``seed``; for a tuple of inputs one of these for all, or a tuple.
        inputs: the checked inputs (or one tensor).
        seed: seed of the random distribution.
        n_baselines: number of random baselines drawn for ``"random"``.
        min_count: the least number of rows the method needs (DeepLiftShap needs 2); a
            constant baseline is repeated to that many rows, which does not change the result.

    Returns:
        A (K, …) tensor on the input's device and dtype (a tuple of them for several inputs).
    """
    inputs = inputs if isinstance(inputs, Inputs) else Inputs([inputs], False)
    values = [
        _one_distribution(value, tensor, seed, n_baselines, min_count,
                          f"{name}[{i}]" if inputs.is_tuple else name)
        for i, (value, tensor) in enumerate(zip(_per_input(baselines, inputs, name), inputs.tensors))
    ]  # fmt: skip
    if inputs.is_tuple and len({v.shape[0] for v in values}) > 1:
        raise ValueError(f"`{name}` must hold the same number of baselines for every input")
    return tuple(values) if inputs.is_tuple else values[0]


def path_integral_options(
    input_data: Union[Inputs, torch.Tensor],
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
    inputs = input_data if isinstance(input_data, Inputs) else Inputs([input_data], False)
    n_steps = check_positive_int(n_steps, "n_steps")
    batch = check_batch_size(internal_batch_size, "internal_batch_size")
    if batch == "auto":
        total = n_steps * inputs.num_samples
        batch = auto_batch_size(inputs.sample_numel, inputs.device, total, minimum=64)
        batch = None if batch >= total else batch
    return {
        "baselines": resolve_baselines(baselines, inputs, seed),
        "additional_forward_args": additional_forward_args,
        "n_steps": n_steps,
        "method": check_choice(method, "method", IG_METHODS),
        "internal_batch_size": batch,
        "return_convergence_delta": check_bool(
            return_convergence_delta, "return_convergence_delta"
        ),
    }
