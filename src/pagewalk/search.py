"""Search mapped virtual memory: every VA whose bytes match, read by PA and stitched by VA.

One idea: the address space is a sequence of *virtually contiguous stretches* (runs of mappings
with no VA gap between them), each made of pieces that lie somewhere in physical memory. A
search walks the mappings once (:meth:`pagewalk.machine.Machine.map_columns`, the enumeration
that follows Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec), reads each
piece's physical bytes in large blocks (``memory.read``) and searches the stretch as one stream:
the last ``len(pattern) - 1`` bytes of what came before are kept in front of each block, so a
match that crosses two virtually adjacent pages is found whatever frames back them, and never
one across a VA gap. A frame mapped at two VAs is read (and reported) once per VA: every alias
is a hit, with the same PA. Memory stays bounded by the block size; parts of a mapping outside
the memory's RAM (MMIO, or beyond a dump) are skipped, counted, and break the stretch.

Patterns are byte strings (``--bytes``/``--string``), little-endian integers (``--u64``/
``--u32``, at any offset unless aligned), or aligned words whose value lies in a window
(``--pointer-to A:B``: 8-byte words, 4-byte in modes with 32-bit VAs), matched with numpy. Every
supported architecture is little-endian here (Intel SDM vol. 1 §1.3.1; Arm ARM D8 with
little-endian data; RISC-V unprivileged spec §1.5).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pagewalk.errors import ConfigError, hx
from pagewalk.formats.base import MemType, Perm

if TYPE_CHECKING:
    from pagewalk.enumerate_filter import Filter
    from pagewalk.machine import Machine

#: bytes read per block (a stretch is searched a block at a time)
BLOCK = 4 << 20
_U64 = 1 << 64


@dataclass(frozen=True)
class Pattern:
    """What to look for.

    Attributes:
        needle: the exact bytes, or None for a value window.
        window: ``(lo, hi)``: words whose value is in ``[lo, hi)`` (with ``width``).
        width: the word size of a window search (4 or 8).
        align: only hits whose VA is a multiple of this.
        text: how the pattern is shown.
    """

    needle: bytes | None
    window: tuple[int, int] | None = None
    width: int = 0
    align: int = 1
    text: str = ""

    @property
    def length(self) -> int:
        """Bytes one match covers."""
        return len(self.needle) if self.needle is not None else self.width

    @classmethod
    def hex_bytes(cls, text: str, align: int = 1) -> Pattern:
        """``--bytes``: hex digits, spaces/colons allowed (``"de ad be ef"``)."""
        clean = "".join(text.replace(":", " ").replace("0x", " ").split())
        try:
            needle = bytes.fromhex(clean)
        except ValueError:
            raise ConfigError(f"--bytes {text!r} is not hex bytes (e.g. 'de ad be ef')") from None
        return cls._exact(needle, align, f"bytes {needle.hex(' ')}", "--bytes")

    @classmethod
    def string(cls, text: str, align: int = 1) -> Pattern:
        """``--string``: the text as UTF-8, no terminator."""
        return cls._exact(text.encode(), align, f"string {text!r}", "--string")

    @classmethod
    def integer(cls, value: int, width: int, align: int = 1) -> Pattern:
        """``--u64``/``--u32``: the value's little-endian bytes."""
        option = f"--u{8 * width}"
        if not 0 <= value < 1 << (8 * width):
            raise ConfigError(f"{option} {hx(value) if value >= 0 else value} does not fit in "
                              f"{8 * width} bits")  # fmt: skip
        needle = value.to_bytes(width, "little")
        return cls._exact(needle, align, f"u{8 * width} {hx(value)}", option)

    @classmethod
    def pointer(cls, lo: int, hi: int, width: int) -> Pattern:
        """``--pointer-to A:B``: aligned ``width``-byte words with ``lo <= value < hi``."""
        top = 1 << (8 * width)
        if not 0 <= lo < hi <= top:
            raise ConfigError(
                f"--pointer-to {hx(lo) if lo >= 0 else lo}:{hx(hi) if hi >= 0 else hi}: give A < B "
                f"within 0..{hx(top)} ({8 * width}-bit pointers)"
            )
        return cls(None, (lo, hi), width, width, f"pointer to {hx(lo)}..{hx(hi - 1)}")

    @classmethod
    def _exact(cls, needle: bytes, align: int, text: str, option: str) -> Pattern:
        if not needle:
            raise ConfigError(f"{option}: an empty pattern matches everywhere; give bytes")
        if align < 1 or align & (align - 1):
            raise ConfigError(f"--align {align} is not a power of two")
        return cls(needle, None, 0, align, text)


@dataclass(frozen=True)
class Hit:
    """One match: its VA, PA and the mapping (range start, page size, permission, type)."""

    va: int
    pa: int
    page_size: int
    perm: Perm
    memtype: MemType | str | None
    mapping_va: int

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object for a hit."""
        memtype = self.memtype.value if isinstance(self.memtype, MemType) else self.memtype
        return {
            "va": self.va,
            "pa": self.pa,
            "page_size": self.page_size,
            "perm": self.perm.letters(),
            "writable": bool(self.perm & Perm.WRITE),
            "user": bool(self.perm & Perm.USER),
            "executable": bool(self.perm & Perm.EXEC),
            "memtype": memtype,
            "page_va": self.mapping_va,
        }


@dataclass
class SearchStats:
    """What a search covered: mapped bytes read, ranges, and bytes skipped (not in memory)."""

    bytes_read: int = 0
    ranges: int = 0
    skipped: int = 0
    first_skipped: int | None = None


@dataclass
class _Piece:
    """A VA interval read from one PA start, and the mapping it belongs to."""

    va: int
    end: int
    pa: int
    info: tuple[int, Perm, MemType | str | None, int]  # page size, perm, memtype, mapping VA


@dataclass
class _Stretch:
    """The state carried along a virtually contiguous stretch."""

    keep: int
    tail: bytes = b""
    end: int = -1  # VA one past the last byte searched; -1: no stretch open
    pieces: deque[_Piece] = field(default_factory=deque)

    def restart(self) -> None:
        self.tail, self.end = b"", -1
        self.pieces.clear()


def _ram_parts(regions: list[tuple[int, int]], pa: int, size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of the parts of ``[pa, pa + size)`` inside RAM, in order."""
    i = max(bisect.bisect_right(regions, (pa, _U64)) - 1, 0)
    end = pa + size
    while i < len(regions) and regions[i][0] < end:
        lo = max(pa, regions[i][0])
        hi = min(end, regions[i][0] + regions[i][1])
        if lo < hi:
            yield lo - pa, hi - lo
        i += 1


def search(
    machine: Machine,
    pattern: Pattern,
    *,
    va_range: tuple[int, int] | None = None,
    filt: Filter | None = None,
    stats: SearchStats | None = None,
    block: int = BLOCK,
) -> Iterator[Hit]:
    """Every hit of ``pattern`` in ``machine``'s mapped memory, in VA order, streamed.

    Args:
        va_range: only matches that start in ``[A, B)`` and lie wholly inside it.
        filt: only mappings these permissions, PAs and page sizes keep (``maps --perm``...).
        stats: filled with the bytes read and skipped.
        block: bytes read at a time.

    Raises:
        ConfigError: a bad window (at the first ``next``).
        PagingError: a read the memory refuses (a live target that went away).
    """
    stats = stats if stats is not None else SearchStats()
    mem = machine.mem
    regions = sorted((r.base, r.size) for r in mem.regions)
    state = _Stretch(pattern.length - 1)
    for batch in machine.map_columns(va_range, filt=filt):
        cols = zip(
            batch.va.tolist(), batch.size.tolist(), batch.pa.tolist(),
            batch.page_size.tolist(), batch.perm.tolist(), batch.memtype.tolist(), strict=True,
        )  # fmt: skip
        for va, size, pa, page, perm, mt in cols:
            start = va
            if va_range is not None:  # the enumeration keeps whole pages: clip to the bytes
                lo, hi = max(va, va_range[0]), min(va + size, va_range[1])
                if lo >= hi:
                    continue
                va, size, pa = lo, hi - lo, pa + (lo - va)
            stats.ranges += 1
            info = (page, Perm(perm), batch.memtypes[mt], start)
            at = 0
            for off, n in _ram_parts(regions, pa, size):
                if off != at:
                    _skip(stats, state, va + at, off - at)
                yield from _search_piece(mem, pattern, state, stats, va + off, pa + off, n,
                                         info, block)  # fmt: skip
                at = off + n
            if at != size:
                _skip(stats, state, va + at, size - at)


def _skip(stats: SearchStats, state: _Stretch, va: int, n: int) -> None:
    stats.skipped += n
    if stats.first_skipped is None:
        stats.first_skipped = va
    state.restart()


def _search_piece(
    mem: Any,
    pattern: Pattern,
    state: _Stretch,
    stats: SearchStats,
    va: int,
    pa: int,
    n: int,
    info: tuple[int, Perm, MemType | str | None, int],
    block: int,
) -> Iterator[Hit]:
    if state.end != va:
        state.restart()
    piece = _Piece(va, va + n, pa, info)
    state.pieces.append(piece)
    done = 0
    while done < n:
        take = min(block, n - done)
        data = mem.read(pa + done, take)
        stats.bytes_read += take
        buf = state.tail + data if state.tail else data
        base = va + done - len(state.tail)
        for off in _matches(pattern, buf, base):
            hit_va = base + off
            yield _hit(state, piece, hit_va)
        done += take
        state.end = va + done
        state.tail = buf[max(len(buf) - state.keep, 0) :] if state.keep else b""
        tail_va = state.end - len(state.tail)
        while len(state.pieces) > 1 and state.pieces[0].end <= tail_va:
            state.pieces.popleft()


def _hit(state: _Stretch, piece: _Piece, va: int) -> Hit:
    owner = piece
    if va < piece.va:
        owner = next(p for p in state.pieces if p.va <= va < p.end)
    page, perm, memtype, start = owner.info
    return Hit(va, owner.pa + (va - owner.va), page, perm, memtype, start)


def _matches(pattern: Pattern, buf: bytes, base: int) -> Iterator[int]:
    """Offsets in ``buf`` (whose first byte is at VA ``base``) where a match starts."""
    align = pattern.align
    needle = pattern.needle
    if needle is not None and (align == 1 or align != len(needle) or align not in (4, 8)):
        pos = buf.find(needle)
        while pos >= 0:
            if (base + pos) % align == 0:
                yield pos
            pos = buf.find(needle, pos + 1)
        return
    width = pattern.width or len(needle or b"")
    lo, hi = pattern.window or (int.from_bytes(needle or b"", "little"),) * 2
    if pattern.window is None:
        hi = lo + 1
    first = -base % width
    count = (len(buf) - first) // width
    if count <= 0:
        return
    words = np.frombuffer(buf, dtype="<u8" if width == 8 else "<u4", count=count, offset=first)
    if hi - lo == 1:
        found = np.flatnonzero(words == np.uint64(lo) if width == 8 else words == np.uint32(lo))
    else:
        found = np.flatnonzero((words >= lo) & (words <= hi - 1))
    for i in found.tolist():
        yield first + i * width
