"""The shared machinery of the Captum-backed explainers.

A Captum-backed explainer is a few lines: it names its Captum class (``captum_class``) and
implements ``_prepare(model, input_data, *, <options>)`` with *explicit* keyword arguments (named
as in Captum), which checks the options and returns a :class:`CaptumCall` — the Captum object plus
the keyword arguments for its ``attribute``. :class:`CaptumExplainer` runs the call. Because the
options are explicit, a misspelt keyword raises ``TypeError`` naming it instead of being ignored.

This module also holds what several methods share: baseline resolution (``None`` means zeros;
a random baseline only on request and drawn from a seeded generator), the seeded, isolated RNG
around Captum methods that draw noise, and option checks.
"""

from __future__ import annotations

import contextlib
import warnings
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Union

import numpy as np
import torch
from torch import nn

from foxcem.base import Explainer
from foxcem.checks import check_choice, check_positive_int
from foxcem.explainers.layers import resolve_layer

__all__ = [
    "BaselineLike",
    "CaptumCall",
    "CaptumExplainer",
    "LayerCaptumExplainer",
    "IG_METHODS",
    "check_bool",
    "check_optional_positive_int",
    "check_seed",
    "isolated_rng",
    "make_generator",
    "path_integral_options",
    "resolve_baselines",
    "resolve_baseline_distribution",
]

#: A baseline as the explainers accept it: ``None`` (zeros), a number, a tensor, or ``"zeros"``
#: / ``"random"`` (standard normal, drawn from a generator seeded with the ``seed`` option).
BaselineLike = Union[None, int, float, str, torch.Tensor]

#: Captum's notices about the hooks it registers (and removes) on non-linear layers.
_HOOK_NOTICE = r"\s*Setting (forward, )?backward hooks"

#: Integration rules accepted by Captum's path methods (IG, Layer IG, Layer Conductance).
IG_METHODS = (
    "gausslegendre",
    "riemann_right",
    "riemann_left",
    "riemann_middle",
    "riemann_trapezoid",
)


# ----------------------------------------------------------------------------------------------
# option checks


def check_seed(seed: object, name: str = "seed") -> Optional[int]:
    """Check that ``seed`` is ``None`` or a non-negative ``int``."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`{name}` must be an int or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"`{name}` must be non-negative, got {seed}")
    return seed


def check_optional_positive_int(value: object, name: str) -> Optional[int]:
    """``None`` or a positive ``int``."""
    return None if value is None else check_positive_int(value, name)


def check_bool(value: object, name: str) -> bool:
    """Check that ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------------
# random numbers


def make_generator(seed: Optional[int], device: torch.device) -> Optional[torch.Generator]:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None``: no generator)."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: Optional[int], device: torch.device) -> Iterator[None]:
    """Run a block with the global RNGs seeded, and restore them afterwards.

    Captum draws its noise from the global RNGs: ``torch.normal`` on the input's device
    (NoiseTunnel, GradientShap's ``stdevs``) and NumPy's global generator (GradientShap's
    interpolation coefficients and baseline choice). With a ``seed`` those generators — the CPU
    one, the input's CUDA device's and NumPy's — are seeded for the block; with ``None`` they are
    used as they are. Either way their states are restored afterwards, so an explanation never
    advances the caller's random stream.
    """
    np_state = np.random.get_state()
    cpu_state = torch.get_rng_state()
    cuda_index = None
    if device.type == "cuda":
        cuda_index = device.index if device.index is not None else torch.cuda.current_device()
        cuda_state = torch.cuda.get_rng_state(cuda_index)
    try:
        if seed is not None:
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)
            if cuda_index is not None:
                torch.cuda.default_generators[cuda_index].manual_seed(seed)
        yield
    finally:
        np.random.set_state(np_state)
        torch.set_rng_state(cpu_state)
        if cuda_index is not None:
            torch.cuda.set_rng_state(cuda_state, cuda_index)


# ----------------------------------------------------------------------------------------------
# baselines


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
    internal_batch_size: Optional[int],
    return_convergence_delta: bool,
    seed: Optional[int],
) -> dict[str, Any]:
    """Checked keyword arguments shared by the path-integral methods."""
    return {
        "baselines": resolve_baselines(baselines, input_data, seed),
        "additional_forward_args": additional_forward_args,
        "n_steps": check_positive_int(n_steps, "n_steps"),
        "method": check_choice(method, "method", IG_METHODS),
        "internal_batch_size": check_optional_positive_int(
            internal_batch_size, "internal_batch_size"
        ),
        "return_convergence_delta": check_bool(
            return_convergence_delta, "return_convergence_delta"
        ),
    }


# ----------------------------------------------------------------------------------------------
# the call and the base classes


@dataclass
class CaptumCall:
    """One configured Captum attribution, ready to run.

    Attributes:
        algorithm: the Captum attribution object (``create_explainer``'s result).
        options: keyword arguments for ``algorithm.attribute`` (everything but inputs/target).
        finish: post-processing of the attribution tensor, e.g. upsampling a Grad-CAM map;
            called as ``finish(attributions, inputs)``; a convergence delta is passed through.
        seed: seed for the global RNGs Captum draws noise from (see :func:`isolated_rng`).
        context: a context manager entered around the Captum call (e.g. LRP rules).
    """

    algorithm: Any
    options: dict[str, Any] = field(default_factory=dict)
    finish: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    seed: Optional[int] = None
    context: Optional[contextlib.AbstractContextManager[Any]] = None

    def run(self, inputs: torch.Tensor, target: torch.Tensor) -> Any:
        """``algorithm.attribute(inputs, target=target, **options)``, then ``finish``.

        Args:
            inputs: the checked (N, C, H, W) input (never modified; a detached copy that
                requires grad is handed to Captum).
            target: the (N,) int64 per-sample target.
        """
        # A fresh leaf that requires grad: the caller's tensor is never touched, Captum does not
        # warn, and layer methods work with the parameters frozen by the model-state guard.
        inputs = inputs.detach().requires_grad_(True)
        context = self.context if self.context is not None else contextlib.nullcontext()
        with context, isolated_rng(self.seed, inputs.device), warnings.catch_warnings():
            # Captum announces the hooks it sets on non-linearities; the model-state guard
            # removes whatever is left, so the notice is noise here.
            warnings.filterwarnings("ignore", message=_HOOK_NOTICE, category=UserWarning)
            result = self.algorithm.attribute(inputs, target=target, **self.options)
        if self.finish is None:
            return result
        if (
            isinstance(result, tuple)
            and len(result) == 2
            and self.options.get("return_convergence_delta", False)
        ):
            return self.finish(result[0], inputs), result[1]
        return self.finish(result, inputs)


class CaptumExplainer(Explainer):
    """Base of the explainers that run a Captum attribution.

    Subclasses set :attr:`captum_class` and implement :meth:`_prepare` with explicit keyword
    options; :meth:`create_explainer` builds the Captum object, :meth:`_attribute` runs it with the
    resolved per-sample target. Input checks, target resolution, the model-state guard and result
    validation come from :class:`~foxcem.Explainer`.
    """

    #: The Captum attribution class built by :meth:`create_explainer`.
    captum_class: ClassVar[type]
    #: Whether ``baselines`` is a distribution (K, C, H, W) rather than one baseline per sample
    #: (the SHAP methods); a NoiseTunnel then draws one baseline per noisy copy.
    takes_baseline_distribution: ClassVar[bool] = False

    def __init__(self) -> None:
        # Explicit, so that a stray constructor argument raises a TypeError that names it
        # (options belong to ``calculate_features``).
        super().__init__()

    def create_explainer(self, model: Any, **kwargs: Any) -> Any:
        """The Captum attribution object for ``model``.

        Args:
            model: the model (or forward function) to explain.
            **kwargs: arguments of the Captum class's constructor (e.g. ``multiply_by_inputs``);
                an unknown one raises ``TypeError``.
        """
        return self.captum_class(model, **kwargs)

    @abstractmethod
    def _prepare(self, model: Any, input_data: torch.Tensor, **kwargs: Any) -> CaptumCall:
        """Check the options and build the call.

        Implementations list their options as explicit keyword-only arguments (Captum's names),
        so a misspelt option raises ``TypeError`` naming it.
        """

    def _attribute(
        self, model: Any, input_data: torch.Tensor, target: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        return self._prepare(model, input_data, **kwargs).run(input_data, target)


class LayerCaptumExplainer(CaptumExplainer):
    """Base of the Captum layer methods: ``layer`` defaults to the model's last ``nn.Conv2d``."""

    def create_explainer(self, model: Any, layer: Optional[nn.Module] = None, **kwargs: Any) -> Any:
        """The Captum layer-attribution object for ``model`` and ``layer``.

        Args:
            model: the model to explain.
            layer: the layer whose input/output is attributed; ``None``: the model's last
                ``nn.Conv2d`` (a model without one raises ``ValueError``).
            **kwargs: other arguments of the Captum class's constructor.
        """
        return self.captum_class(model, layer=resolve_layer(model, layer), **kwargs)
