"""Say before a long run what it will cost: an estimate from the first units of work.

A loop of known length (CEM's steps, Captum's forward passes, a perturbation method's
evaluations) reports each finished unit to a :class:`CostWatch`. Once a few units or a couple of
seconds have passed after the first, the watch extrapolates from those (the first unit pays for
warm-up — kernel selection, allocation — and can take many times as long as the others); if the whole run will take longer than
:data:`LONG_RUN` seconds it warns once — a :class:`LongRunWarning` naming what runs, how long it
will take, and what would make it cheaper — and stays silent otherwise.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional, Union

from torch import nn

from foxcem.core.progress import progress_bar, stderr_is_terminal

__all__ = [
    "LONG_RUN",
    "SHOW_PROGRESS",
    "CostWatch",
    "LongRunWarning",
    "format_duration",
    "watch_passes",
]

#: Seconds from which a run is announced.
LONG_RUN = 60.0
#: The estimate is made after this many units past the first, or after this many seconds past
#: the first unit, whichever comes first; a first unit alone of :data:`FIRST_ALONE` seconds or
#: more is extrapolated at once (a run that slow needs no second sample to be called long).
SAMPLE_UNITS = 3
SAMPLE_SECONDS = 2.0
FIRST_ALONE = 20.0
#: Seconds from which ``progress="auto"`` shows a bar for watched forward passes.
SHOW_PROGRESS = 10.0


class LongRunWarning(UserWarning):
    """A run will take longer than :data:`LONG_RUN` seconds (filter it like any warning)."""


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"3.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class CostWatch:
    """Extrapolate a loop's duration from its first units; warn once if it is long.

    Args:
        total: units of work in the whole run (steps, passes, evaluations).
        what: what runs, for the message (e.g. ``"CEM PN (URV) on 4 inputs of 3×224×224"``).
        unit: the name of one unit (``"step"``, ``"forward pass"``).
        cheaper: what would make the run cheaper, one suggestion per item.
        threshold: seconds from which to warn (default :data:`LONG_RUN`).
        clock: the clock (seconds); replaceable in tests.
    """

    def __init__(
        self,
        total: int,
        what: str,
        unit: str = "step",
        cheaper: Sequence[str] = (),
        threshold: Optional[float] = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.total = max(int(total), 0)
        self.what, self.unit, self.cheaper = what, unit, list(cheaper)
        self.threshold = LONG_RUN if threshold is None else float(threshold)
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.first: Optional[float] = None  # when the first update came
        self.first_units = 0  # and how many units it reported
        #: the extrapolated duration of the whole run in seconds, once estimated.
        self.estimate: Optional[float] = None

    def update(self, units: int = 1) -> None:
        """Record finished units; the first time enough have passed, estimate (and maybe warn)."""
        self.done += units
        if self.estimate is not None or self.done >= self.total:
            return
        now = self.clock()
        if self.first is None:
            self.first, self.first_units = now, self.done
            if now - self.start < FIRST_ALONE:
                return
            per_unit = (now - self.start) / self.done
            self.estimate = per_unit * self.total
        else:
            later, since = self.done - self.first_units, now - self.first
            if later < SAMPLE_UNITS and since < SAMPLE_SECONDS:
                return
            per_unit = since / later
            rest = per_unit * (self.total - self.first_units)
            self.estimate = (self.first - self.start) + rest
        if self.estimate >= self.threshold:
            text = (
                f"{self.what} will take about {format_duration(self.estimate)} "
                f"({self.total} {self.unit}s at {per_unit:.3g} s each, from the first "
                f"{self.done})"
            )
            if self.cheaper:
                text += "; cheaper: " + "; ".join(self.cheaper)
            warnings.warn(text, LongRunWarning, stacklevel=2)


@contextlib.contextmanager
def watch_passes(
    model: object,
    total_passes: int,
    what: str,
    cheaper: Sequence[str] = (),
    progress: Union[bool, str, None] = "auto",
) -> Iterator[None]:
    """Count the forward passes of ``model`` (an ``nn.Module``) during a block: a
    :class:`CostWatch` over ``total_passes`` announces a long run, and a progress reporter shows
    the passes — with ``progress="auto"`` only once the run is estimated to take
    :data:`SHOW_PROGRESS` seconds or more and stderr is a terminal. A callable that is not a
    module, or a run of one pass, is not watched.
    """
    if not isinstance(model, nn.Module) or total_passes < 2:
        yield
        return
    watch = CostWatch(total_passes, what, unit="forward pass", cheaper=cheaper)
    bar: list[Any] = []
    if isinstance(progress, bool):
        show = progress
    else:
        show = None if progress in (None, "auto") and stderr_is_terminal() else False

    def hook(*_: Any) -> None:
        watch.update(1)
        if show is not False and not bar and (show or (watch.estimate or 0) >= SHOW_PROGRESS):
            bar.append(progress_bar(total_passes, what, enabled=True, unit="pass"))
            bar[0].update(watch.done)
        elif bar:
            bar[0].update(1)

    handle = model.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        if bar:
            bar[0].close()
