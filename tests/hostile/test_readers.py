"""Hostile input readers: FIFOs and devices, sparse files, malformed ELF cores, memory maps and
truncated compressed dumps.

Each bad input must give a PagingError (exit status 2 on the command line) whose message names
the file, the header or the offset; never a hang, a traceback or exit status 70. CLI cases run
the installed entry point in a subprocess with a timeout, so a regression that blocks (a FIFO)
or scans a whole 1 TiB file fails instead of hanging the suite.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import resource
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import zstandard

from pagewalk.cli.machine import load_machine, open_image
from pagewalk.errors import DumpError, MemoryMapError, PagingError
from pagewalk.memory.dump import TEXT_LIMIT, data_extents, open_file, read_regular_file
from pagewalk.memory.memmap_readers import load_memory_map, parse_memory_map

TIB = 1 << 40
CR0 = 0x80050033  # PG|WP|NE|ET|MP|PE
CR4 = 0x3606F0  # PAE|PSE|PGE..., LA57 clear
PT_LOAD, PT_NOTE = 1, 4


# ------------------------------------------------------------------------------ building inputs
def _bounded() -> None:
    """In the child: at most 4 GiB of heap, so a regression that reads a device or inflates
    without bound fails with MemoryError instead of exhausting the machine (file mappings, even
    of 1 TiB, do not count)."""
    resource.setrlimit(resource.RLIMIT_DATA, (4 << 30, 4 << 30))


def pagewalk(
    *args: str | Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI in a subprocess; a hang becomes a test failure."""
    argv = [sys.executable, "-m", "pagewalk", *map(str, args)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env,
        preexec_fn=_bounded,
    )  # fmt: skip


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    """One ELF note, 4-byte aligned as in cores."""
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def qemu_note(cr3: int, cr0: int = CR0, cr4: int = CR4) -> bytes:
    """QEMU's QEMUCPUState note (x86): CR0..CR4 at offset 392."""
    desc = bytearray(440)
    struct.pack_into("<II", desc, 0, 1, 440)
    struct.pack_into("<5Q", desc, 392, cr0, 0, 0, cr3, cr4)
    return note(b"QEMU", 0, bytes(desc))


def elf(
    phdrs: Sequence[tuple[int, int, int, int, int]],
    body: bytes = b"",
    *,
    elf_class: int = 64,
    machine: int = 62,
    e_type: int = 4,
    data: int = 1,
    phnum: int | None = None,
    phoff: int | None = None,
    phentsize: int | None = None,
) -> bytes:
    """An ELF file: header, program headers, then ``body``.

    ``phdrs`` are ``(p_type, offset, p_paddr, p_filesz, p_memsz)`` with ``offset`` counted from
    the start of ``body``; the keyword arguments override header fields to make bad files.
    """
    wide = elf_class == 64
    ehsize, entsize = (64, 56) if wide else (52, 32)
    body_at = ehsize + entsize * len(phdrs)
    ident = struct.pack("<4sBBBBB7s", b"\x7fELF", 2 if wide else 1, data, 1, 0, 0, b"\0" * 7)
    fields = (e_type, machine, 1, 0, ehsize if phoff is None else phoff, 0, 0, ehsize)
    tail = (entsize if phentsize is None else phentsize, len(phdrs) if phnum is None else phnum)
    head = ident + struct.pack("<HHIQQQIHHH" if wide else "<HHIIIIIHHH", *fields, *tail)
    head += struct.pack("<HHH", 0, 0, 0)
    table = b""
    for kind, off, pa, filesz, memsz in phdrs:
        if wide:
            table += struct.pack("<IIQQQQQQ", kind, 0, body_at + off, pa, pa, filesz, memsz, 0)
        else:
            table += struct.pack("<8I", kind, body_at + off, pa, pa, filesz, memsz, 0, 0)
    return head + table + body


def tables(base: int) -> tuple[bytes, int]:
    """0x10000 bytes at PA ``base`` holding a small 4-level x86-64 tree; returns (bytes, root).

    The PML4 at base+0x1000 is the only page whose sampled walks reach leaves: the lower tables
    lead to data pages that are empty, so find-roots ranks exactly one candidate.
    """
    mem = bytearray(0x10000)
    pml4, pdpt, pdpt2, pd, pt = (base + k * 0x1000 for k in (1, 2, 3, 4, 5))
    for at, value in (
        (pml4, pdpt), (pml4 + 256 * 8, pdpt2), (pml4 + 511 * 8, pdpt2),
        (pdpt, pd), (pdpt2, pd), (pdpt2 + 5 * 8, pd), (pd, pt),
    ):  # fmt: skip
        struct.pack_into("<Q", mem, at - base, value | 3)
    for i in range(8):
        struct.pack_into("<Q", mem, pt - base + 8 * i, (base + 0x8000 + 0x1000 * i) | 3)
    return bytes(mem), pml4


def small_core(base: int = 0) -> tuple[bytes, int]:
    """A valid core: one PT_NOTE (a QEMU CPU note) and one PT_LOAD of 0x10000 bytes at ``base``."""
    mem, root = tables(base)
    notes = qemu_note(root)
    phdrs = [(PT_NOTE, 0, 0, len(notes), 0), (PT_LOAD, len(notes), base, len(mem), len(mem))]
    return elf(phdrs, notes + mem), root


def holes_supported(where: Path) -> bool:
    """Whether ``where``'s file system reports holes (SEEK_DATA skips them)."""
    probe = where / "probe.sparse"
    with open(probe, "wb") as f:
        f.truncate(1 << 24)
        f.seek(1 << 23)
        f.write(b"x")
        f.flush()
        try:
            found = os.lseek(f.fileno(), 0, os.SEEK_DATA) > 0
        except OSError:
            found = False
    probe.unlink()
    return found


needs_holes = pytest.mark.skipif(
    not holes_supported(Path(os.environ.get("TMPDIR", "/tmp"))),
    reason="the temporary file system does not report holes",
)


# ------------------------------------------------------------------------ FIFOs and non-files
@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_fifo_image_is_refused(fifo: Path) -> None:
    run = pagewalk("maps", fifo, "--mode", "x86_64", "--root", "0x1000", timeout=20)
    assert run.returncode == 2, run.stderr
    assert f"{fifo} is a FIFO, not a regular file" in run.stderr


def test_fifo_sidecar_is_refused(tmp_path: Path) -> None:
    mem, root = tables(0)
    image = tmp_path / "mem.img"
    image.write_bytes(mem)
    os.mkfifo(tmp_path / "mem.img.json")
    run = pagewalk("maps", image, "--mode", "x86_64", "--root", hex(root), timeout=20)
    assert run.returncode == 2, run.stderr
    assert "mem.img.json is a FIFO, not a regular file" in run.stderr


def test_fifo_memmap_and_spec_are_refused(fifo: Path, tmp_path: Path) -> None:
    run = pagewalk("memmap", fifo, timeout=20)
    assert run.returncode == 2 and f"{fifo} is a FIFO" in run.stderr, run.stderr
    run = pagewalk("boot", "--memmap", fifo, timeout=20)
    assert run.returncode == 2 and f"{fifo} is a FIFO" in run.stderr, run.stderr
    run = pagewalk("build", fifo, "--out", tmp_path / "out.img", timeout=20)
    assert run.returncode == 2 and f"{fifo} is a FIFO" in run.stderr, run.stderr


def test_character_device_is_refused() -> None:
    run = pagewalk("maps", "/dev/null", "--mode", "x86_64", "--root", "0", timeout=20)
    assert run.returncode == 2 and "/dev/null is a character device" in run.stderr, run.stderr
    run = pagewalk("memmap", "/dev/zero", timeout=20)
    assert run.returncode == 2 and "/dev/zero is a character device" in run.stderr, run.stderr


def test_symlink_to_a_regular_image_is_read(tmp_path: Path) -> None:
    mem, root = tables(0)
    image = tmp_path / "mem.img"
    image.write_bytes(mem)
    link = tmp_path / "link.img"
    link.symlink_to(image)
    run = pagewalk("maps", link, "--mode", "x86_64", "--root", hex(root), "--json", timeout=20)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["pa"] == 0x8000


def test_text_inputs_are_capped(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(TEXT_LIMIT + 1)
    with pytest.raises(MemoryMapError, match=r"big\.json.*larger than"):
        load_memory_map(big)
    with pytest.raises(DumpError, match="larger than"):
        read_regular_file(big, "register file")
    mem, root = tables(0)
    (tmp_path / "mem.img").write_bytes(mem)
    big.rename(tmp_path / "mem.img.json")
    run = pagewalk("maps", tmp_path / "mem.img", "--mode", "x86_64", "--root", hex(root))
    assert run.returncode == 2 and "mem.img.json" in run.stderr and "larger than" in run.stderr


def test_sidecar_nested_too_deep(tmp_path: Path) -> None:
    mem, root = tables(0)
    (tmp_path / "mem.img").write_bytes(mem)
    (tmp_path / "mem.img.json").write_text("[" * 200_000 + "]" * 200_000)
    run = pagewalk("maps", tmp_path / "mem.img", "--mode", "x86_64", "--root", hex(root))
    assert run.returncode == 2 and "mem.img.json" in run.stderr, run.stderr


# ------------------------------------------------------------------------------ sparse files
@needs_holes
def test_data_extents_of_sparse_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.raw"
    with open(empty, "wb") as f:
        f.truncate(1 << 30)
    with open(empty, "rb") as f:
        assert data_extents(f) == []  # ENXIO at offset 0: no data at all
    one = tmp_path / "one.raw"
    with open(one, "wb") as f:
        f.truncate(1 << 30)
        f.seek(1 << 29)
        f.write(b"\xff" * 10)
    with open(one, "rb") as f:
        [(start, size)] = data_extents(f)
        assert start <= 1 << 29 < start + size <= (1 << 29) + (1 << 20)
        assert data_extents(f, 0, 1 << 28) == []
        assert data_extents(f, (1 << 29) + 5, 1 << 30) == [
            ((1 << 29) + 5, start + size - (1 << 29) - 5)
        ]


def test_data_extents_without_hole_support(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "x.raw"
    path.write_bytes(b"\1" * 8192)

    def no_holes(fd: int, pos: int, how: int) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "lseek", no_holes)
    with open(path, "rb") as f:
        assert data_extents(f) == [(0, 8192)]


@needs_holes
def test_find_roots_in_a_sparse_tib_raw_file(tmp_path: Path) -> None:
    base = 0x80_0000_0000  # 512 GiB into the file
    mem, root = tables(base)
    path = tmp_path / "huge.raw"
    with open(path, "wb") as f:
        f.truncate(TIB)
        f.seek(base)
        f.write(mem)
    run = pagewalk("find-roots", path, "--json", timeout=120)
    assert run.returncode == 0, run.stderr
    assert [c["pa"] for c in json.loads(run.stdout)] == [root]


@needs_holes
def test_find_roots_in_a_fully_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "void.raw"
    with open(path, "wb") as f:
        f.truncate(TIB)
    run = pagewalk("find-roots", path, "--json", timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []


@needs_holes
def test_find_roots_in_a_sparse_tib_core(tmp_path: Path) -> None:
    """A core whose one PT_LOAD covers 1 TiB, mostly holes: only its data is scanned."""
    base = 0x40_0000_0000
    mem, root = tables(base)
    notes = qemu_note(root)
    load_at = 0x1000  # PT_LOAD data starts here in the file
    phdrs = [(PT_NOTE, 0, 0, len(notes), 0), (PT_LOAD, 0x1000 - 64 - 2 * 56, 0, TIB, TIB)]
    head = elf(phdrs, notes)
    path = tmp_path / "huge.core"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(load_at + TIB)
        f.seek(load_at + base)
        f.write(mem)
    run = pagewalk("find-roots", path, "--json", timeout=120)
    assert run.returncode == 0, run.stderr
    assert [c["pa"] for c in json.loads(run.stdout)] == [root]
    run = pagewalk("maps", path, "--json", timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["pa"] == base + 0x8000


@needs_holes
def test_data_spans_of_a_core_follow_its_segments(tmp_path: Path) -> None:
    """Holes inside PT_LOAD data are skipped; data outside PT_LOADs (the notes) is not memory."""
    mem, root = tables(0x100000)
    notes = qemu_note(root)
    phdrs = [(PT_NOTE, 0, 0, len(notes), 0), (PT_LOAD, 0x10000, 0x100000, 0x100000, 0x100000)]
    path = tmp_path / "holes.core"
    with open(path, "wb") as f:
        f.write(elf(phdrs, notes))
        start = 64 + 2 * 56 + 0x10000
        f.truncate(start + 0x100000)
        f.seek(start + 0x40000)
        f.write(mem)
    opened = open_image(str(path))
    spans = opened.mem.data_spans()  # type: ignore[attr-defined]
    assert len(spans) == 1
    pa, size = spans[0]
    assert pa <= 0x140000 and pa + size >= 0x150000 and size <= 0x40000


# ---------------------------------------------------------------------------------- ELF cores
def write(tmp_path: Path, data: bytes, name: str = "bad.core") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_small_core_opens(tmp_path: Path) -> None:
    data, root = small_core(0x200000)
    m = load_machine(str(write(tmp_path, data)), {})
    assert (m.mode.name, m.roots) == ("x86_64", (root,))


def test_elf32_core_opens(tmp_path: Path) -> None:
    """QEMU writes ELFCLASS32 with EM_386 for a 32-bit guest below 4 GiB."""
    mem = bytearray(0x4000)
    struct.pack_into("<I", mem, 0x1000, 0x2000 | 3)  # PDE 0 -> PT
    struct.pack_into("<I", mem, 0x2000, 0x3000 | 3)  # PTE 0 -> 0x3000
    notes = qemu_note(0x1000, cr4=0)
    phdrs = [(PT_NOTE, 0, 0, len(notes), 0), (PT_LOAD, len(notes), 0, len(mem), len(mem))]
    path = write(tmp_path, elf(phdrs, notes + bytes(mem), elf_class=32, machine=3))
    m = load_machine(str(path), {})
    assert (m.mode.name, m.roots) == ("x86", (0x1000,))


def test_many_pt_note_headers_over_the_same_bytes(tmp_path: Path) -> None:
    """Thousands of PT_NOTE headers over one 64 KiB run of (empty) notes: capped in total."""
    mem, root = tables(0)
    notes = qemu_note(root) + bytes(0x10000)
    n = 5000
    phdrs = [(PT_LOAD, len(notes), 0, len(mem), len(mem))]
    phdrs += [(PT_NOTE, 0, 0, len(notes), 0)] * n
    path = write(tmp_path, elf(phdrs, notes + mem))
    run = pagewalk("maps", path, timeout=30)
    assert run.returncode == 2, run.stderr
    assert "notes" in run.stderr and "PT_NOTE" in run.stderr


def test_notes_capped_in_bytes(tmp_path: Path) -> None:
    """Five PT_NOTE headers over one 16 MiB note: 80 MiB of notes in all."""
    big = note(b"BIG", 7, bytes(16 << 20))
    mem, _ = tables(0)
    phdrs = [(PT_LOAD, len(big), 0, len(mem), len(mem))] + [(PT_NOTE, 0, 0, len(big), 0)] * 5
    path = write(tmp_path, elf(phdrs, big + mem))
    with pytest.raises(DumpError, match=r"program header 4 \(PT_NOTE\).*0x4000000 bytes"):
        open_image(str(path))


@pytest.mark.parametrize(
    ("pa", "size", "match"),
    [
        ((1 << 64) - 0x1000, 0x10000, r"program header 1 \(PT_LOAD\): p_paddr 0xfffffffffffff000"),
        ((1 << 64) - 0x20000, 0x10000, None),  # high, but inside the address space
    ],
)
def test_high_p_paddr(tmp_path: Path, pa: int, size: int, match: str | None) -> None:
    mem, _ = tables(0)
    notes = qemu_note(0x1000)
    phdrs = [(PT_NOTE, 0, 0, len(notes), 0), (PT_LOAD, len(notes), pa, size, size)]
    path = write(tmp_path, elf(phdrs, notes + mem))
    if match is None:
        assert open_image(str(path)).mem.end == (1 << 64) - 0x10000
        run = pagewalk("maps", path, timeout=30)
        assert run.returncode == 2 and "outside the image's memory" in run.stderr, run.stderr
        return
    with pytest.raises(DumpError, match=match):
        open_image(str(path))
    run = pagewalk("maps", path, timeout=30)
    assert run.returncode == 2, run.stderr
    assert "program header 1 (PT_LOAD)" in run.stderr and "0xfffffffffffff000" in run.stderr


def _body(n: int = 0x2000) -> bytes:
    return bytes(range(256)) * (n // 256)


BAD_CORES: list[tuple[str, bytes, str]] = [
    (
        "overlapping loads",
        elf([(PT_LOAD, 0, 0x1000, 0x2000, 0x2000), (PT_LOAD, 0, 0x2000, 0x1000, 0x1000)], _body()),
        r"program headers 0 and 1 \(PT_LOAD\) overlap at PA 0x2000",
    ),
    (
        "load past the end of the file",
        elf([(PT_LOAD, 0x1000, 0, 0x2000, 0x2000)], _body()),
        r"program header 0 \(PT_LOAD\): file bytes 0x1078-0x3078 .* ends at 0x2078",
    ),
    (
        "p_filesz > p_memsz",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x1000)], _body()),
        r"program header 0 \(PT_LOAD\): p_filesz 0x2000 is larger than p_memsz 0x1000",
    ),
    (
        "huge e_phnum",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)], _body(), phnum=0xFFF0),
        r"65520 program headers of 56 bytes at offset 0x40 run past the end of the file at 0x2078",
    ),
    (
        "e_phoff beyond the file",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)], _body(), phoff=1 << 40),
        r"1 program headers of 56 bytes at offset 0x10000000000 run past the end",
    ),
    (
        "wrong e_phentsize",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)], _body(), phentsize=40),
        r"e_phentsize 40 .* 56",
    ),
    ("truncated header", elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)])[:30], r"ELF"),
    (
        "x86-64 in a 32-bit ELF",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)], _body(), elf_class=32, machine=62),
        r"EM_X86_64 .*ELFCLASS32",
    ),
    (
        "AArch64 in a 32-bit ELF",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)], _body(), elf_class=32, machine=183),
        r"EM_AARCH64 .*ELFCLASS32",
    ),
    (
        "big-endian",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)], _body(), data=2),
        r"big-endian",
    ),
    (
        "not a core",
        elf([(PT_LOAD, 0, 0, 0x2000, 0x2000)], _body(), e_type=2),
        r"ET_EXEC.* not a core",
    ),
    (
        "no memory",
        elf([(PT_NOTE, 0, 0, 0, 0)], _body()),
        r"no physical memory",
    ),
    (
        "note runs past its segment",
        elf(
            [(PT_LOAD, 0, 0, 0x1000, 0x1000), (PT_NOTE, 0, 0, 12, 0)],
            struct.pack("<III", 0, 99, 1) + bytes(0x1000),
        ),
        r"note at offset 0xb0 is truncated",
    ),
    (
        "PT_NOTE past the end of the file",
        elf([(PT_LOAD, 0, 0, 0x1000, 0x1000), (PT_NOTE, 0x800, 0, 0x1000, 0)], bytes(0x1000)),
        r"program header 1 \(PT_NOTE\): file bytes 0x8b0-0x18b0 .*ends at 0x10b0",
    ),
    (
        "PT_LOAD past the end of a 32-bit address space",
        elf([(PT_LOAD, 0, 0xFFFFF000, 0x2000, 0x2000)], _body(), elf_class=32, machine=3),
        r"program header 0 \(PT_LOAD\): p_paddr 0xfffff000 \+ p_memsz 0x2000 .*32-bit",
    ),
]


@pytest.mark.parametrize(("name", "data", "match"), BAD_CORES, ids=[c[0] for c in BAD_CORES])
def test_malformed_cores(tmp_path: Path, name: str, data: bytes, match: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(DumpError, match=match) as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_malformed_cores_exit_2(tmp_path: Path) -> None:
    for i, (_name, data, _match) in enumerate(BAD_CORES):
        path = write(tmp_path, data, f"bad{i}.core")
        run = pagewalk("maps", path, timeout=30)
        assert run.returncode == 2, (_name, run.stderr)
        assert run.stderr.startswith("pagewalk: error:"), run.stderr


@pytest.mark.parametrize(
    ("info", "match"),
    [
        ("NUMBER(TCR_EL1_T1SZ)=1000", r"T1SZ=1000, outside 1\.\.63"),
        ("NUMBER(VA_BITS)=" + "9" * 5000, r"bad VMCOREINFO value \(Exceeds the limit"),
        ("NUMBER(VA_BITS)=forty", r"bad VMCOREINFO value"),
        ("PAGESIZE=8192", r"PAGESIZE=8192 is not 4K, 16K or 64K"),
    ],
)
def test_bad_vmcoreinfo(tmp_path: Path, info: str, match: str) -> None:
    """An AArch64 core's VMCOREINFO values are checked before they become registers."""
    text = "SYMBOL(swapper_pg_dir)=ffff800001000000\nNUMBER(kimage_voffset)=0xffff800000000000\n"
    vmci = note(b"VMCOREINFO", 0, (text + info + "\n").encode())
    mem = bytes(0x10000)
    phdrs = [(PT_NOTE, 0, 0, len(vmci), 0), (PT_LOAD, len(vmci), 0, len(mem), len(mem))]
    path = write(tmp_path, elf(phdrs, vmci + mem, machine=183))
    with pytest.raises(DumpError, match=match):
        load_machine(str(path), {})


def test_unknown_machine_asks_for_a_mode(tmp_path: Path) -> None:
    """A core of a machine pagewalk has no registers for (PowerPC 64): give the mode.

    A RISC-V core (no satp in QEMU's notes) with nothing that names a root asks for --satp.
    """
    mem, root = tables(0)
    path = write(tmp_path, elf([(PT_LOAD, 0, 0, len(mem), len(mem))], mem, machine=21))
    run = pagewalk("maps", path, timeout=30)
    assert run.returncode == 2 and "give --mode" in run.stderr, run.stderr
    riscv = write(tmp_path, elf([(PT_LOAD, 0, 0, len(mem), len(mem))], mem, machine=243))
    run = pagewalk("maps", riscv, timeout=30)
    assert run.returncode == 2 and "give --satp" in run.stderr, run.stderr
    run = pagewalk("maps", path, "--mode", "x86_64", "--root", hex(root), "--json", timeout=30)
    assert run.returncode == 0, run.stderr


# --------------------------------------------------------------------------- compressed dumps
@pytest.fixture
def raw_image(tmp_path: Path) -> tuple[bytes, int]:
    """4 MiB: tables at 0, then incompressible bytes (so a cut leaves whole chunks before it)."""
    mem, root = tables(0)
    return mem + os.urandom((4 << 20) - len(mem)), root


@pytest.mark.parametrize("packer", ["gzip", "zstd"])
def test_truncated_compressed_dump(
    tmp_path: Path, raw_image: tuple[bytes, int], packer: str
) -> None:
    data, root = raw_image
    packed = gzip.compress(data) if packer == "gzip" else zstandard.compress(data)
    path = tmp_path / f"mem.img.{'gz' if packer == 'gzip' else 'zst'}"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    with pytest.raises(DumpError, match=rf"{path.name}: truncated {packer} stream: .*offset 0x"):
        open_file(path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    run = pagewalk("maps", path, "--mode", "x86_64", "--root", hex(root), env=env)
    assert run.returncode == 2, run.stderr
    assert f"{path}: truncated {packer}" in run.stderr
    assert list(scratch.iterdir()) == []  # no partial temporary file left behind


@pytest.mark.parametrize("packer", ["gzip", "zstd"])
def test_corrupt_or_trailing_garbage(
    tmp_path: Path, raw_image: tuple[bytes, int], packer: str
) -> None:
    data, _ = raw_image
    if packer == "gzip":
        packed = bytearray(gzip.compress(data))
    else:
        packed = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(data))
    path = tmp_path / "bad.pack"
    path.write_bytes(bytes(packed) + b"garbage!")
    with pytest.raises(DumpError, match=rf"bad\.pack: corrupt {packer} stream"):
        open_file(path)
    packed[len(packed) // 2] ^= 0xFF
    path.write_bytes(bytes(packed))
    with pytest.raises(DumpError, match=rf"bad\.pack: corrupt {packer} stream"):
        open_file(path)


def test_zstd_frames_are_all_read(tmp_path: Path) -> None:
    """pzstd and concatenated files hold several frames (and maybe skippable ones): all of
    them are the dump."""
    first, second = b"\1" * 0x3000, b"\2" * 0x5000
    skippable = b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"meta"
    path = tmp_path / "two.zst"
    path.write_bytes(zstandard.compress(first) + skippable + zstandard.compress(second))
    f, kind = open_file(path)
    with f:
        assert kind == "zstd" and f.read() == first + second


def test_zstd_bomb_is_inflated_in_bounded_pieces(tmp_path: Path) -> None:
    """64 MiB of zeros in a few KiB of zstd: inflated into holes, read back as zeros."""
    path = tmp_path / "zeros.zst"
    path.write_bytes(zstandard.compress(bytes(64 << 20)) + zstandard.compress(b"\7" * 4096))
    f, _ = open_file(path)
    with f:
        size = os.fstat(f.fileno()).st_size
        assert size == (64 << 20) + 4096
        f.seek(64 << 20)
        assert f.read() == b"\7" * 4096


# ------------------------------------------------------------------------------ memory maps
BAD_MAPS: list[tuple[str, str, str]] = [
    (
        "same range usable and reserved",
        '{"regions": [{"base": "0x1000", "size": "0x1000", "type": "usable"},'
        ' {"base": "0x1000", "size": "0x1000", "type": "reserved"}]}',
        r"region 0x1000-0x1fff overlaps .* region 0x1000-0x1fff",
    ),
    (
        "overlap",
        '[{"base": 0, "size": 8192}, {"base": 4096, "size": 8192, "type": "reserved"}]',
        r"usable region 0x0-0x1fff overlaps reserved region 0x1000-0x2fff",
    ),
    (
        "huge base",
        '[{"base": "0x' + "f" * 200 + '", "size": 4096}]',
        r"base: 0xf+\.\.\. does not fit",
    ),
    ("huge decimal", '[{"base": ' + "9" * 5000 + ', "size": 4096}]', r"number too long"),
    ("huge decimal string", '[{"base": "' + "9" * 5000 + '", "size": 4096}]', r"region 0 base"),
    ("infinite size", '[{"base": 0, "size": "infk"}]', r"region 0 length: 'infk'"),
    ("negative base", '[{"base": -4096, "size": 4096}]', r"outside the 64-bit"),
    ("negative size", '[{"base": 0, "size": "-0x1000"}]', r"length -0x1000"),
    ("type is a list", '[{"base": 0, "size": 4096, "type": [1]}]', r"region type \[1\]"),
    ("type is a float", '[{"base": 0, "size": 4096, "type": 1.5}]', r"region type 1\.5"),
    ("type is null", '[{"base": 0, "size": 4096, "type": null}]', r"region type None"),
    ("base is a table", '[{"base": {"a": 1}, "size": 4096}]', r"region 0 base"),
    ("nested too deep", "[" * 100_000 + "]" * 100_000, r"nest"),
    ("nested too deep in a table", '{"regions": ' + "[" * 100_000 + "]" * 100_000 + "}", r"nest"),
    ("nested TOML", "a = " + "[" * 100_000 + "]" * 100_000, r"nest"),
    ("e820 garbage", "BIOS-e820: [mem 0xzz-0x1000] usable\n", r"line 1: cannot read E820"),
    ("e820 huge type", "BIOS-e820: [mem 0x0-0xfff] type " + "9" * 5000 + "\n", r"type"),
    ("e820 end before base", "BIOS-e820: [mem 0x2000-0x0fff] usable\n", r"length"),
    (
        "uefi type list",
        '{"uefi": [{"type": [], "physical_start": 0, "number_of_pages": 1}]}',
        r"EFI",
    ),
    ("multiboot without type", '{"multiboot2": [{"base_addr": 0, "length": 4096}]}', r"no type"),
    ("not a map", "\0\1\2 binary", r"not a memory map"),
]


@pytest.mark.parametrize(("name", "text", "match"), BAD_MAPS, ids=[m[0] for m in BAD_MAPS])
def test_bad_memory_maps(name: str, text: str, match: str) -> None:
    with pytest.raises(MemoryMapError, match=match):
        parse_memory_map(text)


def test_bad_memory_maps_exit_2(tmp_path: Path) -> None:
    for i, (name, text, _match) in enumerate(BAD_MAPS):
        path = tmp_path / f"map{i}.txt"
        path.write_text(text)
        run = pagewalk("memmap", path, timeout=30)
        assert run.returncode == 2, (name, run.stderr)
        assert run.stderr.startswith(f"pagewalk: error: {path}:"), (name, run.stderr)


def test_invalid_utf8_memory_map(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_bytes(b'[{"base": 0, "size": 4096, "type": "us\xffable"}]')
    with pytest.raises(PagingError, match=r"map\.json"):
        load_memory_map(path)
