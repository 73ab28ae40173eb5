"""Probe: would numba have matched the C walker? The same bare x86-64 walk, jitted, timed.

Run with a Python that has numba (not the project's environment, whose numpy it would
downgrade): ``/tmp/nbvenv/bin/python benchmarks/probe_numba.py IMAGE CR3 ADDRS``.
IMAGE is a raw physical memory image, CR3 the root table address, ADDRS a file of little-endian
u64 virtual addresses. The walk follows Intel SDM vol. 3A 4.5 exactly as
``benchmarks/c/walk.c`` does (PML4 -> PDPT -> PD -> PT, P bit 0, PS bit 7 at the 1 GiB and
2 MiB levels, address bits 51:12, a fault gives all ones), so the two can be compared on the
same inputs. It prints both rates, their ratio and the JIT compile time, and checks that the
fault count and checksum (sum of non-fault PAs mod 2**64) equal the C walker's.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

t_import = time.perf_counter()
from numba import njit  # noqa: E402

t_import = time.perf_counter() - t_import

ADDR_MASK = np.uint64(0x000FFFFFFFFFF000)
FAULT = np.uint64(0xFFFFFFFFFFFFFFFF)
REPEAT = 5


@njit(nogil=True)
def walk_all(mem, cr3, va, out):
    """Translate each va[i] into out[i]; mem is the image as u64 entries (tables are aligned)."""
    n_entries = np.uint64(mem.shape[0])
    for i in range(va.shape[0]):
        v = va[i]
        table = cr3 & ADDR_MASK
        result = FAULT
        for level in range(4):
            shift = np.uint64(39 - 9 * level)
            idx = (table >> np.uint64(3)) + ((v >> shift) & np.uint64(511))
            if idx >= n_entries:
                break
            e = mem[idx]
            if e & np.uint64(1) == 0:
                break
            if level == 3 or (level >= 1 and e & np.uint64(0x80) != 0):
                low = (np.uint64(1) << shift) - np.uint64(1)
                result = (e & ADDR_MASK & ~low) | (v & low)
                break
            table = e & ADDR_MASK
        out[i] = result


def c_walker(image: str, cr3: int, addrs: str) -> tuple[float, int, int]:
    """Build and run benchmarks/c/walk.c: (median seconds, faults, checksum)."""
    src = Path(__file__).parent / "c" / "walk.c"
    with tempfile.TemporaryDirectory() as tmp:
        exe = str(Path(tmp) / "walk")
        subprocess.run(["cc", "-O3", "-o", exe, str(src)], check=True)
        cmd = [exe, image, str(cr3), addrs, str(REPEAT)]
        fields = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    return float(fields[0]), int(fields[1]), int(fields[2])


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: probe_numba.py IMAGE CR3 ADDRS")
    image, cr3, addrs = sys.argv[1], int(sys.argv[2], 0), sys.argv[3]
    mem = np.memmap(image, dtype="<u8", mode="r")
    va = np.fromfile(addrs, dtype="<u8")
    out = np.empty_like(va)
    root = np.uint64(cr3)

    t0 = time.perf_counter()
    walk_all(mem, root, va[:1], out[:1])  # one address: the time is the JIT compile
    t_jit = time.perf_counter() - t0
    walk_all(mem, root, va, out)  # warm: fault the image pages in, as walk.c does
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        walk_all(mem, root, va, out)
        times.append(time.perf_counter() - t0)
    t_nb = statistics.median(times)

    faults = int((out == FAULT).sum())
    checksum = int(out[out != FAULT].sum(dtype=np.uint64))
    t_c, c_faults, c_sum = c_walker(image, cr3, addrs)
    assert (faults, checksum) == (c_faults, c_sum), ((faults, checksum), (c_faults, c_sum))

    n = len(va)
    print(f"addresses {n:,}, faults {faults:,}, checksum {checksum:#x} (equal to C's)")
    print(f"numba  {n / t_nb / 1e6:8.1f} M addr/s  (median of {REPEAT})")
    print(f"C      {n / t_c / 1e6:8.1f} M addr/s  (median of {REPEAT})")
    print(f"ratio numba / C  {t_c / t_nb:.3f}")
    print(f"JIT compile {t_jit:.3f} s, import numba {t_import:.3f} s")


if __name__ == "__main__":
    main()
