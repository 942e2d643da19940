"""What an explainer explains: one tensor, or a tuple of tensors for a model with several inputs.

Every explainer takes the batch through one door, :func:`check_inputs`, which checks it once —
tensors, one sample dimension N shared by all of them, non-empty, finite, integer only where the
method allows it (token ids for a layer method on an embedding) — and returns an :class:`Inputs`
that the methods use: its tensors, N, the values per sample, rows of it, the model's answer for
it. Shapes are free: (N, F) tables, (N, C, T) sequences, (N, C, H, W) images, (N, T) token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional, Union

import torch

from foxcem.core.checks import check_tensor

__all__ = ["Inputs", "InputLike", "check_inputs", "forward_args"]

InputLike = Union[torch.Tensor, Sequence[torch.Tensor]]


def forward_args(additional_forward_args: Any) -> tuple[Any, ...]:
    """Captum's ``additional_forward_args`` as the tuple of extra positional arguments."""
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


class Inputs:
    """A checked batch: ``tensors`` (one, or several for a multi-input model) with N samples.

    Args:
        tensors: the tensors, each (N, …).
        is_tuple: whether the caller gave a tuple (the attributions are then a tuple too).
    """

    def __init__(self, tensors: Sequence[torch.Tensor], is_tuple: bool) -> None:
        self.tensors = tuple(tensors)
        self.is_tuple = is_tuple

    # ------------------------------------------------------------------ facts
    @property
    def num_samples(self) -> int:
        """N."""
        return self.tensors[0].shape[0]

    @property
    def sample_numel(self) -> int:
        """Values per sample, over every tensor (what a model call's cost follows)."""
        return sum(t[0].numel() for t in self.tensors)

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    @property
    def has_integers(self) -> bool:
        """Whether a tensor holds integers (token ids)."""
        return any(not t.is_floating_point() for t in self.tensors)

    def shapes(self) -> str:
        """``"(4, 3, 224, 224)"`` or ``"((4, 30), (4, 10))"`` for messages."""
        shapes = [str(tuple(t.shape)) for t in self.tensors]
        return f"({', '.join(shapes)})" if self.is_tuple else shapes[0]

    def sample_shapes(self) -> str:
        """``"3×224×224"`` or ``"30 + 10"``: one sample's shape, for messages."""
        return " + ".join("×".join(map(str, t.shape[1:])) or "1" for t in self.tensors)

    def signature(self) -> tuple:
        """What a remembered probe of the model depends on: shapes, dtypes, device."""
        return tuple((tuple(t.shape[1:]), t.dtype, t.device) for t in self.tensors)

    # ------------------------------------------------------------------ the one tensor
    def single(self, method: str, expected: str = "one tensor") -> torch.Tensor:
        """The one tensor of a method that explains a single input.

        Raises:
            ValueError: for a tuple, naming the method and what it takes.
        """
        if self.is_tuple:
            raise ValueError(
                f"{method} explains {expected}; `input_data` is a tuple of {len(self.tensors)} "
                "tensors (a multi-input model)"
            )
        return self.tensors[0]

    def images(self, method: str, why: str) -> torch.Tensor:
        """The one tensor, which must be an image batch (N, C, H, W) for ``why``."""
        tensor = self.single(method, "an image batch (N, C, H, W)")
        if tensor.dim() != 4:
            raise ValueError(
                f"{method}: {why} needs images (N, C, H, W); `input_data` has shape "
                f"{tuple(tensor.shape)}"
            )
        return tensor

    # ------------------------------------------------------------------ derived batches
    def as_given(self) -> Union[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The tensors as the caller gave them: one tensor, or a tuple."""
        return self.tensors if self.is_tuple else self.tensors[0]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
        """``fn`` applied to every tensor."""
        return Inputs([fn(t) for t in self.tensors], self.is_tuple)

    def rows(self, index: Union[slice, torch.Tensor]) -> Inputs:
        """The samples ``index`` of every tensor."""
        return self.map(lambda t: t[index])

    def for_gradients(self) -> Union[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Fresh leaves for Captum: floating tensors require grad, integer ones (token ids) are
        passed as they are; the caller's tensors are never touched."""
        return Inputs(
            [t.detach().requires_grad_(True) if t.is_floating_point() else t.detach()
             for t in self.tensors],
            self.is_tuple,
        ).as_given()  # fmt: skip

    def scores(self, model: Any, additional_forward_args: Any = None) -> Any:
        """The model's answer: ``model(*tensors, *additional_forward_args)``."""
        return model(*self.tensors, *forward_args(additional_forward_args))


def check_inputs(
    value: object,
    name: str = "input_data",
    ndim: Optional[int] = None,
    integers: bool = False,
    method: str = "this method",
) -> Inputs:
    """The one check of what is explained: a tensor, or a tuple/list of tensors sharing N.

    Args:
        value: the caller's ``input_data``.
        name: its name, for messages.
        ndim: the dimensions the method needs (``None``: any).
        integers: whether integer tensors (token ids) are allowed (layer methods on an
            embedding, perturbation methods); floating tensors are always allowed.
        method: the method's name, for messages.

    Raises:
        TypeError: not a tensor or a tuple of tensors; integers where floats are needed.
        ValueError: an empty batch or tuple, differing N, NaN/inf, a wrong number of dimensions.
    """
    if isinstance(value, torch.Tensor):
        tensors, is_tuple = [value], False
    elif isinstance(value, (tuple, list)):
        if not value:
            raise ValueError(f"`{name}` is an empty tuple; give one tensor or a tuple of tensors")
        bad = [i for i, t in enumerate(value) if not isinstance(t, torch.Tensor)]
        if bad:
            raise TypeError(
                f"`{name}` must be a tensor or a tuple of tensors; item {bad[0]} is "
                f"{type(value[bad[0]]).__name__}"
            )
        tensors, is_tuple = list(value), True
    else:
        raise TypeError(
            f"`{name}` must be a torch.Tensor or a tuple of tensors, got {type(value).__name__}"
        )
    for index, tensor in enumerate(tensors):
        label = f"{name}[{index}]" if is_tuple else name
        if tensor.is_complex() or tensor.dtype == torch.bool:
            raise TypeError(f"`{label}` must hold real numbers, got {tensor.dtype}")
        if not tensor.is_floating_point():
            if not integers:
                raise TypeError(
                    f"`{label}` holds integers ({tensor.dtype}): {method} needs floating "
                    "inputs; for token ids use a layer method on the embedding (e.g. "
                    "layer_integrated_gradients with layer=model.embedding) or a perturbation "
                    "method"
                )
            if tensor.dim() == 0 or tensor.shape[0] == 0 or tensor.numel() == 0:
                raise ValueError(
                    f"`{label}` must hold at least one sample, got shape {tuple(tensor.shape)}"
                )
            if ndim is not None and tensor.dim() != ndim:
                raise ValueError(f"`{label}` must be {ndim}-D, got shape {tuple(tensor.shape)}")
            continue
        check_tensor(tensor, label, ndim=ndim)
    sizes = {t.shape[0] for t in tensors}
    if len(sizes) > 1:
        raise ValueError(
            f"the tensors of `{name}` must share the sample dimension N, got "
            f"{', '.join(str(tuple(t.shape)) for t in tensors)}"
        )
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(
            f"the tensors of `{name}` are on different devices: {sorted(map(str, devices))}"
        )
    return Inputs(tensors, is_tuple)
