"""Progress on long work: a tqdm bar on a terminal, a few plain lines in a log, nothing when off.

A bar redraws itself with carriage returns, which a log file (stderr redirected, a CI job, a
notebook's captured output) keeps as hundreds of kilobytes of partial lines. When stderr is not
a terminal, :func:`progress_bar` therefore writes at most one plain line per quarter of the work
instead. Every bar says what it runs (``desc``), and :meth:`set_description` updates it (e.g. the
round of CEM's c search).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Union

__all__ = [
    "LONG_WORK",
    "check_progress",
    "progress_bar",
    "stderr_is_terminal",
    "wants_progress",
]


class _Silent:
    """The interface of a bar, doing nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _PlainLines(_Silent):
    """Progress as a few whole lines on stderr: one per finished quarter of the work."""

    def __init__(self, total: int, desc: str, unit: str = "it") -> None:
        super().__init__()
        self.total, self.desc, self.unit = max(int(total), 1), desc, unit
        self.start = time.perf_counter()
        self.quarter = 0

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        quarter = min(4, 4 * self.n // self.total)
        if quarter > self.quarter:
            self.quarter = quarter
            elapsed = time.perf_counter() - self.start
            print(
                f"{self.desc}: {self.n}/{self.total} {self.unit} ({25 * quarter}%, "
                f"{elapsed:.1f} s)",
                file=sys.stderr,
                flush=True,
            )


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (where a redrawn bar belongs)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(total: int, desc: str, enabled: bool = True, **kwargs: Any) -> Any:
    """A progress reporter for ``total`` steps of work described by ``desc``.

    On a terminal a tqdm bar (tqdm comes with captum); with stderr redirected a plain line per
    finished quarter; nothing when ``enabled`` is False. All three have ``update``,
    ``set_description``, ``set_postfix`` and ``close``.
    """
    if not enabled:
        return _Silent()
    if stderr_is_terminal():
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, **kwargs)
        except ImportError:  # pragma: no cover
            pass
    return _PlainLines(total, desc, unit=kwargs.get("unit", "it"))


#: Work (steps, iterations, model calls) from which ``progress="auto"`` shows a bar.
LONG_WORK = 200


def check_progress(progress: object, name: str = "show_progress") -> Union[bool, str]:
    """``True``, ``False`` or ``"auto"`` (``None`` means ``"auto"``)."""
    if progress is None or progress == "auto":
        return "auto"
    if not isinstance(progress, bool):
        raise ValueError(f"`{name}` must be True, False or 'auto', got {progress!r}")
    return progress


def wants_progress(progress: Union[bool, str, None], work: int, name: str = "progress") -> bool:
    """Whether to report progress: ``True``/``False`` as given; ``"auto"`` (or ``None``) when
    the work is long (at least :data:`LONG_WORK` steps) and stderr is a terminal."""
    progress = check_progress(progress, name)
    if isinstance(progress, bool):
        return progress
    return work >= LONG_WORK and stderr_is_terminal()
