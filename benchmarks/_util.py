"""Shared helpers for the benchmarks: medians of repeated timings, and RSS readings.

The machine is shared and noisy, so every figure is the median of several runs, and every ratio
is against a baseline measured in the same run. Whole-process figures (a command's wall time
from start-up to exit, and its peak RSS) come from :func:`run_child`.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple


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


# A bare interpreter (no site, no imports but os and time) that forks, execs the command and
# reports wall time and peak RSS from wait4. A child forked from this benchmark's own process
# would inherit its high-water RSS (Linux keeps the larger of the pre-exec and post-exec peaks),
# so the command is started from this small process instead.
_SPAWN = """
import os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(report, "w") as f:
    f.write(f"{elapsed!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


class Child(NamedTuple):
    """One measured command: wall seconds from its fork to its exit (interpreter start-up
    included), its peak RSS in bytes, and the lines it wrote to the pipe (None: to a file)."""

    seconds: float
    peak_rss: int
    lines: int | None


def run_child(
    cmd: list[str], out: Path | None = None, env: Mapping[str, str] | None = None
) -> Child:
    """Run ``cmd`` to completion as one whole process and measure it.

    Its stdout goes to the file ``out`` (truncated), or, when ``out`` is None, to a pipe that
    this process drains and discards (so the child sees a pipe, not a terminal or a file).

    Returns:
        The wall time, and the peak RSS (``ru_maxrss`` from ``wait4`` in a small launcher).

    Raises:
        subprocess.CalledProcessError: the command failed.
    """
    fd, report_path = tempfile.mkstemp(prefix="run_child")
    os.close(fd)
    spawn = [sys.executable, "-I", "-S", "-c", _SPAWN, report_path, *cmd]
    lines = None
    try:
        if out is not None:
            with open(out, "wb") as sink:
                subprocess.run(spawn, stdout=sink, env=env, check=True)
        else:
            with subprocess.Popen(spawn, stdout=subprocess.PIPE, env=env) as proc:
                assert proc.stdout is not None
                lines = 0
                while chunk := os.read(proc.stdout.fileno(), 1 << 20):
                    lines += chunk.count(b"\n")
            if proc.returncode:
                raise subprocess.CalledProcessError(proc.returncode, spawn)
        elapsed, maxrss, code = Path(report_path).read_text().split()
    finally:
        os.unlink(report_path)
    if int(code):
        raise subprocess.CalledProcessError(int(code), cmd)
    return Child(float(elapsed), int(maxrss) * 1024, lines)  # Linux reports kilobytes


def verdict(name: str, value: float, unit: str, goal: str, ok: bool, note: str = "") -> None:
    """Print one target line: the measured value, the goal and PASS or FAIL."""
    tail = f"  {note}" if note else ""
    print(f"{name:<54} {value:>10,.2f} {unit:<5} goal {goal:<7} {'PASS' if ok else 'FAIL'}{tail}")
