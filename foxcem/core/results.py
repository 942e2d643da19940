"""What every explainer shares about results and options: the convergence-delta split, the
empty-result check, detaching, and the family of option names (for ``None`` options a method
lacks)."""

from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = [
    "EXPLAINER_CLASSES",
    "detach_result",
    "family_options",
    "split_convergence_delta",
    "validate_result",
]


def split_convergence_delta(
    result: Any, with_delta: Optional[bool] = None
) -> tuple[Any, Optional[torch.Tensor]]:
    """``(attributions, delta)`` from a ``calculate_features`` result.

    Explainers return the attributions alone, or ``(attributions, delta)`` when asked for the
    convergence delta (``return_convergence_delta=True``); ``delta`` is ``None`` for the former.
    The attributions of a tuple input are themselves a tuple of tensors, each with the sample
    dimension first, while a delta is (N,): a pair ``(tensor of ≥ 2 dims, 1-D tensor)`` or
    ``(tuple/list, 1-D tensor)`` is read as attributions and delta. A caller who knows whether it
    asked for the delta says so with ``with_delta`` (exact for every shape).
    """
    if with_delta is not None:
        return (result[0], result[1]) if with_delta else (result, None)
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], torch.Tensor):
        first, delta = result
        if delta.dim() == 1 and not (isinstance(first, torch.Tensor) and first.dim() < 2):
            return first, delta
    return result, None


def _result_tensors(result: Any) -> list[Any]:
    """The tensors of a result: a tensor, a tuple/list of them, or lists of tuples (layers)."""
    if isinstance(result, (tuple, list)):
        return [t for item in result for t in _result_tensors(item)]
    return [result]


def detach_result(result: Any) -> Any:
    """A result with every tensor detached, its structure (tuple, list) kept."""
    if isinstance(result, (tuple, list)):
        return type(result)(detach_result(item) for item in result)
    return result.detach() if isinstance(result, torch.Tensor) else result


def validate_result(attributions: Any) -> None:
    """Reject an empty attribution.

    Raises:
        RuntimeError: if ``attributions`` has a zero in its shape.
    """
    for tensor in _result_tensors(attributions):
        if not isinstance(tensor, torch.Tensor):
            raise RuntimeError(f"the explainer returned {type(tensor).__name__}, not a tensor")
        if 0 in tensor.shape:
            raise RuntimeError(
                f"the explainer returned an empty attribution of shape {tuple(tensor.shape)}"
            )


#: Every Explainer subclass defined so far (what :func:`family_options` reads).
EXPLAINER_CLASSES: list[type] = []
_FAMILY: dict[int, frozenset[str]] = {}


def family_options() -> frozenset[str]:
    """Every option name some explainer takes (``baselines``, ``layer``, ``n_steps``,
    ``feature_mask``, ...): given as ``None`` to a method that lacks it, such an option means
    "not used" and is dropped, so that one loop can pass one keyword set to every method; a name
    no method has (a misspelling) is still refused."""
    count = len(EXPLAINER_CLASSES)
    if count not in _FAMILY:
        names: set[str] = set()
        for cls in list(EXPLAINER_CLASSES):
            try:
                names.update(cls().options() or ())
            except Exception:  # abstract, or needs constructor arguments: lists none
                continue
        _FAMILY.clear()
        _FAMILY[count] = frozenset(names)
    return _FAMILY[count]
