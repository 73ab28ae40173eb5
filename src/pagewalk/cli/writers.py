"""Writers of mapping listings, a batch of runs at a time: JSON, CSV, ptdump and table lines.

Each writer takes an iterator of :class:`~pagewalk.columns.RunColumns` batches (runs merged as
Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec define a leaf) and yields
UTF-8 chunks of whole lines, each the text of up to :data:`~pagewalk.textcols.SLICE` runs built
in bulk (:mod:`pagewalk.textcols`): numbers become digits in numpy, and everything that depends
only on the permission and the memory type (booleans, words, colours) is one lookup in a table
of at most 32 x (memory types) texts. The JSON is byte for byte what ``json.dumps`` gives for
``Mapping.to_json()`` of each run, one list on one line; ``hex`` writes addresses and sizes as
``"0x..."`` strings instead (as ``memmap --json`` does). With a layout
(:mod:`pagewalk.inspect.regions`), the JSON objects, the CSV lines and the table rows end with
the region of each run's first VA (``"region"``, ``null`` outside every region); without one they
are exactly as before. QEMU's ``info mem``/``info tlb`` texts
are in :mod:`pagewalk.inspect.qemu`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from pagewalk.columns import RunColumns
from pagewalk.formats.base import MemType, PagingMode, Perm
from pagewalk.textcols import SLICE, U8, Chunk, Rows, text_table

if TYPE_CHECKING:
    from pagewalk.inspect.regions import Layout

#: the fields of a run, in the order of the JSON object and of the CSV columns
FIELDS = ("va", "size", "pa", "page_size", "writable", "user", "executable", "global", "memtype")
_FLAGS = (("writable", Perm.WRITE), ("user", Perm.USER), ("executable", Perm.EXEC),
          ("global", Perm.GLOBAL))  # fmt: skip
_PERMS = [Perm(p) for p in range(32)]


def sliced(batches: Iterable[RunColumns], size: int = SLICE) -> Iterator[RunColumns]:
    """The batches cut into pieces of at most ``size`` runs (empty batches dropped)."""
    for b in batches:
        n = len(b)
        if n <= size:
            if n:
                yield b
            continue
        for s in range(0, n, size):
            yield RunColumns(
                b.va[s : s + size], b.size[s : s + size], b.pa[s : s + size],
                b.page_size[s : s + size], b.perm[s : s + size], b.memtype[s : s + size],
                b.memtypes, None if b.attrs is None else b.attrs[s : s + size],
            )  # fmt: skip


def size_text(size: int) -> str:
    """``4K``, ``2M``, ``1G``, or bytes for odd sizes."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f}{unit}"
    return str(size)


def memtype_text(memtype: MemType | str | None) -> str:
    """Short memory-type text."""
    if memtype is None:
        return ""
    return memtype.value if isinstance(memtype, MemType) else memtype


def memtype_value(memtype: MemType | str | None) -> str | None:
    """The memory type as ``to_json`` gives it."""
    return memtype.value if isinstance(memtype, MemType) else memtype


def by_perm_and_type(b: RunColumns, text: Callable[[Perm, MemType | str | None], str]) -> U8:
    """The table of ``text(perm, memtype)`` for every perm and this batch's memory types;
    index it with :func:`perm_type_index`."""
    return _perm_type_table(text, b.memtypes)


@functools.lru_cache(maxsize=64)
def _perm_type_table(
    text: Callable[[Perm, MemType | str | None], str], memtypes: tuple[MemType | str | None, ...]
) -> U8:
    return text_table([text(p, t) for p in _PERMS for t in memtypes])


def perm_type_index(b: RunColumns) -> np.ndarray:
    """Each run's row in a :func:`by_perm_and_type` table."""
    return b.perm.astype(np.intp) * max(len(b.memtypes), 1) + b.memtype


def by_value(col: np.ndarray, text: Callable[[int], str]) -> tuple[np.ndarray, U8]:
    """``(index, table)``: the text of each distinct value, and where each row's is."""
    values, index = np.unique(col, return_inverse=True)
    return index, text_table([text(int(v)) for v in values.tolist()])


def _number(rows: Rows, col: np.ndarray, hexed: bool, quote: str = '"') -> Rows:
    return rows.text(f"{quote}0x").hex(col).text(quote) if hexed else rows.dec(col)


def region_pick(
    rows: Rows, b: RunColumns, layout: Layout, text: Callable[[str | None], str]
) -> Rows:
    """Each run's region (of its first VA) as ``text(name)``; ``text(None)`` outside them all."""
    table = _region_table(layout, text)
    return rows.pick(layout.index(b.va), table)


@functools.lru_cache(maxsize=16)
def _region_table(layout: Layout, text: Callable[[str | None], str]) -> U8:
    return text_table([text(n) for n in [*layout.names, None]])


# ------------------------------------------------------------------------------------- JSON
def _json_tail(perm: Perm, memtype: MemType | str | None) -> str:
    flags = "".join(f', "{k}": {"true" if perm & f else "false"}' for k, f in _FLAGS)
    return f'{flags}, "memtype": {json.dumps(memtype_value(memtype))}}}, '


def _json_open_tail(perm: Perm, memtype: MemType | str | None) -> str:
    return _json_tail(perm, memtype)[: -len("}, ")]


def _json_region(name: str | None) -> str:
    return f', "region": {json.dumps(name)}}}, '


def json_rows(b: RunColumns, hexed: bool = False, layout: Layout | None = None) -> memoryview:
    """The JSON objects of a batch, each followed by ``", "`` (with ``"region"`` last when a
    layout is given)."""
    rows = _number(Rows(len(b)).text('{"va": '), b.va, hexed)
    for key, col in (("size", b.size), ("pa", b.pa), ("page_size", b.page_size)):
        _number(rows.text(f', "{key}": '), col, hexed)
    if layout is None:
        return rows.pick(perm_type_index(b), by_perm_and_type(b, _json_tail)).render()
    rows.pick(perm_type_index(b), by_perm_and_type(b, _json_open_tail))
    return region_pick(rows, b, layout, _json_region).render()


def json_list(
    batches: Iterable[RunColumns], *, hexed: bool = False, layout: Layout | None = None
) -> Iterator[Chunk]:
    """A JSON list of every run on one line (``json.dumps`` of the ``to_json`` objects, plus
    ``"region"`` with a layout)."""
    head = b"["
    for b in sliced(batches):
        yield head
        yield json_rows(b, hexed, layout)[:-2]
        head = b", "
    yield b"[]\n" if head == b"[" else b"]\n"


# -------------------------------------------------------------------------------------- CSV
def _csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _csv_tail(perm: Perm, memtype: MemType | str | None) -> str:
    flags = ["true" if perm & f else "false" for _, f in _FLAGS]
    return "," + _csv_line([*flags, memtype_value(memtype) or ""])


def _csv_open_tail(perm: Perm, memtype: MemType | str | None) -> str:
    return _csv_tail(perm, memtype)[:-1]


def _csv_region(name: str | None) -> str:
    return "," + _csv_line([name or ""])


def csv_table(
    batches: Iterable[RunColumns], *, hexed: bool = False, layout: Layout | None = None
) -> Iterator[Chunk]:
    """A header line, then one line per run: the JSON fields, booleans as ``true``/``false``,
    no memory type as an empty field, numbers in decimal (``0x...`` with ``hexed``); with a
    layout, a last ``region`` field (empty outside every region)."""
    yield _csv_line([*FIELDS, *(("region",) if layout is not None else ())]).encode()
    for b in sliced(batches):
        rows = Rows(len(b))
        for i, col in enumerate((b.va, b.size, b.pa, b.page_size)):
            _number(rows.text("," if i else ""), col, hexed, quote="")
        if layout is None:
            yield rows.pick(perm_type_index(b), by_perm_and_type(b, _csv_tail)).render()
            continue
        rows.pick(perm_type_index(b), by_perm_and_type(b, _csv_open_tail))
        yield region_pick(rows, b, layout, _csv_region).render()


# ----------------------------------------------------------------------------------- ptdump
_PTDUMP_LEVELS = {4096: "pte", 2 << 20: "pmd", 1 << 30: "pud", 4 << 20: "pmd", 512 << 20: "pmd"}


def ptdump_size(size: int) -> str:
    """Linux ptdump's size: KiB, or the largest unit that divides it."""
    value, unit = size >> 10, "K"
    for nxt in ("M", "G", "T"):
        if value % 1024:
            break
        value, unit = value // 1024, nxt
    return f"{value}{unit}"


def _ptdump_words(perm: Perm, memtype: MemType | str | None) -> str:
    words = [
        "USR" if perm & Perm.USER else "   ",
        "RW" if perm & Perm.WRITE else "ro",
        "GLB" if perm & Perm.GLOBAL else "   ",
        "x " if perm & Perm.EXEC else "NX",
        (memtype_value(memtype) or "").upper()[:6].ljust(6),
    ]
    return " ".join(words) + " "


def ptdump(batches: Iterable[RunColumns], mode: PagingMode) -> Iterator[Chunk]:
    """Linux ``kernel_page_tables``-style lines: range, size, attribute words, level name
    (with a ``---[ User Space ]---``/``---[ Kernel Space ]---`` line where the halves change,
    in modes with two)."""
    digits = 16 if mode.entry_size == 8 else 8
    upper = mode.halves[-1].va_start if len(mode.halves) > 1 else None
    section = -1
    for b in sliced(batches):
        level_idx, levels = by_value(b.page_size, lambda s: _PTDUMP_LEVELS.get(s, size_text(s)))
        size_idx, sizes = by_value(b.size, lambda s: f"{ptdump_size(s):>10}")
        end = b.va + b.size
        rows = Rows(len(b)).text("0x").hex(b.va, digits).text("-0x")
        rows.hex(end, digits, carry=(end < b.va)).text(" ").pick(size_idx, sizes).text("  ")
        rows.pick(perm_type_index(b), by_perm_and_type(b, _ptdump_words))
        text = rows.pick(level_idx, levels).text("\n").render()
        if upper is None:
            yield text
            continue
        kernel = (b.va >= np.uint64(upper)).astype(np.int8)
        cuts = np.flatnonzero(np.diff(np.concatenate(([section], kernel))))
        if not cuts.size:
            yield text
            continue
        starts = _line_starts(text)
        out: list[Chunk] = []
        at = 0
        for i in cuts.tolist():
            out.append(text[at : starts[i]])
            at, section = starts[i], int(kernel[i])
            out.append(b"---[ Kernel Space ]---\n" if section else b"---[ User Space ]---\n")
        out.append(text[at:])
        yield b"".join(out)


def _line_starts(text: Chunk) -> list[int]:
    """The offset of each line of ``text``."""
    ends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)
    return [0, *(ends[:-1] + 1).tolist()]


def _table_region(name: str | None) -> str:
    return f"│ {name or ''}\n"


def table_lines(
    batches: Iterable[RunColumns],
    mode: PagingMode,
    perm_text: Callable[[Perm], str],
    layout: Layout | None = None,
) -> Iterator[Chunk]:
    """The rows of the ``maps`` table, in the fixed layout of
    :func:`pagewalk.cli.render.mapping_line`; ``perm_text`` draws the permission letters
    (with colour codes on a terminal); with a layout, a last ``region`` column."""
    digits = 16 if mode.entry_size == 8 else 8
    one = np.uint64(1)
    end = "\n" if layout is None else ""

    def tail(perm: Perm, memtype: MemType | str | None) -> str:
        return f"{perm_text(perm)} │ {memtype_text(memtype):<18} {end}"

    for b in sliced(batches):
        size_idx, sizes = by_value(b.size, lambda s: f"{size_text(s):>9}")
        page_idx, pages = by_value(b.page_size, lambda s: f"{size_text(s):<5}")
        rows = Rows(len(b)).text(" 0x").hex(b.va, digits).text(" │ 0x")
        rows.hex(b.va + (b.size - one), digits).text(" │ ").pick(size_idx, sizes).text(" │ 0x")
        rows.hex(b.pa, left=16).text(" │ ").pick(page_idx, pages).text(" │ ")
        rows.pick(perm_type_index(b), by_perm_and_type(b, tail))
        if layout is not None:
            region_pick(rows, b, layout, _table_region)
        yield rows.render()
