"""Find plausible top-level page tables in a dump whose registers are unknown, and rank them.

Every page of RAM is scanned as a root table of the mode, a chunk at a time with numpy: its
valid entries must point to tables inside RAM, not all be equal, and not be leaves where the
root may hold none. The survivors are then tried for real: a few entries per level are followed
to the leaf level, and a candidate scores by the share of those walks that end in a well-formed
leaf or an empty table (decoded by the mode's codec: reserved bits, bad encodings and tables
outside RAM fail; Intel SDM vol. 3A §4.5, Arm ARM D8.3, RISC-V privileged spec), then by how
many entries it holds. Data pages and lower-level tables rarely survive full-depth walks, so
real roots come first (a kernel's preallocated, empty vmalloc tables count as sound).

A RISC-V core carries no satp (QEMU's notes hold none), so :func:`riscv_root` finds it: Linux's
``swapper_pg_dir`` from the VMCOREINFO text in RAM (``va_kernel_pa_offset``, ``VA_BITS``), else
the one best-scoring Sv57/48/39 candidate, else a ConfigError asking for ``--satp``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pagewalk.errors import ConfigError, hx
from pagewalk.formats import make_mode
from pagewalk.formats.base import EntryKind, Half, PagingMode
from pagewalk.memory.dump import Memory
from pagewalk.memory.elfcore import parse_vmcoreinfo

CHUNK_PAGES = 8192
_SAMPLE = 16


@dataclass(frozen=True)
class Candidate:
    """A possible root table.

    Attributes:
        pa: its physical address.
        half: which root register it would serve (by name).
        valid: valid entries.
        low, high: valid entries in the lower and upper half of the table.
        walks: sampled full-depth walks tried; ``good`` reached a leaf, ``empty`` an empty table.
        self_ref: whether it holds a pointer to itself (a recursive slot).
    """

    pa: int
    half: str
    valid: int
    low: int
    high: int
    walks: int
    good: int
    empty: int
    self_ref: bool

    @property
    def score(self) -> float:
        """Share of sampled walks that end soundly (a leaf or an empty table)."""
        return round((self.good + self.empty) / self.walks, 4) if self.walks else 0.0

    def to_json(self) -> dict[str, Any]:
        """The candidate as JSON."""
        return {**vars(self), "score": self.score}


def find_roots(
    mem: Memory,
    mode: PagingMode,
    *,
    limit: int = 10,
    extents: list[tuple[int, int]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Candidate]:
    """The best ``limit`` candidates for each half's root, best first.

    Args:
        extents: (pa, size) runs to scan; default every RAM region.
        progress: called with (bytes done, bytes total).
    """
    half = mode.halves[0]
    spans = extents if extents is not None else [(r.base, r.size) for r in mem.regions]
    total = sum(s for _, s in spans)
    done = 0
    pages: list[int] = []
    for base, size in spans:
        for pa, raws in _chunks(mem, mode, half, base, size):
            pages.extend(_plausible(mem, mode, half, pa, raws))
            done += raws.shape[0] * raws.shape[1] * mode.entry_size
            if progress is not None:
                progress(min(done, total), total)
    out = [_try(mem, mode, h, pa) for pa in pages for h in _halves(mode)]
    good = [c for c in out if c.good]
    good.sort(key=lambda c: (-c.score, -c.valid, -c.good, c.pa))
    return good[:limit]


def _halves(mode: PagingMode) -> tuple[Half, ...]:
    """The halves worth trying: one per root register."""
    seen: dict[int, Half] = {}
    for h in mode.halves:
        seen.setdefault(h.root, h)
    return tuple(seen.values())


def _chunks(
    mem: Memory, mode: PagingMode, half: Half, base: int, size: int
) -> Iterator[tuple[int, Any]]:
    top = half.levels[0]
    step = max(top.entries * mode.entry_size, half.table_align, mode.page_size)
    start = -(-base // step) * step
    per = top.entries
    while start + step <= base + size:
        n = min(CHUNK_PAGES, (base + size - start) // step)
        if n <= 0 or not mem.is_ram(start, n * step):
            break
        block = mem.read_table(start, n * step // mode.entry_size, mode.entry_size)
        yield start, block.reshape(n, step // mode.entry_size)[:, :per]
        start += n * step


def _plausible(mem: Memory, mode: PagingMode, half: Half, pa: int, raws: Any) -> list[int]:
    top = half.levels[0]
    valid = (raws & np.uint64(1)) != 0
    n_valid = valid.sum(axis=1)
    rows = np.flatnonzero((n_valid >= 2) & (raws != raws[:, :1]).any(axis=1))
    out: list[int] = []
    step = raws.shape[1] * mode.entry_size
    step = max(step, half.table_align, mode.page_size)
    for r in rows.tolist():
        entries = raws[r][valid[r]]
        if mode.np_is_leaf(entries, top).any() and not top.leaf_size:
            continue
        addrs = mode.np_address(entries, top, False)
        if not mem.is_ram_array(addrs, mode.entry_size).all():
            continue
        out.append(pa + r * step)
    return out


def _try(mem: Memory, mode: PagingMode, half: Half, pa: int) -> Candidate:
    top = half.levels[0]
    raws = mem.read_table(pa, top.entries, mode.entry_size)
    idx = np.flatnonzero(raws & np.uint64(1))
    mid = top.entries // 2
    low, high = int((idx < mid).sum()), int((idx >= mid).sum())
    picks = (
        idx[np.linspace(0, idx.size - 1, min(_SAMPLE, idx.size)).astype(int)] if idx.size else idx
    )
    self_ref = bool((mode.np_address(raws[idx], top, False) == np.uint64(pa)).any())
    ends = [_walk_down(mem, mode, half, int(raws[i])) for i in picks.tolist()]
    good, empty = ends.count("leaf"), ends.count("empty")
    return Candidate(pa, half.name, int(idx.size), low, high, len(picks), good, empty, self_ref)


def _walk_down(mem: Memory, mode: PagingMode, half: Half, raw: int) -> str:
    """Follow ``raw`` (then a middle valid entry of each table): ``leaf``, ``empty`` or ``bad``."""
    for d in range(len(half.levels)):
        level = half.levels[d]
        entry = mode.decode(raw, level)
        if entry.fault is not None or entry.kind is EntryKind.INVALID:
            return "bad"
        if entry.kind is EntryKind.LEAF:
            return "leaf"
        if d + 1 >= len(half.levels):
            return "bad"
        nxt = half.levels[d + 1]
        if not mem.is_ram(entry.address, nxt.entries * mode.entry_size):
            return "bad"
        table = mem.read_table(entry.address, nxt.entries, mode.entry_size)
        valid = np.flatnonzero(table & np.uint64(1))
        if not valid.size:
            return "empty" if not table.any() else "bad"
        raw = int(table[valid[len(valid) // 2]])
    return "bad"


#: how far past ``OSRELEASE=`` a VMCOREINFO text may run (Linux's VMCOREINFO_BYTES, a page)
VMCOREINFO_BYTES = 4096
#: RAM read per step of the VMCOREINFO scan (the steps overlap by one text)
SCAN_CHUNK = 16 << 20
#: ``OSRELEASE=`` hits examined before the scan gives up (the kernel's own format strings hit)
SCAN_HITS = 64
_RISCV_VA_BITS = {39: "sv39", 48: "sv48", 57: "sv57"}
_RISCV_MODES = ("sv57", "sv48", "sv39")


@dataclass(frozen=True)
class FoundRoot:
    """A root found in a dump: the mode it serves, its PA, and how it was found."""

    mode: str
    root: int
    why: str


def vmcoreinfo_in_ram(mem: Memory) -> tuple[int, dict[str, str]] | None:
    """The first Linux VMCOREINFO text in RAM that names ``swapper_pg_dir``, with its PA.

    Linux keeps the text in a page of its own (``vmcoreinfo_data``) even when the dump has no
    VMCOREINFO note (QEMU's RISC-V ``dump-guest-memory`` writes none). The scan reads the data
    spans a chunk at a time and stops at the first text that names ``swapper_pg_dir``, or after
    :data:`SCAN_HITS` hits that do not (the kernel's ``"OSRELEASE=%s"`` format string is one).
    """
    spans = _spans(mem)
    hits = 0
    for base, size in spans:
        at = base
        while at < base + size:
            n = min(SCAN_CHUNK + VMCOREINFO_BYTES, base + size - at)
            chunk = mem.read(at, n)
            pos = chunk.find(b"OSRELEASE=")
            while 0 <= pos < SCAN_CHUNK:
                hits += 1
                if hits > SCAN_HITS:
                    return None
                text = chunk[pos : pos + VMCOREINFO_BYTES].split(b"\0", 1)[0]
                info = parse_vmcoreinfo(text)
                if not text.startswith(b"OSRELEASE=%") and "SYMBOL(swapper_pg_dir)" in info:
                    return at + pos, info
                pos = chunk.find(b"OSRELEASE=", pos + 1)
            at += SCAN_CHUNK
    return None


def riscv_root(mem: Memory, mode: str | None = None) -> FoundRoot:
    """The RISC-V root of a dump with no satp: Linux's ``swapper_pg_dir`` from the VMCOREINFO
    text in RAM, else the one best-scoring Sv39/48/57 candidate of :func:`find_roots`.

    Args:
        mode: the mode the user named (``--mode``), or None to find it too.

    Raises:
        ConfigError: neither way gives one root (no VMCOREINFO, and candidates tie or none
            is sound); the message names the best candidates and asks for ``--satp``.
    """
    found = vmcoreinfo_in_ram(mem)
    if found is not None:
        root = _swapper(mem, found[0], found[1], mode)
        if root is not None:
            return root
    return _best_candidate(mem, mode, found is not None)


def _swapper(mem: Memory, at: int, info: dict[str, str], mode: str | None) -> FoundRoot | None:
    try:
        swapper = int(info["SYMBOL(swapper_pg_dir)"], 16)
        offset = int(info["NUMBER(va_kernel_pa_offset)"], 0)
        va_bits = int(info.get("NUMBER(VA_BITS)", "0"), 0)
    except (KeyError, ValueError):
        return None
    name = mode or _RISCV_VA_BITS.get(va_bits)
    root = (swapper - offset) & ((1 << 64) - 1)
    if name is None or root & 0xFFF or not mem.is_ram(root, 4096):
        return None
    made = make_mode(name)
    if not _try(mem, made, made.halves[0], root).good:
        return None
    why = (
        f"satp root {hx(root)} = swapper_pg_dir {hx(swapper)} - va_kernel_pa_offset "
        f"{hx(offset)}, {name} from VA_BITS={va_bits} (Linux VMCOREINFO text in RAM at "
        f"{hx(at)}; the core has no satp): the kernel's tables, so user space is not mapped "
        "(give --satp for a process's)"
    )
    return FoundRoot(name, root, why)


def _best_candidate(mem: Memory, mode: str | None, had_info: bool) -> FoundRoot:
    spans = _spans(mem)
    ranked: list[tuple[Candidate, str]] = []
    for name in (mode,) if mode else _RISCV_MODES:
        ranked += [(c, name) for c in find_roots(mem, make_mode(name), limit=3, extents=spans)]
    ranked.sort(key=lambda cn: (-cn[0].score, -cn[0].valid, cn[0].pa))
    if ranked:
        best, name = ranked[0]
        tie = len(ranked) > 1 and (ranked[1][0].score, ranked[1][0].valid) == (
            best.score,
            best.valid,
        )
        if best.score == 1.0 and not tie:
            why = (
                f"satp root {hx(best.pa)} ({name}): the one best-scoring candidate of "
                f"find-roots (score {best.score}, {best.valid} valid entries; the core has no "
                "satp and no VMCOREINFO names swapper_pg_dir)"
            )
            return FoundRoot(name, best.pa, why)
    top = ", ".join(f"{hx(c.pa)} ({n}, score {c.score}, {c.valid} valid)" for c, n in ranked[:4])
    raise ConfigError(
        "the core holds no satp, "
        + ("and its VMCOREINFO gives no usable swapper_pg_dir" if had_info else "no VMCOREINFO")
        + (f", and no root stands out ({top})" if top else ", and no page looks like a root")
        + ": give --satp VALUE (`pagewalk find-roots IMAGE --mode sv39|sv48|sv57` ranks candidates)"
    )


def _spans(mem: Memory) -> list[tuple[int, int]]:
    """The (pa, size) runs worth scanning: a file's data, holes left out, else every region."""
    data_spans = getattr(mem, "data_spans", None)
    if callable(data_spans):
        return list(data_spans())
    return [(r.base, r.size) for r in mem.regions]
