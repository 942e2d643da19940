"""Progress bars: tqdm (installed with captum) when present, otherwise a silent stand-in."""

from __future__ import annotations

import sys
from typing import Any, Union


class _Silent:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int, desc: str, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar of ``total`` steps, or a no-op object with the same methods."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, **kwargs)
        except ImportError:  # pragma: no cover
            pass
    return _Silent()


#: Work (steps, iterations, model calls) from which ``progress="auto"`` shows a bar.
LONG_WORK = 200


def wants_progress(progress: Union[bool, str, None], work: int) -> bool:
    """Whether to show a bar: ``True``/``False`` as given; ``"auto"`` (or ``None``) when the
    work is long (at least :data:`LONG_WORK` steps) and stderr is a terminal."""
    if isinstance(progress, bool):
        return progress
    if progress not in (None, "auto"):
        raise ValueError(f"`progress` must be True, False or 'auto', got {progress!r}")
    return work >= LONG_WORK and bool(getattr(sys.stderr, "isatty", lambda: False)())
