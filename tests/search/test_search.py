"""``search`` against the slow obvious oracle: every mapped page translated on its own with
``Machine.translate``, its bytes read, and pages joined only where their VAs touch.

Built images have aliases (one frame at two VAs), virtually adjacent pages on frames that are
not adjacent (a match across them must be found), VA gaps (a match across one must not), a page
outside RAM, and huge pages; the CLI is checked through the installed ``pagewalk`` command.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagewalk.formats import make_mode
from pagewalk.formats.base import Perm
from pagewalk.machine import Machine
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.search import Pattern, SearchStats, search
from pagewalk.space import AddressSpace

PAGE = 4096
RAM = 8 << 20
NEEDLE = b"NEEDLE-straddles"


def _machine(mode_name: str, maps: list[tuple[int, int, int, Perm]]) -> Machine:
    from pagewalk.alloc.simple import SimpleFrameAllocator

    mode = make_mode(mode_name)
    mem = PhysicalMemory(RAM)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(6 << 20, 2 << 20))
    for va, pa, size, perm in maps:
        space.map(va, pa, size, perm).ignore()
    return Machine(mem, mode, space.roots, "built")


def oracle(machine: Machine, pattern: Pattern) -> list[tuple[int, int, str]]:
    """Every (VA, PA, perm) of a match, page by page (the slow way)."""
    pages: list[tuple[int, bytes | None, str]] = []
    for m in machine.maps():
        for va in range(m.va, m.end, PAGE):
            pa, _, fault = machine.translate(va)
            assert fault is None and pa is not None
            data = machine.mem.read(pa, PAGE) if machine.mem.is_ram(pa, PAGE) else None
            pages.append((va, data, m.perm.letters()))
    out = []
    n = pattern.length
    i = 0
    while i < len(pages):  # one stretch: VA-adjacent pages that are all in memory
        j = i
        while j + 1 < len(pages) and pages[j + 1][0] == pages[j][0] + PAGE and pages[j + 1][1]:
            j += 1
        if pages[i][1] is None:
            i += 1
            continue
        blob = b"".join(p[1] or b"" for p in pages[i : j + 1])
        for off in _candidates(pattern, blob):
            va = pages[i][0] + off
            if va % pattern.align or not _is_match(pattern, blob[off : off + n]):
                continue
            pa, _, _ = machine.translate(va)
            assert pa is not None
            out.append((va, pa, pages[i + off // PAGE][2]))
        i = j + 1
    return out


def _candidates(pattern: Pattern, blob: bytes) -> list[int]:
    """Offsets worth testing: where the needle's bytes are (``bytes.find``), or every aligned
    word whose value is in the window (``struct.iter_unpack``); stretches start on pages."""
    if pattern.needle is not None:
        out, pos = [], blob.find(pattern.needle)
        while pos >= 0:
            out.append(pos)
            pos = blob.find(pattern.needle, pos + 1)
        return out
    assert pattern.window is not None
    lo, hi = pattern.window
    fmt = "<Q" if pattern.width == 8 else "<I"
    usable = len(blob) - len(blob) % pattern.width
    words = struct.iter_unpack(fmt, blob[:usable])
    return [k * pattern.width for k, (w,) in enumerate(words) if lo <= w < hi]


def _is_match(pattern: Pattern, data: bytes) -> bool:
    if pattern.needle is not None:
        return data == pattern.needle
    assert pattern.window is not None
    return pattern.window[0] <= int.from_bytes(data, "little") < pattern.window[1]


def found(machine: Machine, pattern: Pattern, block: int = 1 << 20) -> list[tuple[int, int, str]]:
    return [(h.va, h.pa, h.perm.letters()) for h in search(machine, pattern, block=block)]


@pytest.fixture(scope="module")
def tricky() -> Machine:
    rw, rx = Perm.READ | Perm.WRITE, Perm.READ | Perm.EXEC
    maps = [
        (0x400000, 0x100000, PAGE, rw),  # two VA-adjacent pages on frames far apart, reversed
        (0x401000, 0x0F0000, PAGE, rw),
        (0x403000, 0x200000, PAGE, rw),  # after a one-page VA gap: contiguous frames
        (0x404000, 0x201000, PAGE, rx),
        (0x500000, 0x100000, PAGE, rx),  # an alias of 0x400000's frame
        (0x501000, 0x7FF000, PAGE, rw),  # the last frame of RAM, then one outside it
        (0x502000, RAM + 0x1000, PAGE, rw),
        (0x600000, 0x400000, 2 << 20, rw),  # a huge page
        (0x800000, 0x300000, PAGE, rw),  # another pair of scattered frames
        (0x801000, 0x2F0000, PAGE, rw),
    ]
    m = _machine("x86_64", maps)
    mem = m.mem
    assert isinstance(mem, PhysicalMemory)
    half = len(NEEDLE) // 2
    mem.write(0x100000 + PAGE - half, NEEDLE[:half])  # across 0x400000 | 0x401000
    mem.write(0x0F0000, NEEDLE[half:])
    mem.write(0x200000 + PAGE - half, NEEDLE[:half])  # across the gap 0x401000 | 0x403000?
    mem.write(0x201000, NEEDLE[half:])  # no: 0x403000 | 0x404000 (frames adjacent too)
    mem.write(0x0F0000 + PAGE - half, NEEDLE[:half])  # 0x401000's end, then a VA gap: no match
    mem.write(0x200000, NEEDLE[half:])  # ... though 0x403000 goes on with the rest
    mem.write(0x7FF000 + PAGE - half, NEEDLE[:half])  # runs into the page outside RAM: no match
    mem.write(0x400000 + (1 << 20) - 3, NEEDLE)  # inside the huge page, across a block edge
    value = (0xFFFF888000001234).to_bytes(8, "little")
    mem.write(0x400008, value)  # in the huge page (VA 0x600008), aligned
    mem.write(0x300000 + PAGE - 4, value[:4])  # VA 0x800ffc: onto frame 0x2f0000
    mem.write(0x2F0000, value[4:])
    return m


def test_matches_across_non_adjacent_frames_and_aliases(tricky: Machine) -> None:
    pattern = Pattern.string(NEEDLE.decode())
    want = oracle(tricky, pattern)
    vas = [va for va, _, _ in want]
    assert 0x401000 - len(NEEDLE) // 2 in vas  # the straddling match on scattered frames
    assert 0x404000 - len(NEEDLE) // 2 in vas  # on adjacent frames
    assert 0x600000 + (1 << 20) - 3 in vas  # in a huge page, across a block edge
    assert len(vas) == 3  # none across a VA gap or into a page outside memory
    assert found(tricky, pattern) == want
    assert found(tricky, pattern, block=4096) == want  # every block edge a seam
    assert found(tricky, pattern, block=7) == want


def test_an_alias_is_a_hit_with_the_same_pa(tricky: Machine) -> None:
    mem = tricky.mem
    assert isinstance(mem, PhysicalMemory)
    mem.write(0x100010, b"alias-me")  # the frame of 0x400000 and 0x500000
    hits = found(tricky, Pattern.string("alias-me"))
    assert [(va, pa) for va, pa, _ in hits] == [(0x400010, 0x100010), (0x500010, 0x100010)]
    assert [p for _, _, p in hits] == ["rw-k-", "r-xk-"]


@pytest.mark.parametrize(
    "pattern",
    [
        Pattern.integer(0xFFFF888000001234, 8),
        Pattern.integer(0xFFFF888000001234, 8, align=8),
        Pattern.integer(0x80000012, 4),
        Pattern.pointer(0xFFFF888000000000, 0xFFFF888000002000, 8),
        Pattern.hex_bytes("12 00 00 80 88"),
    ],
)
def test_values_and_pointers_equal_the_oracle(tricky: Machine, pattern: Pattern) -> None:
    want = oracle(tricky, pattern)
    assert want, "the image holds the value"
    assert found(tricky, pattern) == want
    assert found(tricky, pattern, block=4096 + 3) == want


def test_stats_and_pages_outside_memory(tricky: Machine) -> None:
    stats = SearchStats()
    list(search(tricky, Pattern.string("x"), stats=stats))
    assert stats.skipped == PAGE and stats.first_skipped == 0x502000
    assert stats.bytes_read == 8 * PAGE + (2 << 20)  # every mapped byte in memory, once


def test_range_clips_to_the_bytes(tricky: Machine) -> None:
    pattern = Pattern.string(NEEDLE.decode())
    start = 0x401000 - len(NEEDLE) // 2
    inside = list(search(tricky, pattern, va_range=(start, start + len(NEEDLE))))
    assert [h.va for h in inside] == [start]
    assert not list(search(tricky, pattern, va_range=(start + 1, 0x402000)))
    assert not list(search(tricky, pattern, va_range=(start, start + len(NEEDLE) - 1)))


def test_32_bit_modes_search_4_byte_pointers() -> None:
    rw = Perm.READ | Perm.WRITE
    m = _machine("x86", [(0xC0000000, 0x100000, PAGE, rw), (0xC0001000, 0x101000, PAGE, rw)])
    mem = m.mem
    assert isinstance(mem, PhysicalMemory)
    mem.write_u32(0x100FFC, 0xC0001000)
    mem.write_u32(0x101002, 0xC0001000)  # unaligned: no pointer
    pattern = Pattern.pointer(0xC0000000, 0xC0002000, 4)
    assert found(m, pattern) == oracle(m, pattern) == [(0xC0000FFC, 0x100FFC, "rwxk-")]
    assert len(found(m, Pattern.integer(0xC0001000, 4))) == 2


@settings(max_examples=25)
@given(
    pages=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 60)),
        min_size=1,
        max_size=12,
        unique_by=lambda t: t[0],
    ),
    plant=st.lists(st.tuples(st.integers(0, 60), st.integers(0, PAGE - 1)), max_size=4),
    needle=st.binary(min_size=1, max_size=9),
)
def test_random_layouts_equal_the_oracle(
    pages: list[tuple[int, int]], plant: list[tuple[int, int]], needle: bytes
) -> None:
    maps = [(0x10000000 + v * PAGE, 0x100000 + f * PAGE, PAGE, Perm.READ) for v, f in pages]
    m = _machine("x86_64", maps)
    mem = m.mem
    assert isinstance(mem, PhysicalMemory)
    for frame, off in plant:
        pa = 0x100000 + frame * PAGE + off
        mem.write(pa, needle[: max(0, min(len(needle), 0x100000 + 61 * PAGE - pa))])
    pattern = Pattern(needle, text="random")
    assert found(m, pattern, block=PAGE + 1) == oracle(m, pattern)


def _image(tmp_path: Path) -> str:
    from pagewalk.image import build, save

    spec = {
        "mode": "x86_64",
        "ram": "16M",
        "map": [
            {"va": "0x400000", "pa": "0x200000", "size": "8K", "perm": "rwu"},
            {"va": "0xffff888000000000", "pa": "0x0", "size": "16M", "perm": "rw"},
        ],
    }
    built = build(spec)
    built.mem.write(0x200FFD, b"cross")
    out = tmp_path / "img"
    save(out, built.mem, built.mode, built.space.roots)
    return str(out)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pagewalk", *args], capture_output=True, text=True, timeout=120)


def test_cli_exit_statuses_and_json(tmp_path: Path) -> None:
    image = _image(tmp_path)
    hit = _run("search", image, "--string", "cross", "--json")
    assert hit.returncode == 0, hit.stderr
    rows = json.loads(hit.stdout)
    assert [(r["va"], r["pa"], r["perm"]) for r in rows] == [
        (0x400FFD, 0x200FFD, "rw-u-"),
        (0xFFFF888000200FFD, 0x200FFD, "rw-k-"),
    ]
    assert _run("search", image, "--string", "cross", "--perm", "u", "--max", "1").stdout == (
        "0x0000000000400ffd  0x0000000000200ffd  rw-u-  4K  \n"
    )
    assert _run("search", image, "--string", "absent!").returncode == 1
    for bad in (
        ["--string", "a", "--u64", "1"],
        [],
        ["--bytes", "xyz"],
        ["--pointer-to", "5"],
        ["--pointer-to", "9:5"],
        ["--u32", "0x100000000"],
        ["--string", "a", "--hex"],
    ):
        done = _run("search", image, *bad)
        assert done.returncode == 2 and done.stderr.startswith("pagewalk: error:"), bad
        assert "Traceback" not in done.stderr
