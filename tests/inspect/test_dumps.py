"""Dump inputs: ELF cores with QEMU notes, compressed dumps, and bad input of every kind.

Each bad input must give a DumpError (or another PagingError: exit status 2 on the CLI) or a
clear finding, quickly and with bounded memory; a fuzz test mutates cores and tables.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Cli
import zstandard
from corefile import make_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagewalk.cli.machine import load_machine
from pagewalk.enumerate import mappings
from pagewalk.errors import DumpError, PagingError
from pagewalk.formats import Perm, make_mode
from pagewalk.image import build
from pagewalk.inspect.lint import lint
from pagewalk.memory.dump import FileMemory, Segment

CR0 = 0x80050033  # PG|WP|NE|ET|MP|PE, as Linux sets it
CR4_4L = 0x3606F0  # PAE|PSE|PGE..., LA57 clear
SPEC = {
    "mode": "x86_64",
    "ram": "4M",
    "tables": {"base": "0x200000", "size": "1M"},
    "map": [
        {"va": "0x400000", "pa": "0x10000", "size": "0x3000", "perm": "rxu"},
        {"va": "0xffff888000000000", "pa": "0x0", "size": "0x200000", "perm": "rw"},
    ],
}


@pytest.fixture
def core(tmp_path: Path) -> tuple[Path, int]:
    built = build(SPEC)
    root = built.space.roots[0]
    memory = built.mem.read(0, built.mem.end)
    other = (CR0, root | 0x1000, CR4_4L)  # a second CPU with another CR3
    return make_core(tmp_path / "vmcore.elf", memory, cpus=[(CR0, root, CR4_4L), other]), root


def test_core_needs_no_options(core: tuple[Path, int], cli: Cli) -> None:
    path, root = core
    m = load_machine(str(path), {})
    assert (m.mode.name, m.roots) == ("x86_64", (root,))
    code, out, _ = cli(["maps", str(path), "--json"])
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["va"] == 0x400000 and rows[0]["pa"] == 0x10000 and rows[0]["user"]


def test_cpu_option_picks_the_cpu(core: tuple[Path, int], cli: Cli) -> None:
    path, root = core
    assert load_machine(str(path), {}, cpu=1).roots == (root | 0x1000,)
    code, _, err = cli(["maps", str(path), "--cpu", "5"])
    assert code == 2 and "no CPU 5" in err and "has 2" in err


def test_la57_and_paging_off_from_cr4_cr0(tmp_path: Path) -> None:
    mem = bytes(0x4000)
    la57 = make_core(tmp_path / "a.elf", mem, cpus=[(CR0, 0x1000, CR4_4L | 1 << 12)])
    assert load_machine(str(la57), {}).mode.name == "la57"
    off = make_core(tmp_path / "b.elf", mem, cpus=[(0x11, 0x1000, 0)])
    with pytest.raises(DumpError, match="paging disabled"):
        load_machine(str(off), {})


@pytest.mark.parametrize("packer", ["gzip", "zstd"])
def test_compressed_dumps(core: tuple[Path, int], packer: str) -> None:
    path, root = core
    data = path.read_bytes()
    packed = gzip.compress(data) if packer == "gzip" else zstandard.compress(data)
    target = path.with_suffix(f".elf.{packer}")
    target.write_bytes(packed)
    m = load_machine(str(target), {})
    assert m.roots == (root,)
    assert next(r.va for r in mappings(m.mem, m.mode, m.roots)) == 0x400000
    assert any(packer in w for w in m.why)


def test_truncated_core_is_a_dump_error(core: tuple[Path, int]) -> None:
    path, _ = core
    data = path.read_bytes()
    for cut in (3, 20, 63, 100, 200, 600, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        t0 = time.monotonic()
        with pytest.raises(PagingError):
            load_machine(str(path), {})
        assert time.monotonic() - t0 < 2


def test_garbage(tmp_path: Path, cli: Cli) -> None:
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"\x7fELF" + os.urandom(4000))
    code, _, err = cli(["maps", str(junk)])
    assert code == 2 and err.startswith("pagewalk: error:")
    bad_gz = tmp_path / "junk.gz"
    bad_gz.write_bytes(b"\x1f\x8b" + os.urandom(100))
    code, _, err = cli(["maps", str(bad_gz), "--mode", "x86_64", "--root", "0"])
    assert code == 2 and "corrupt gzip" in err


def test_root_outside_ram(core: tuple[Path, int], cli: Cli) -> None:
    path, _ = core
    code, _, err = cli(["maps", str(path), "--root", "0x40000000"])
    assert code == 2 and "outside" in err and "find-roots" in err


def test_segment_past_end_of_file() -> None:
    import mmap

    buf = mmap.mmap(-1, 4096)
    with pytest.raises(DumpError, match="truncated"):
        FileMemory(buf, [Segment(0, 8192, 0)], "x")


def test_tables_that_loop(tmp_path: Path) -> None:
    """PML4[0] points to the PML4 itself, PDPT[0] back to the PML4 (a cycle), and PML4[2] to the
    PD under PML4[1] (one frame at two levels)."""
    mem = bytearray(0x10000)
    struct.pack_into("<Q", mem, 0x1000, 0x1000 | 3)  # recursive slot
    struct.pack_into("<Q", mem, 0x1008, 0x2000 | 3)  # -> PDPT
    struct.pack_into("<Q", mem, 0x2000, 0x1000 | 3)  # PDPT -> PML4: a cycle
    struct.pack_into("<Q", mem, 0x2008, 0x3000 | 3)  # PDPT -> PD
    struct.pack_into("<Q", mem, 0x1010, 0x3000 | 3)  # the PD frame used as a PDPT too
    path = make_core(tmp_path / "loop.elf", bytes(mem), cpus=[(CR0, 0x1000, CR4_4L)])
    m = load_machine(str(path), {})
    t0 = time.monotonic()
    list(mappings(m.mem, m.mode, m.roots))
    codes = {f.code for f in lint(m.mem, m.mode, m.roots)}
    assert time.monotonic() - t0 < 5
    assert {"recursive", "cycle", "two-levels"} <= codes


def test_one_tib_sparse_raw(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "huge.raw"
    with open(path, "wb") as f:
        f.truncate(1 << 40)
        f.seek(0x5000)
        f.write(struct.pack("<Q", 0x6000 | 3))
    t0 = time.monotonic()
    code, out, _ = cli(["maps", str(path), "--mode", "x86_64", "--root", "0x5000", "--json"])
    assert code == 0 and json.loads(out) == []
    code, out, _ = cli(["find-roots", str(path), "--json"])
    assert code == 0 and json.loads(out) == []
    assert time.monotonic() - t0 < 20


_BASE_CORE: list[bytes] = []


def _base_core(tmp: Path) -> bytes:
    if not _BASE_CORE:
        mem = bytes(build(SPEC).mem.read(0, 0x300000))
        _BASE_CORE.append(
            make_core(tmp / "base.elf", mem, cpus=[(CR0, 0x200000, CR4_4L)]).read_bytes()
        )
    return _BASE_CORE[0]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_elf_parser(tmp_path: Path, data: st.DataObject) -> None:
    base = bytearray(_base_core(tmp_path))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, 400))
        base[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(base)))
    path = tmp_path / "fuzz.elf"
    path.write_bytes(bytes(base[:cut]))
    try:
        m = load_machine(str(path), {})
        list(mappings(m.mem, m.mode, m.roots))
    except PagingError:
        pass


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=512 * 3, max_size=512 * 3))
def test_fuzz_table_parser(words: list[int]) -> None:
    """Random tables (pointers folded into RAM half the time): enumeration and lint finish."""
    mode = make_mode("x86_64")
    # A few entries per table point into the three tables; the rest are random and mostly
    # not present, so the (legitimately huge) aliased address space stays small.
    fixed = [
        (w & ~0xFFFF000 | ((w >> 12) % 3 + 1) << 12) if i % 128 == 0 else w & ~1 if i % 7 else w
        for i, w in enumerate(words)
    ]
    mem = bytearray(0x4000)
    struct.pack_into(f"<{len(fixed)}Q", mem, 0x1000, *fixed)
    import mmap

    buf = mmap.mmap(-1, len(mem))
    buf[:] = bytes(mem)
    fm = FileMemory(buf, [Segment(0, len(mem), 0)], "fuzz")
    rows = list(mappings(fm, mode, (0x1000,)))
    assert all(r.perm & Perm.READ for r in rows)
    lint(fm, mode, (0x1000,))
