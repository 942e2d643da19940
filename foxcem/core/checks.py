"""Input checks shared by every explainer.

Each check raises ``TypeError`` or ``ValueError`` whose message names the offending argument and
says what was expected, so bad input never surfaces as a shape error from deep inside torch.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

TargetLike = Union[int, torch.Tensor, Sequence[int], None]


def check_tensor(
    value: object, name: str = "input_data", ndim: Optional[int] = None, finite: bool = True
) -> torch.Tensor:
    """Check that ``value`` is a non-empty floating-point tensor with ``ndim`` dimensions and
    (with ``finite``) no NaN or inf."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"`{name}` must have a floating dtype, got {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        layout = " (N, C, H, W)" if ndim == 4 else ""
        raise ValueError(
            f"`{name}` must be a {ndim}-D tensor{layout}, got shape {tuple(value.shape)}"
        )
    if value.dim() == 0 or value.shape[0] == 0 or value.numel() == 0:
        raise ValueError(f"`{name}` must hold at least one sample, got shape {tuple(value.shape)}")
    if finite and value.device.type != "meta" and not bool(torch.isfinite(value).all()):
        bad = (~torch.isfinite(value)).reshape(value.shape[0], -1).any(dim=1).nonzero()
        rows = ", ".join(str(int(i)) for i in bad[:5, 0])
        raise ValueError(f"`{name}` must be finite; NaN or inf in sample(s) {rows}")
    return value


def model_device(model: nn.Module) -> Optional[torch.device]:
    """The device of the model's first parameter or buffer (``None`` for a stateless model)."""
    if not isinstance(model, nn.Module):
        return None
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def check_model(model: object, name: str = "model") -> None:
    """Check that ``model`` can be called."""
    if not callable(model):
        raise TypeError(
            f"`{name}` must be a torch.nn.Module or a callable, got {type(model).__name__}"
        )


def check_same_device(model: nn.Module, input_data: torch.Tensor, name: str = "input_data") -> None:
    """Check that ``input_data`` lives on the model's device."""
    device = model_device(model)
    if device is not None and device != input_data.device:
        raise ValueError(
            f"`{name}` is on {input_data.device} but the model is on {device}; "
            f"move one of them, e.g. `{name}.to({str(device)!r})`"
        )


def _describe_answer(answer: object) -> str:
    """What a model returned, in a few words (for an error message)."""
    if answer is None:
        return "None"
    if isinstance(answer, Mapping):
        keys = ", ".join(repr(k) for k in list(answer)[:5])
        return f"a dict (keys {keys})"
    if isinstance(answer, (torch.Tensor, np.ndarray)):
        return f"a {type(answer).__name__} of shape {tuple(answer.shape)} and dtype {answer.dtype}"
    if isinstance(answer, (list, tuple)):
        return f"a {type(answer).__name__} of {len(answer)} items"
    return f"a {type(answer).__name__}"


def check_scores(
    scores: object,
    num_samples: int,
    name: str = "model output",
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """The one check of a model's answer: class scores of shape (N, classes).

    A tensor is returned as it is (its autograd graph kept); a NumPy array, a nested list of
    numbers or a list of N row tensors becomes a floating tensor on ``device``. Integer or boolean
    scores (e.g. per-class pixel counts) become float32.

    Raises:
        ValueError: saying what came back (None, a dict, strings, a ragged list, class labels,
            another shape) and what is expected.
    """
    expected = f"class scores of shape (N, classes) = ({num_samples}, classes)"
    answer = scores
    if (
        isinstance(answer, (list, tuple))
        and answer
        and all(isinstance(row, torch.Tensor) for row in answer)
    ):
        shapes = {tuple(row.shape) for row in answer}
        if len(shapes) != 1:
            raise ValueError(
                f"the {name} must be {expected}, got a list of row tensors of different shapes "
                f"{sorted(shapes)[:3]}"
            )
        answer = torch.stack(list(answer))
    elif isinstance(answer, (list, tuple, np.ndarray)) and not isinstance(answer, torch.Tensor):
        try:
            array = np.asarray(answer)
        except ValueError:
            array = None  # ragged
        if array is not None and array.dtype.kind == "c":
            raise ValueError(f"the {name} must be real {expected}, got dtype {array.dtype}")
        if array is None or array.dtype.kind not in "biuf":
            raise ValueError(
                f"the {name} must be {expected} (a tensor or an array of numbers), got "
                f"{_describe_answer(scores)} that is not a rectangular array of numbers"
            )
        answer = torch.from_numpy(np.ascontiguousarray(array))
    if not isinstance(answer, torch.Tensor):
        hint = (
            "; pass a quantizer= that maps it to class scores"
            if isinstance(answer, Mapping)
            else ""
        )
        raise ValueError(f"the {name} must be {expected}, got {_describe_answer(scores)}{hint}")
    if answer.is_complex():
        raise ValueError(f"the {name} must be real {expected}, got dtype {answer.dtype}")
    if not answer.is_floating_point():
        answer = answer.to(torch.float32)
    if answer.dim() != 2 or answer.shape[0] != num_samples:
        labels = (
            " (class labels? give scores: logits or probabilities)" if answer.dim() == 1 else ""
        )
        raise ValueError(f"the {name} must be {expected}, got shape {tuple(answer.shape)}{labels}")
    if device is not None and answer.device != device:
        answer = answer.to(device)
    return answer


def check_target(
    target: TargetLike,
    num_samples: int,
    num_classes: int,
    device: Optional[torch.device] = None,
    name: str = "pred_label_idx",
) -> Optional[torch.Tensor]:
    """Normalise a target to a (N,) int64 tensor, checking type, length and range.

    Accepts an ``int`` (one class for every sample), a 0-D or 1-D integer tensor of length N, or a
    sequence of N ints. ``None`` is returned unchanged (callers resolve it to the prediction).
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError(f"`{name}` must be an int or an integer tensor, got bool")
    if isinstance(target, int):
        values = torch.full((num_samples,), target, dtype=torch.long)
    elif isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"`{name}` must be an integer tensor, got dtype {target.dtype}")
        if target.device.type == "meta":
            raise ValueError(f"`{name}` is on the meta device (it holds no values)")
        if target.dim() > 1:
            raise ValueError(
                f"`{name}` must be a 0-D or 1-D tensor, got shape {tuple(target.shape)}"
            )
        values = target.reshape(-1).long()
        if target.dim() == 0:
            values = values.expand(num_samples)
    elif isinstance(target, np.ndarray) and target.dtype.kind in "iu":
        values = torch.from_numpy(target.reshape(-1).astype(np.int64))
        if target.ndim == 0:
            values = values.expand(num_samples)
        elif target.ndim > 1:
            raise ValueError(f"`{name}` must be 0-D or 1-D, got shape {target.shape}")
    elif isinstance(target, np.integer):
        values = torch.full((num_samples,), int(target), dtype=torch.long)
    elif isinstance(target, Sequence) and not isinstance(target, (str, bytes)):
        if not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in target
        ):
            raise TypeError(f"`{name}` given as a sequence must hold ints only")
        values = torch.tensor([int(v) for v in target], dtype=torch.long)
    else:
        what = (
            f"{type(target).__name__} of dtype {target.dtype}"
            if isinstance(target, np.ndarray)
            else type(target).__name__
        )
        raise TypeError(
            f"`{name}` must be an int, a 0-D/1-D integer tensor or a sequence of ints, got {what}"
        )
    if values.numel() != num_samples:
        raise ValueError(
            f"`{name}` must have one entry per sample (N={num_samples}), got {values.numel()}"
        )
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"`{name}` must be in [0, {num_classes - 1}] (the model has {num_classes} outputs), "
            f"got values in [{low}, {high}]"
        )
    return values.to(device) if device is not None else values


def check_positive_int(value: object, name: str) -> int:
    """Check that ``value`` is a positive ``int``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value}")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices`` (compared as a string or ``None`` only: an
    array or tensor is refused, never compared elementwise)."""
    if not (value is None or isinstance(value, str)) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_optional_positive_int(value: object, name: str) -> Optional[int]:
    """``None`` or a positive ``int``."""
    return None if value is None else check_positive_int(value, name)


def check_bool(value: object, name: str) -> bool:
    """The one strict check of a boolean option: ``True`` or ``False`` (NumPy's and a 0-D bool
    tensor's too); a string such as ``"False"``, a number or ``None`` is a ``TypeError``, never
    read as true."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.dim() == 0:
        return bool(value)
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return value


def model_dtype_device(model: Any) -> tuple[Optional[torch.dtype], Optional[torch.device]]:
    """The dtype and device of the model's first parameter (or buffer); ``(None, None)``: none."""
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.dtype, tensor.device
        for tensor in model.buffers():
            return tensor.dtype, tensor.device
    return None, None


def check_finite_float(
    value: object, name: str, minimum: Optional[float] = None, strict: bool = False
) -> float:
    """A finite real number (``bool`` refused), at least ``minimum`` (greater with ``strict``).

    NaN and ±inf are refused explicitly: ``nan <= 0`` is False, so a plain range check lets them
    through.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
            value = float(value)
        else:
            raise TypeError(f"`{name}` must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"`{name}` must be {'>' if strict else '>='} {minimum:g}, got {value}")
    return value


def check_options(method: str, given: Iterable[str], known: Sequence[str]) -> None:
    """Refuse an option a method does not have, naming it, the closest known one and all of
    them (instead of Python's message about a private function's keyword arguments).

    Raises:
        TypeError: for the first unknown option.
    """
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"{method} has no option {name!r}{hint}; its options are: {', '.join(known)}"
            )
