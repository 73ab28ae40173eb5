"""Fuzzing the hostile input readers: ELF cores (byte-wise and field-wise), compressed dumps and
memory maps in every form. Only PagingError may escape, in-process through the same functions
the CLI calls (``open_image``, ``load_machine``, ``parse_memory_map``), and a few mutated cores
run through the installed CLI must exit 0, 1 or 2, never 70.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_readers import PT_LOAD, PT_NOTE, elf, pagewalk, qemu_note, small_core, tables

from pagewalk.cli.machine import load_machine, open_image
from pagewalk.enumerate import mappings
from pagewalk.errors import PagingError
from pagewalk.memory.memmap_readers import FORMS, parse_memory_map

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BASE, ROOT = small_core(0)
#: where the ELF header, the program headers and the notes end (what byte flips aim at)
HEADERS = 64 + 2 * 56 + len(qemu_note(0))
#: Elf64_Phdr field offsets and the Elf64_Ehdr fields worth breaking
PHDR_FIELDS = {"p_type": (0, "<I"), "p_offset": (8, "<Q"), "p_paddr": (24, "<Q"),
               "p_filesz": (32, "<Q"), "p_memsz": (40, "<Q")}  # fmt: skip
EHDR_FIELDS = {"ei_class": (4, "<B"), "ei_data": (5, "<B"), "e_type": (16, "<H"),
               "e_machine": (18, "<H"), "e_phoff": (32, "<Q"), "e_phentsize": (54, "<H"),
               "e_phnum": (56, "<H")}  # fmt: skip


def _interesting(size: int) -> st.SearchStrategy[int]:
    edges = [0, 1, 2, 0xFFF, 0x1000, size - 1, size, size + 1, 1 << 31, (1 << 32) - 1, 1 << 32,
             1 << 63, (1 << 64) - 0x1000, (1 << 64) - 1]  # fmt: skip
    return st.sampled_from(edges) | st.integers(0, (1 << 64) - 1)


@st.composite
def mutated_cores(draw: st.DrawFn) -> bytes:
    """The small core with fields set to edge values, bytes flipped, headers repeated, or cut."""
    data = bytearray(BASE)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(PHDR_FIELDS)))
        at, fmt = PHDR_FIELDS[name]
        value = draw(_interesting(len(data))) & ((1 << (8 * struct.calcsize(fmt))) - 1)
        struct.pack_into(fmt, data, 64 + 56 * draw(st.integers(0, 1)) + at, value)
    for _ in range(draw(st.integers(0, 2))):
        at, fmt = EHDR_FIELDS[draw(st.sampled_from(sorted(EHDR_FIELDS)))]
        bits = 8 * struct.calcsize(fmt)
        struct.pack_into(fmt, data, at, draw(_interesting(len(data))) & ((1 << bits) - 1))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, HEADERS - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(1, len(data))) :]
    return bytes(data)


@st.composite
def repeated_headers(draw: st.DrawFn) -> bytes:
    """Many PT_NOTE and PT_LOAD headers over the same bytes, at edge offsets and sizes."""
    mem, root = tables(0)
    notes = qemu_note(root)
    body = notes + mem
    phdrs: list[tuple[int, int, int, int, int]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from([PT_LOAD, PT_NOTE, 0, 6]))
        off = draw(st.sampled_from([0, len(notes), len(body) - 8, len(body)]))
        size = draw(st.sampled_from([0, 12, len(notes), len(mem), len(body), 1 << 40]))
        pa = draw(st.sampled_from([0, 0x1000, 0x10000, (1 << 64) - 0x10000, (1 << 52)]))
        phdrs.append((kind, off, pa, size, size + draw(st.sampled_from([0, 0, 1, -1]))))
    elf_class = draw(st.sampled_from([32, 64]))
    mask = (1 << elf_class) - 1
    phdrs = [(k, o, p & mask, f & mask, max(m, 0) & mask) for k, o, p, f, m in phdrs]
    machine = draw(st.sampled_from([3, 62, 183, 243]))
    return elf(phdrs, body, elf_class=elf_class, machine=machine)


def _exercise(path: Path) -> None:
    """Open as the CLI does, then walk a little; only PagingError may come out."""
    try:
        opened = open_image(str(path))
        if hasattr(opened.mem, "data_spans"):
            opened.mem.data_spans()
        machine = load_machine(str(path), {})
        list(itertools.islice(mappings(machine.mem, machine.mode, machine.roots), 64))
    except PagingError:
        pass


@FUZZ
@given(data=mutated_cores())
def test_fuzz_core_fields_and_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.core"
    path.write_bytes(data)
    _exercise(path)


@settings(FUZZ, max_examples=60)
@given(data=repeated_headers())
def test_fuzz_core_structure(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.core"
    path.write_bytes(data)
    _exercise(path)


@settings(FUZZ, max_examples=40)
@given(
    packer=st.sampled_from(["gzip", "zstd"]),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=3),
)
def test_fuzz_compressed(
    tmp_path: Path, packer: str, cut: float, flips: list[tuple[float, int]]
) -> None:
    packed = bytearray(gzip.compress(BASE) if packer == "gzip" else zstandard.compress(BASE))
    for where, mask in flips:
        packed[min(int(where * len(packed)), len(packed) - 1)] ^= mask
    path = tmp_path / "fuzz.pack"
    path.write_bytes(bytes(packed[: max(1, int(cut * len(packed)))]))
    _exercise(path)


@pytest.mark.parametrize("seed", range(6))
def test_mutated_cores_through_the_cli(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = bytearray(BASE)
    for _ in range(rng.randint(1, 6)):
        at, fmt = PHDR_FIELDS[rng.choice(sorted(PHDR_FIELDS))]
        value = rng.choice([0, 1 << 63, (1 << 64) - 1, len(data) + 1, rng.getrandbits(64)])
        bits = 8 * struct.calcsize(fmt)
        struct.pack_into(fmt, data, 64 + 56 * rng.randint(0, 1) + at, value & ((1 << bits) - 1))
    for _ in range(rng.randint(0, 8)):
        data[rng.randrange(HEADERS)] = rng.randrange(256)
    path = tmp_path / "mutated.core"
    path.write_bytes(bytes(data))
    run = pagewalk("maps", path, timeout=60)
    assert run.returncode in (0, 1, 2), run.stderr
    assert "internal error" not in run.stderr


# ------------------------------------------------------------------------------ memory maps
_KEYS = ["base", "length", "size", "end", "type", "_type", "acpi", "base_addr", "physical_start",
         "number_of_pages", "attribute", "regions", "region", "multiboot2", "memory_areas",
         "uefi", "descriptors"]  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "0x1000",
            "4K",
            "1e999k",
            "infk",
            "-0x1000",
            "usable",
            "reserved",
            "EfiConventionalMemory",
            "0x" + "f" * 40,
            "9" * 50,
            "nanm",
        ]
    )
)
_DOCS: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=30,
)
_E820 = st.lists(
    st.builds(
        "BIOS-e820: {}{} {}".format,
        st.sampled_from(["[mem ", "", "[mem 0x", "  "]),
        st.sampled_from(
            [
                "0x0-0x9fbff]",
                "0x100000-0x7fffffff]",
                "0xzz-0x1]",
                "0x2000-0x1000]",
                "0000000000000000 - 000000000009fc00",
                "0x0-0x" + "f" * 30 + "]",
            ]
        ),
        st.sampled_from(
            [
                "usable",
                "reserved",
                "(usable)",
                "type 12",
                "type " + "9" * 30,
                "ACPI data",
                "",
                "(type 5)",
                "\0\xff",
            ]
        ),
    )
    | st.text(max_size=30),
    min_size=1,
    max_size=8,
).map("\n".join)


def _parse_everywhere(text: str) -> None:
    for form in FORMS:
        try:
            found = parse_memory_map(text, form=form)
        except PagingError:
            continue
        json.dumps(found.to_json())
        found.usable()
        found.unaligned()


@settings(max_examples=150, deadline=None)
@given(doc=_DOCS)
def test_fuzz_memory_map_documents(doc: Any) -> None:
    _parse_everywhere(json.dumps(doc))
    _parse_everywhere(json.dumps({"regions": doc}))


@settings(max_examples=100, deadline=None)
@given(text=_E820 | st.text(max_size=200))
def test_fuzz_memory_map_text(text: str) -> None:
    _parse_everywhere(text)
