"""Text in bulk: many rows formatted at once as one byte matrix, with numpy doing the digits.

A listing of a million runs cannot afford a Python format call per field. :class:`Rows` builds a
batch of lines column by column, each column an ``(n, width)`` array of bytes: constant text,
decimal or hex numbers (uint64 arrays turned into digits by table lookups), or a pick from a
small table of texts by index (permission words, memory types, sizes). Byte 0 marks "no
character here" (the leading zeros of a number printed without padding); the finished matrix is
flattened and its 0 bytes dropped, which gives variable-width fields without a loop. Widths
follow the values: ``f"{x:#x}"``, ``f"{x:016x}"``, ``f"{x:<18}"`` and ``str(x)`` give the same text
as here. The addresses are those of Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V
privileged spec as :mod:`pagewalk.columns` holds them; nothing here knows the architecture.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
Index = npt.NDArray[np.intp] | npt.NDArray[np.uint8] | npt.NDArray[np.int64]
#: a piece of output: whole lines of UTF-8 text
Chunk = bytes | memoryview

#: rows formatted per matrix: its memory (about 1 MiB) stays in the allocator's heap, not mmap
SLICE = 1 << 12

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: every byte as its two hex digits, one uint16 per byte value
_HEX2 = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1).copy()
_HEX2_16 = _HEX2.view(np.uint16).ravel()


def _dec4_tables() -> npt.NDArray[np.uint32]:
    """Every number below 10000 as four digit bytes (one uint32 each), three ways: leading zeros
    dropped (0 drops all), all four digits, leading zeros dropped but the last kept."""
    i = np.arange(10000)
    full = np.stack([i // 1000, i // 100 % 10, i // 10 % 10, i % 10], axis=1) + ord("0")
    digits = (i >= 1).astype(np.intp) + (i >= 10) + (i >= 100) + (i >= 1000)
    blank = full * (np.arange(4) >= 4 - digits[:, None])
    last = full * (np.arange(4) >= 4 - np.maximum(digits, 1)[:, None])
    table = np.concatenate([blank, full, last]).astype(np.uint8)
    return table.view(np.uint32).ravel()


_DEC4 = _dec4_tables()
_POW10 = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
_POW16 = np.array([16**k for k in range(1, 16)], dtype=np.uint64)
_SPACE = 0x20


def decimal_digits(col: U64) -> npt.NDArray[np.intp]:
    """How many decimal digits each value has (1 for 0)."""
    return 1 + np.searchsorted(_POW10, col, side="right")


def hex_digits(col: U64) -> npt.NDArray[np.intp]:
    """How many hex digits each value has (1 for 0)."""
    return 1 + np.searchsorted(_POW16, col, side="right")


def _blank_leading(out: U8, keep: npt.NDArray[np.intp]) -> None:
    """Zero (drop) the first ``width - keep`` bytes of each row of ``out``."""
    width = out.shape[1]
    if width and keep.size and int(keep.min()) < width:
        out *= np.arange(width) >= (width - keep)[:, None]


def _pad(n: int, count: npt.NDArray[np.intp]) -> U8:
    """``count`` spaces per row, as a matrix whose other bytes are dropped."""
    most = int(count.max()) if count.size else 0
    return (np.arange(most) < count[:, None]).astype(np.uint8) * np.uint8(_SPACE)


def text_table(texts: Sequence[str]) -> U8:
    """Texts as the rows of a byte matrix, padded with 0 (dropped) to the longest."""
    data = [t.encode() for t in texts] or [b""]
    width = max(len(d) for d in data)
    table = np.zeros((len(data), max(width, 1)), dtype=np.uint8)
    for i, d in enumerate(data):
        table[i, : len(d)] = np.frombuffer(d, dtype=np.uint8)
    return table


class Rows:
    """A batch of ``n`` lines built left to right; :meth:`render` gives them as one text."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[U8] = []

    def text(self, s: str) -> Rows:
        """The same text on every row."""
        if s:
            row = np.frombuffer(s.encode(), dtype=np.uint8)
            self.parts.append(np.broadcast_to(row, (self.n, row.size)))
        return self

    def dec(self, col: U64) -> Rows:
        """``str(value)``."""
        n = self.n
        if not n:
            return self
        top = int(col.max())
        groups = (len(str(top)) + 3) // 4
        out = np.empty((n, groups), dtype=np.uint32)
        v = col.astype(np.uint64)
        ten4 = np.uint64(10000)
        for g in range(groups - 1, -1, -1):
            q = v // ten4
            r = (v - q * ten4).astype(np.intp)
            more = q != 0  # a digit group above: print all four digits
            r += more * 10000 if g < groups - 1 else np.where(more, 10000, 20000)
            np.take(_DEC4, r, out=out[:, g])
            v = q
        self.parts.append(out.view(np.uint8))
        return self

    def hex(
        self,
        col: U64,
        digits: int = 1,
        *,
        carry: npt.NDArray[np.bool_] | None = None,
        left: int = 0,
    ) -> Rows:
        """``f"{value:0{digits}x}"``: zero-padded to ``digits``, wider where the value is.

        Args:
            carry: rows whose value is really ``value + 2**64`` (a range ending at the top of
                the address space): a ``1`` digit is put first.
            left: left-justify to this many characters with spaces (``f"{text:<left}"``),
                counting the digits only.
        """
        n = self.n
        if not n:
            return self
        raw = col.astype(">u8").view(np.uint8).reshape(n, 8)
        out = np.take(_HEX2_16, raw).view(np.uint8)
        have = np.maximum(hex_digits(col), digits)
        width = int(have.max())
        out = out[:, 16 - width :].copy()
        _blank_leading(out, have)
        if carry is not None and carry.any():
            self.parts.append(np.where(carry, ord("1"), 0).astype(np.uint8)[:, None])
            have = have + carry
        self.parts.append(out)
        if left:
            self.parts.append(_pad(n, np.maximum(left - have, 0)))
        return self

    def pick(self, index: Index, table: U8) -> Rows:
        """Row ``index[i]`` of ``table`` (see :func:`text_table`) on row ``i``."""
        self.parts.append(np.take(table, index, axis=0))
        return self

    def bytes_(self, matrix: U8) -> Rows:
        """An ``(n, w)`` matrix of bytes as it is (0 bytes dropped)."""
        self.parts.append(matrix)
        return self

    def render(self) -> memoryview:
        """The rows, one after another, UTF-8 (end each with ``\\n`` through :meth:`text`).

        The matrix and its mask are built in buffers kept for the next batch (fresh memory
        costs a page fault per 4 KiB: as much as the formatting); the text is a new array."""
        if not self.n or not self.parts:
            return memoryview(b"")
        width = sum(p.shape[1] for p in self.parts)
        flat, keep = _scratch(self.n * width)
        np.concatenate(self.parts, axis=1, out=flat.reshape(self.n, width))
        np.not_equal(flat, 0, out=keep)
        return flat[keep].data


_SCRATCH = threading.local()


def _scratch(size: int) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Two buffers of ``size`` bytes (bytes, flags), reused from call to call (per thread)."""
    buf: U8 | None = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < 2 * size:
        buf = _SCRATCH.buf = np.empty(2 * size, dtype=np.uint8)
    return buf[:size], buf[size : 2 * size].view(np.bool_)
