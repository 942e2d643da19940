"""Peak resident memory of one call, measured in a fresh interpreter (Linux only)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_MEASURE = """
def _status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
_before = _status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # peak := now
{call}
print((_status("VmHWM") - _before) / 1024)
"""


def extra_peak_mib(setup: str, call: str) -> float:
    """MiB by which ``call`` raises the peak resident size above what ``setup`` left resident.

    ``setup`` builds the inputs and warms up (one-time allocations are not the call's). Skips
    where Linux's resettable peak-RSS counter is missing.
    """
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's resettable peak-RSS counter")
    code = textwrap.dedent(setup) + _MEASURE.format(call=textwrap.dedent(call).strip())
    # Large blocks from mmap, returned on free: resident memory is live memory, not allocator cache.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(done.stdout.strip().splitlines()[-1])
