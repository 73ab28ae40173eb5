"""``search`` throughput: MB/s over a 1 GiB mapped image, against ``bytes.find`` over the raw
file in the same run.

The image (x86-64, built once in a temporary directory) maps 1 GiB of RAM filled with
non-zero noise twice over: a direct map in 2 MiB pages, and a window of 64 MiB in 4 KiB pages
whose frames are in reverse order (every page a seam). Printed: the medians of a rare string
search over everything (1 GiB + 64 MiB searched), of the scattered window alone, of an aligned
pointer search, and the baseline: the raw file read in 4 MiB blocks and ``bytes.find`` run on
each. Run: ``python benchmarks/bench_search.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pagewalk
from _util import median_time, report
from pagewalk.search import Pattern, SearchStats, search

GIB = 1 << 30
DIRECT = 0xFFFF888000000000
WINDOW = 0x7F0000000000
SCATTER = 64 << 20
NEEDLE = b"pagewalk-bench-needle"


def build(path: Path) -> None:
    from pagewalk.image import build as build_image
    from pagewalk.image import save

    spec = {
        "mode": "x86_64",
        "ram": "1088M",
        "tables": {"base": hex(GIB), "size": "64M"},
        "map": [{"va": hex(DIRECT), "pa": "0x0", "size": "1G", "perm": "rw"}],
    }
    built = build_image(spec)
    space, mem = built.space, built.mem
    pages = SCATTER // 4096
    for i in range(pages):  # frames in reverse order: no two neighbours adjacent in PA
        space.map(WINDOW + i * 4096, (pages - 1 - i) * 4096 + (256 << 20), 4096).ignore()
    rng = np.random.default_rng(1)
    noise = rng.integers(1, 255, size=16 << 20, dtype=np.uint8).tobytes()
    for at in range(0, GIB, len(noise)):
        mem.write(at, noise)
    for k in range(8):
        mem.write(k * (GIB // 8) + 12345, NEEDLE)
    save(path, mem, built.mode, space.roots)


def baseline(path: Path) -> int:
    hits = 0
    with open(path, "rb") as f:
        tail = b""
        while block := f.read(4 << 20):
            buf = tail + block
            pos = buf.find(NEEDLE)
            while pos >= 0:
                hits += 1
                pos = buf.find(NEEDLE, pos + 1)
            tail = buf[-(len(NEEDLE) - 1) :]
    return hits


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.img"
        start = time.perf_counter()
        build(path)
        print(f"built {os.path.getsize(path) >> 20} MiB in {time.perf_counter() - start:.1f} s")
        machine = pagewalk.open(path)
        stats = SearchStats()
        hits = list(search(machine, Pattern(NEEDLE), stats=stats))
        assert len(hits) == 9, hits  # 8 in the direct map, 1 alias in the window
        size_mb = stats.bytes_read / 1e6
        t_all = median_time(lambda: list(search(machine, Pattern(NEEDLE))), 3)
        t_ptr = median_time(
            lambda: list(search(machine, Pattern.pointer(DIRECT, DIRECT + 4096, 8))), 3
        )
        t_win = median_time(
            lambda: list(search(machine, Pattern(NEEDLE), va_range=(WINDOW, WINDOW + SCATTER))),
            3,
        )
        t_base = median_time(lambda: baseline(path), 3)
        raw_mb = os.path.getsize(path) / 1e6
        report("search: string, everything mapped", size_mb / t_all, "MB/s")
        report("search: pointer window, everything mapped", size_mb / t_ptr, "MB/s")
        report("search: string, 64 MiB of scattered 4K pages", SCATTER / 1e6 / t_win, "MB/s")
        report("baseline: bytes.find over the raw file", raw_mb / t_base, "MB/s")
        report("ratio: search / baseline (string)", (size_mb / t_all) / (raw_mb / t_base), "x")


if __name__ == "__main__":
    main()
