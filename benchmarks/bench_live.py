"""``maps --gdb`` of a QEMU guest: wall time, bytes read against table bytes, packets.

Run: ``python benchmarks/bench_live.py [IMAGE]`` (default: examples/demo.toml built into a
temporary directory), a pagewalk-built x86-64 image loaded as QEMU's RAM and stopped
(tests/live/guests.py); or ``python benchmarks/bench_live.py --linux [PROFILE...]`` (default:
x86_64 aarch64 riscv64-sv39), the QEMU reference suite's Debian guests, booted from the cached
packages and stopped with the kernel's tables up (tests/live/linux_guests.py). Prints medians of
N runs, in-process (the library) and through the ``pagewalk`` command (the whole process), and
the same listing from a ``dump-guest-memory`` core of the same moment for the ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "live"))

from guests import Guest  # noqa: E402

import pagewalk  # noqa: E402
from pagewalk.inspect.stats import stats  # noqa: E402

RUNS = 5
#: the issue's goal for a full ``maps --gdb`` of a Linux guest, whole process
GOAL = 2.0


def median(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(gdb: str, core: Path, options: list[str]) -> None:
    """Time ``maps`` live and on the dump; count what the live listing read."""
    counters: dict[str, int] = {}
    kw = _keywords(options)

    def live() -> None:
        with pagewalk.open(gdb=gdb, **kw) as m:
            n = sum(1 for _ in m.maps())
            assert m.live is not None
            counters.update(m.live.counters(), ranges=n)

    def dump() -> None:
        sum(1 for _ in pagewalk.open(core, **kw).maps())

    def command(*args: str) -> Callable[[], object]:
        return lambda: subprocess.run(["pagewalk", "maps", *args], check=True,
                                      capture_output=True, timeout=120)  # fmt: skip

    t_live, t_dump = median(live), median(dump)
    t_cli = median(command("--gdb", gdb))
    t_cli_dump = median(command(str(core), *options))
    d = pagewalk.open(core, **kw)
    table_bytes = stats(d.mem, d.mode, d.roots).to_json()["table_bytes"]
    print(f"  ranges listed:            {counters['ranges']}")
    print(f"  library maps --gdb:       {t_live * 1e3:8.1f} ms (median of {RUNS})")
    print(f"  library maps of the dump: {t_dump * 1e3:8.1f} ms (ratio {t_live / t_dump:.1f}x)")
    print(f"  pagewalk maps --gdb:      {t_cli * 1e3:8.1f} ms whole process (goal < {GOAL:g} s: "
          f"{'met' if t_cli < GOAL else 'NOT met'}); of the dump {t_cli_dump * 1e3:.1f} ms "
          f"(ratio {t_cli / t_cli_dump:.2f}x)")  # fmt: skip
    print(f"  bytes read:               {counters['bytes_read']:#x} in {counters['chunks']} "
          f"chunks, {counters['packets']} packets; table bytes {table_bytes:#x} "
          f"(ratio {counters['bytes_read'] / table_bytes:.2f})")  # fmt: skip


def _keywords(options: list[str]) -> dict[str, str]:
    """``["--satp", "0x..."]`` -> ``{"satp": "0x..."}`` for :func:`pagewalk.open`."""
    return {options[i].lstrip("-"): options[i + 1] for i in range(0, len(options), 2)}


def demo(image_arg: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    image = Path(image_arg) if image_arg else work / "demo.img"
    if image_arg is None:
        subprocess.run(["pagewalk", "build", str(REPO / "examples/demo.toml"), "--out",
                        str(image)], check=True, capture_output=True)  # fmt: skip
    g = Guest(image, work)
    try:
        print(f"{image.name} (pagewalk-built x86-64 image):")
        measure(g.gdb, g.dump(work / "core.elf"), [])
    finally:
        g.close()


def linux(profiles: list[str]) -> None:
    from linux_guests import LINUX_PROFILES, LinuxGuest, Unavailable

    for profile in profiles or LINUX_PROFILES:
        work = Path(tempfile.mkdtemp(prefix=f"bench-live-{profile}-"))
        try:
            g = LinuxGuest(profile, work)
        except Unavailable as exc:
            print(f"{profile}: skipped ({exc})")
            continue
        try:
            print(f"{profile} (Debian Linux, booted in {g.boot_seconds:.1f} s, stopped):")
            measure(g.gdb, g.dump(work / "core.elf"), g.dump_options())
        finally:
            g.close()


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--linux"]:
        linux(args[1:])
    else:
        demo(args[0] if args else None)


if __name__ == "__main__":
    main()
