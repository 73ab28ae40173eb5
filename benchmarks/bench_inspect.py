"""Inspector timings on the real QEMU captures (if present) and on a generated 1 GiB space.

Run: python benchmarks/bench_inspect.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pagewalk.cli.machine import load_machine
from pagewalk.enumerate import EnumStats, mappings
from pagewalk.image import build
from pagewalk.inspect.lint import lint
from pagewalk.inspect.reverse import ReverseMap
from pagewalk.inspect.roots import find_roots
from pagewalk.inspect.stats import stats


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:40s} {1e3 * (time.perf_counter() - t0):9.1f} ms")
    return out


def bench_core(core: Path) -> None:
    """Every inspector on one capture."""
    name = core.parent.name
    m = load_machine(str(core), {})
    st = EnumStats()
    rows = timed(f"{name}: maps", lambda: list(mappings(m.mem, m.mode, m.roots, stats=st)))
    print(f"  {len(rows)} ranges, {st.leaves} leaves, {st.tables} tables")
    rev = timed(f"{name}: p2v index", lambda: ReverseMap(rows))
    timed(f"{name}: 1000 p2v lookups", lambda: [rev.lookup(i << 12) for i in range(1000)])
    timed(f"{name}: lint", lambda: lint(m.mem, m.mode, m.roots))
    timed(f"{name}: stats", lambda: stats(m.mem, m.mode, m.roots))
    timed(f"{name}: find-roots", lambda: find_roots(m.mem, m.mode))


def main() -> None:
    cache = Path(os.environ.get("PAGEWALK_CACHE", "~/.cache/pagewalk/qemu-ref")).expanduser()
    for core in sorted(cache.glob("x86_64*/vmcore.elf")):
        bench_core(core)
    spec = {
        "mode": "x86_64",
        "ram": "1G",
        "tables": {"base": "0x38000000", "size": "64M"},
        "map": [
            {
                "va": "0x40000000",
                "pa": "0x0",
                "size": "0x20000000",
                "perm": "rw",
                "page_size": "0x1000",
            }
        ],
    }
    built = timed("build 512 MiB of 4K pages", lambda: build(spec))
    timed(
        "maps over 131072 leaves", lambda: list(mappings(built.mem, built.mode, built.space.roots))
    )


if __name__ == "__main__":
    main()
