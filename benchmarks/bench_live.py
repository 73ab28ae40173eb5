"""``maps --gdb`` of a QEMU guest: wall time, bytes read against table bytes, packets.

Run: ``python benchmarks/bench_live.py [IMAGE]`` (default: examples/demo.toml built into a
temporary directory). The guest is a pagewalk-built x86-64 image loaded as QEMU's RAM, stopped
(tests/live/guests.py). Prints medians of N runs, in-process (the library) and through the
``pagewalk`` command, and the same listing from a dump of the same moment for the ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "live"))

from guests import Guest  # noqa: E402

import pagewalk  # noqa: E402
from pagewalk.inspect.stats import stats  # noqa: E402

RUNS = 5


def median(fn: object) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    image = Path(sys.argv[1]) if len(sys.argv) > 1 else work / "demo.img"
    if len(sys.argv) <= 1:
        subprocess.run(["pagewalk", "build", str(REPO / "examples/demo.toml"), "--out",
                        str(image)], check=True, capture_output=True)  # fmt: skip
    g = Guest(image, work)
    try:
        core = g.dump(work / "core.elf")
        counters: dict[str, int] = {}

        def live() -> None:
            with pagewalk.open(gdb=g.gdb) as m:
                n = sum(1 for _ in m.maps())
                assert m.live is not None
                counters.update(m.live.counters(), ranges=n)

        def dump() -> None:
            sum(1 for _ in pagewalk.open(core).maps())

        t_live, t_dump = median(live), median(dump)
        t_cli = median(lambda: subprocess.run(["pagewalk", "maps", "--gdb", g.gdb],
                                              check=True, capture_output=True))  # fmt: skip
        t_cli_dump = median(lambda: subprocess.run(["pagewalk", "maps", str(core)],
                                                   check=True, capture_output=True))  # fmt: skip
        d = pagewalk.open(core)
        table_bytes = stats(d.mem, d.mode, d.roots).to_json()["table_bytes"]
        print(f"ranges listed:            {counters['ranges']}")
        print(f"library maps --gdb:       {t_live * 1e3:8.1f} ms (median of {RUNS})")
        print(f"library maps of the dump: {t_dump * 1e3:8.1f} ms (ratio {t_live / t_dump:.1f}x)")
        print(f"pagewalk maps --gdb:      {t_cli * 1e3:8.1f} ms; of the dump {t_cli_dump * 1e3:.1f}"
              f" ms (ratio {t_cli / t_cli_dump:.2f}x)")  # fmt: skip
        print(f"bytes read:               {counters['bytes_read']:#x} in {counters['chunks']} "
              f"chunks, {counters['packets']} packets; table bytes {table_bytes:#x} "
              f"(ratio {counters['bytes_read'] / table_bytes:.2f})")  # fmt: skip
    finally:
        g.close()


if __name__ == "__main__":
    main()
