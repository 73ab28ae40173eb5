"""Hostile tables against benign ones: wall time and peak RSS of each inspecting command.

The hostile images (tests/hostile/hostile_images.py) hold the same 16 KiB of x86-64 tables as
the benign baseline, but every entry points to the one table below (2^27 ranges of 2 MiB, or
2^36 pages of one frame) or back to the PML4. Each command runs as a subprocess (the installed
entry point, as a user runs it); its peak RSS comes from ``os.wait4`` (that child only) and
every figure is the median of a few runs, with the ratio against the benign image measured in
the same run. Listings past ``--max-mappings`` (default 2^22) stop with exit 2 before printing;
``amplified`` stays under the limit (2^18 ranges of one PT) to show that listings stream.

Run: python benchmarks/bench_hostile.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hostile"))

from hostile_images import benign, fanout, self_ref

from _util import report

COMMANDS: dict[str, list[str]] = {
    "maps --json": ["maps", "{img}", "--json"],
    "maps (table)": ["maps", "{img}"],
    "lint --json": ["lint", "{img}", "--json"],
    "stats --json": ["stats", "{img}", "--json"],
    "p2v PA": ["p2v", "{img}", "0x5000", "0x1000"],
    "diff IMG benign": ["diff", "{img}", "{benign}", "--json"],
}


def run_once(args: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit status) of one ``python -m pagewalk ARGS``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pagewalk", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss * 1024, proc.returncode


def measure(args: list[str], repeat: int) -> tuple[float, float, int]:
    """Median wall time (s), median peak RSS (MiB) and the exit status."""
    runs = [run_once(args) for _ in range(repeat)]
    wall = statistics.median(r[0] for r in runs)
    rss = statistics.median(r[1] for r in runs) / (1 << 20)
    return wall, rss, runs[-1][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pagewalk-hostile-") as tmp:
        d = Path(tmp)
        images = {
            "benign": benign(d),
            "fanout 2^27 ranges": fanout(d),
            "fanout 2^36 pages": fanout(d, same_frame=True, name="same.img"),
            "self-referencing PML4": self_ref(d),
            "amplified 2^18 ranges": fanout(d, fan=(1, 512, 512), name="amplified.img"),
        }
        base = str(images["benign"])
        for label, template in COMMANDS.items():
            print(f"\n{label}  (median of {opts.repeat}; ratio to the benign image)")
            first: tuple[float, float] | None = None
            for name, img in images.items():
                args = [a.format(img=img, benign=base) for a in template]
                wall, rss, status = measure(args, opts.repeat)
                if first is None:
                    first = (wall, rss)
                note = f"exit {status}; x{wall / first[0]:.1f} time, x{rss / first[1]:.2f} RSS"
                report(f"  {name}: wall", wall * 1e3, "ms", note)
                report(f"  {name}: peak RSS", rss, "MiB")


if __name__ == "__main__":
    main()
