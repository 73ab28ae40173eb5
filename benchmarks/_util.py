"""Shared helpers for the benchmarks: medians of repeated timings, and RSS readings.

The machine is shared and noisy, so every figure is the median of several runs, and every ratio
is against a baseline measured in the same run.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable


def median_time(func: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``func`` over ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rss_bytes() -> int:
    """The current resident set size of this process, from /proc (bytes)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize()


def report(name: str, value: float, unit: str, note: str = "") -> None:
    """Print one result line."""
    print(f"{name:<58} {value:>14,.1f} {unit}{'  ' + note if note else ''}")
