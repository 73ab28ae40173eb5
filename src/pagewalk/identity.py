"""The identity that ties an image to its register file (``IMAGE.json``).

An image and its register file are saved as one unit (:mod:`pagewalk.safeio`), and the register file
records ``"image": {"size": N, "blocks": [...], "fingerprint": "..."}``: the image's size, the
offsets of some 4 KiB blocks, and a BLAKE2b digest of the size and of each listed block (its offset,
then its bytes). The blocks are the page tables the registers point at (every root table, and up to
:data:`TABLE_BLOCKS` tables in all, found by walking the tree as Intel SDM vol. 3A §4.5, Arm ARM
D8.2 and the RISC-V privileged spec describe) and :data:`SAMPLES` blocks spread over the file. The
list is stored, so checking needs no mode. Checking reads only those blocks, so a huge sparse image
is never read whole, yet a register file left from another image (renamed, copied over, or left
behind by a save that was killed between its two renames) is caught: its tables are what the
registers describe. Opening a raw image checks the identity when the key is there; older register
files without it are still read.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pagewalk.errors import DumpError, hx
from pagewalk.formats.base import PagingMode

#: blocks sampled across the image, besides the tables
SAMPLES = 16
#: at most this many table blocks are listed (roots first, then evenly picked)
TABLE_BLOCKS = 48
#: a register file listing more blocks than this is refused (bounds the work of a check)
MAX_BLOCKS = 4096
BLOCK = 4096

Image = mmap.mmap | npt.NDArray[np.uint8]


def fingerprint(data: Image, blocks: Sequence[int]) -> str:
    """The BLAKE2b digest (hex) of the image's size and the listed blocks."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(len(data).to_bytes(8, "little"))
    for offset in blocks:
        h.update(offset.to_bytes(8, "little"))
        h.update(bytes(data[offset : offset + BLOCK]))
    return h.hexdigest()


def pick_blocks(data: Image, tables: Sequence[int], keep: int = 0) -> list[int]:
    """The blocks to hash, sorted: the first ``keep`` of ``tables`` (the roots), more of them
    evenly picked up to :data:`TABLE_BLOCKS`, and :data:`SAMPLES` samples plus the last block."""
    size = len(data)
    pages = list(dict.fromkeys(t & ~(BLOCK - 1) for t in tables if 0 <= t < size))
    if len(pages) > TABLE_BLOCKS:
        head, rest = pages[:keep], pages[keep:]
        step = len(rest) / max(TABLE_BLOCKS - len(head), 1)
        pages = head + [rest[int(i * step)] for i in range(TABLE_BLOCKS - len(head))]
    samples = {(size * i // SAMPLES) & ~(BLOCK - 1) for i in range(SAMPLES)}
    samples.add(max(size - 1, 0) & ~(BLOCK - 1))
    return sorted(set(pages) | samples)


def table_pages(mem: Any, mode: PagingMode, roots: Sequence[int]) -> tuple[list[int], int]:
    """Every table reachable from ``roots``, the root tables first; and how many roots."""
    from pagewalk.inspect.tables import Tables

    visits = list(Tables(mem, mode, roots).visit())
    tops = [v.pa for v in visits if v.depth == 0]
    return tops + [v.pa for v in visits if v.depth != 0], len(tops)


def identity(data: Image, tables: Sequence[int], keep: int = 0) -> dict[str, Any]:
    """The ``"image"`` value of a register file (see :func:`pick_blocks` for the arguments)."""
    blocks = pick_blocks(data, tables, keep)
    return {"size": len(data), "blocks": blocks, "fingerprint": fingerprint(data, blocks)}


def check_pair(image: str | os.PathLike[str], side: str | os.PathLike[str],
               saved: dict[str, Any], data: Image) -> None:  # fmt: skip
    """Raise unless the register file ``side`` (already read into ``saved``) fits ``data``.

    Raises:
        DumpError: the register file records another image's size or fingerprint, or its
            ``"image"`` value is malformed.
    """
    want = saved.get("image")
    if want is None:
        return
    size = len(data)
    blocks = want.get("blocks") if isinstance(want, dict) else None
    if (
        not isinstance(want, dict)
        or not isinstance(want.get("size"), int)
        or not isinstance(want.get("fingerprint"), str)
        or not isinstance(blocks, list)
        or len(blocks) > MAX_BLOCKS
        or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in blocks)
    ):
        raise DumpError(
            f'register file {side}: "image" must be {{"size": int, "blocks": [at most '
            f'{MAX_BLOCKS} offsets], "fingerprint": str}}'
        )
    hint = "move it away and give the register options, or save the image again"
    if want["size"] != size:
        raise DumpError(
            f"register file {side} was written for a different image: it records "
            f"{hx(want['size'])} bytes, {image} has {hx(size)} ({hint})"
        )
    outside = [b for b in blocks if b >= size]
    if outside:
        raise DumpError(
            f"register file {side}: fingerprint block {hx(outside[0])} is outside the image "
            f"({image} has {hx(size)} bytes; {hint})"
        )
    if fingerprint(data, blocks) != want["fingerprint"]:
        raise DumpError(
            f"register file {side} was written for a different image: the contents of {image} "
            f"do not match its fingerprint ({hint})"
        )
