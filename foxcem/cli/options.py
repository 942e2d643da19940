"""Parsing of the command line's value syntax: number lists, sizes, targets, KEY=VALUE options."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any, Callable, Optional, TypeVar

from foxcem.cli.errors import CLIError

__all__ = [
    "parse_floats",
    "parse_literal",
    "parse_options",
    "parse_size",
    "parse_targets",
    "split_numbers",
]

_T = TypeVar("_T")


def split_numbers(
    text: str, convert: Callable[[str], _T], error: str, sep: str = r"[,\s]+"
) -> list[_T]:
    """The non-empty parts of ``text`` split on ``sep``, converted; ``CLIError(error)`` if one
    is not a number."""
    try:
        return [convert(v) for v in re.split(sep, text.strip()) if v]
    except ValueError:
        raise CLIError(error) from None


def parse_floats(text: Optional[str], name: str) -> Optional[list[float]]:
    if text is None:
        return None
    values = split_numbers(text, float, f"{name} must be comma-separated numbers, got {text!r}")
    if not values:
        raise CLIError(f"{name} must hold at least one number")
    return values


def parse_size(text: Optional[str], name: str = "--size") -> Optional[tuple[int, int]]:
    """``"H,W"``, ``"HxW"`` or one number for a square, as (H, W)."""
    if text is None:
        return None
    error = f"{name} must be H,W or one integer, got {text!r}"
    values = split_numbers(text.lower(), int, error, sep=r"[,x\s]+")
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise CLIError(f"{name} must be H,W or one positive integer, got {text!r}")
    return values[0], values[1]


#: Command-line spellings of True, False and None (any case), besides Python's.
_WORDS = {"true": True, "false": False, "none": None}


def parse_literal(text: str) -> Any:
    """A value of ``--option KEY=VALUE``: a Python literal (``3``, ``0.5``, ``(1, 2)``, ``True``),
    ``true``/``false``/``none`` in any case, else the text itself — which a boolean option
    refuses (``"no"`` is never read as true: the library's one strict bool check)."""
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: literal(value)}`` (a string when not a literal)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise CLIError(
                f"--option must be KEY=VALUE with a Python identifier as KEY, got {item!r}"
            )
        options[key] = parse_literal(value.strip())
    return options


def parse_targets(text: Optional[str], n: int) -> Any:
    if text is None:
        return None
    values = split_numbers(
        text, int, f"--target must be an int or comma-separated ints, got {text!r}"
    )
    if len(values) == 1:
        return values[0]
    if len(values) != n:
        raise CLIError(f"--target gives {len(values)} classes for {n} samples")
    return values
