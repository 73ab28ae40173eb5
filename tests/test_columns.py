"""Column enumeration lists exactly what the per-range enumerator it replaced listed.

:func:`~pagewalk.enumerate.mapping_columns` builds runs as numpy columns, merges them in bulk
and across batches, and decodes each leaf shape once. The oracle here is a copy of the
enumerator it replaced (one :class:`Mapping` per range, merged one at a time as tables produce
them, same memo and limit rules), kept only in this file. On random spaces of every mode, on
hostile images (shared subtrees, self-references, tables partly outside the image, random
bytes), with filters and raw attributes, the rows, the :class:`EnumStats` and the
:class:`~pagewalk.errors.LimitError` must be the same; the runs must also agree with walks
(Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pagewalk.enumerate_columns as ec
from hostile.hostile_images import fanout, random_tables, self_ref, straddle_core, straddle_end
from mmu.mmu_builders import random_space
from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.batch import group_shapes
from pagewalk.cli.machine import load_machine
from pagewalk.columns import RunColumns, concat, merged_batches
from pagewalk.enumerate import mapping_columns, mappings
from pagewalk.enumerate_filter import Filter
from pagewalk.enumerate_runs import EnumStats, Mapping, PartialTable, missing_runs, read_entries
from pagewalk.errors import LimitError
from pagewalk.formats.base import EntryKind
from pagewalk.walk import walk

Images = dict[str, str]
MODES = ["x86", "pae", "x86_64", "la57", "aarch64", "sv32", "sv39", "sv48", "sv57"]
M64 = (1 << 64) - 1


# ------------------------------------------------- the oracle: the per-range enumerator
_W = ec.Walker  # only its fields: the state of one half's walk


def old_mappings(mem: Any, mode: Any, roots: Any, **kw: Any) -> Iterator[Mapping]:
    stats = kw.get("stats") or EnumStats()
    lo, hi = kw.get("va_range") or (0, 1 << 64)
    walkers = []
    for half in mode.halves:
        s_lo, s_hi = max(lo, half.va_start), min(hi, half.va_end)
        root = roots[half.root]
        if s_lo < s_hi and mode.root_fault(root, half) is None:
            w = _W(mem, mode, half, s_lo, s_hi, kw.get("filt") or Filter(), kw.get("raw_attrs", 0))
            w.stats, w.limit, w.distinct = stats, kw.get("limit"), kw.get("distinct", False)
            w.memo_ok = _shared(w, root)
            walkers.append((w, root))
    if kw.get("limit") is not None and not kw.get("distinct"):
        counted = EnumStats()
        for w, root in walkers:
            for _ in _root(replace(w, memo={}, stats=counted, counting=True), root):
                pass
    pending = None
    for w, root in walkers:
        for m in _root(w, root):
            if pending is not None and pending.continues(m):
                pending = replace(pending, size=pending.size + m.size)
                continue
            if pending is not None:
                yield pending
            pending = m
    if pending is not None:
        yield pending


def _root(w: _W, root: int) -> Iterator[Mapping]:
    top = w.half.levels[0]
    return _table(w, root, 0, w.half.va_start & ~((1 << (top.shift + top.bits)) - 1), [])


def _count(w: _W, n: int) -> None:
    w.stats.runs += n
    if w.limit is not None and w.stats.runs > w.limit:
        raise LimitError("limit")


def _shared(w: _W, root: int) -> set[tuple[int, int]]:
    count: dict[tuple[int, int], int] = {}
    stack = [(root, 0)]
    while stack:
        key = stack.pop()
        count[key] = count.get(key, 0) + 1
        if count[key] > 1 or key[1] == len(w.half.levels) - 1:
            continue
        level = w.half.levels[key[1]]
        raws, _ = read_entries(w.mem, key[0], level.entries, w.mode.entry_size)
        valid = raws[(raws & np.uint64(1)) != 0]
        kids = w.mode.np_address(valid[~w.mode.np_is_leaf(valid, level)], level, False)
        stack.extend((int(c), key[1] + 1) for c in kids.tolist())
    return {k for k, n in count.items() if n > 1}


def _table(w: _W, table: int, depth: int, base: int, path: list[Any]) -> Iterator[Mapping]:
    level = w.half.levels[depth]
    cap = w.mode.effective(path, w.half) if path else Perm(0xF)
    if not w.filt.table_may_match(cap, w.half, depth):
        w.stats.pruned += 1
        return
    key = (table, depth, cap)
    whole = w.lo <= base and base + (level.entries << level.shift) <= w.hi
    memo = whole and (table, depth) in w.memo_ok
    seen = w.memo.get(key) if memo else None
    if seen is not None and (w.distinct or w.counting or seen[1] is not None):
        w.stats.memo_hits += 1
        if not w.distinct:
            _count(w, seen[0])
        for rel in seen[1] if not (w.distinct or w.counting) and seen[1] else ():
            yield replace(rel, va=rel.va + base)
        return
    i0 = max(0, (w.lo - base) >> level.shift)
    i1 = min(level.entries - 1, (w.hi - 1 - base) >> level.shift)
    if i0 > i1:
        return
    esize = w.mode.entry_size
    raws, ok = read_entries(w.mem, table + i0 * esize, i1 - i0 + 1, esize)
    if ok is not None and not ok.any():
        w.stats.bad_tables += 1
        return
    if ok is not None and (table, level.number) not in w.stats.partial:
        w.stats.partial[table, level.number] = PartialTable(
            table, level, esize, missing_runs(ok, i0)
        )
    w.stats.tables += 1
    out = _scan(w, raws, i0, depth, base, path)
    if not memo:
        yield from out
        return
    before = w.stats.runs
    keep: list[Mapping] | None = [] if not (w.counting or w.distinct) and w.kept < 1 << 17 else None
    for m in out:
        if keep is not None:
            keep = keep if len(keep) < ec.MEMO_ROWS else None
            if keep is not None:
                keep.append(replace(m, va=m.va - base))
        yield m
    w.kept += len(keep) if keep is not None else 0
    w.memo[key] = (w.stats.runs - before, keep)


def _scan(w: _W, raws: Any, i0: int, depth: int, base: int, path: list[Any]) -> Iterator[Mapping]:
    level = w.half.levels[depth]
    valid_idx = np.flatnonzero(raws & np.uint64(1))
    w.stats.entries += int(valid_idx.size)
    if not valid_idx.size:
        return
    valid = raws[valid_idx]
    is_leaf = w.mode.np_is_leaf(valid, level)
    cuts = np.flatnonzero(np.diff(is_leaf.astype(np.int8))) + 1
    for seg in np.split(np.arange(valid_idx.size), cuts):
        if is_leaf[seg[0]]:
            yield from _leaf_runs(w, valid[seg], valid_idx[seg] + i0, depth, base, path)
            continue
        if depth + 2 == len(w.half.levels):
            batch = _leaf_tables(w, valid[seg], valid_idx[seg] + i0, depth, base, path)
            if batch is not None:
                yield from batch
                continue
        for j in seg.tolist():
            entry = w.mode.decode_cached(int(valid[j]), level)
            if entry.fault is not None or entry.kind is not EntryKind.TABLE:
                w.stats.faulty_entries += 1
                continue
            child_base = base + ((int(valid_idx[j]) + i0) << level.shift)
            yield from _table(w, entry.address, depth + 1, child_base, [*path, entry])


def _leaf_tables(w: _W, parents: Any, pidx: Any, depth: int, base: int, path: list[Any]) -> Any:
    level, child = w.half.levels[depth], w.half.levels[depth + 1]
    keys = parents & np.uint64(~w.mode.address_mask(level, False) & M64)
    first = w.mode.decode_cached(int(parents[0]), level)
    if (keys != keys[0]).any() or first.fault is not None or first.kind is not EntryKind.TABLE:
        return None
    children = w.mode.np_address(parents, level, False)
    if (
        base + (int(pidx[0]) << level.shift) < w.lo
        or base + ((int(pidx[-1]) + 1) << level.shift) > w.hi
        or any((int(c), depth + 1) in w.memo_ok for c in children.tolist())
        or not w.mem.is_ram_array(children, child.entries * w.mode.entry_size).all()
    ):
        return None
    path = [*path, first]
    if not w.filt.table_may_match(w.mode.effective(path, w.half), w.half, depth + 1):
        w.stats.pruned += int(children.size)
        return iter(())
    offsets = np.arange(child.entries, dtype=np.uint64) * np.uint64(w.mode.entry_size)
    raws = w.mem.gather((children[:, None] + offsets).ravel(), w.mode.entry_size)
    w.stats.tables += int(children.size)
    valid = np.flatnonzero(raws & np.uint64(1))
    w.stats.entries += int(valid.size)
    gidx = np.asarray(pidx, dtype=np.int64)[valid // child.entries] * child.entries
    return _leaf_runs(w, raws[valid], gidx + valid % child.entries, depth + 1, base, path)


def _leaf_runs(w: _W, leaves: Any, idx: Any, depth: int, base: int, path: Any) -> Iterator[Any]:
    level = w.half.levels[depth]
    span = level.leaf_size
    w.stats.leaves += int(leaves.size)
    if not span:
        w.stats.faulty_entries += int(leaves.size)
        return
    addr = w.mode.np_address(leaves, level, leaf=True)
    keys = leaves & np.uint64(~w.mode.address_mask(level, True) & M64)
    classes: dict[Any, int] = {}
    cls = np.empty(leaves.size, dtype=np.int64)
    for rows, rep in group_shapes(keys):
        entry = w.mode.decode_cached(int(leaves[rep]), level)
        if entry.fault is not None:
            cls[rows] = -1
            continue
        perm = w.mode.effective([*path, entry], w.half)
        if not (w.filt.size_ok(span) and w.filt.perm_ok(perm)):
            cls[rows] = -2
            continue
        attr = (perm, entry.memtype, int(keys[rep]) if w.raw_attrs else None)
        cls[rows] = classes.setdefault(attr, len(classes))
    attrs = list(classes)
    ok = (cls != -1) & ((addr & np.uint64(span - 1)) == 0)
    w.stats.faulty_entries += int((~ok).sum())
    ok &= cls >= 0
    pa_ok = w.filt.pa_mask(addr, span)
    if pa_ok is not None:
        ok &= pa_ok
    idx, addr, cls = idx[ok], addr[ok], cls[ok]
    if not idx.size:
        return
    breaks = (np.diff(idx) != 1) | (np.diff(addr) != np.uint64(span)) | (np.diff(cls) != 0)
    starts = np.concatenate(([0], np.flatnonzero(breaks) + 1))
    if w.counting:
        _count(w, int(starts.size))
        return
    for s, e in zip(starts.tolist(), [*starts[1:].tolist(), idx.size], strict=True):
        _count(w, 1)
        perm, memtype, raw = attrs[int(cls[s])]
        va = base + (int(idx[s]) << level.shift)
        yield Mapping(va, (e - s) * span, int(addr[s]), span, perm, memtype, raw)


# ------------------------------------------------------------------------ the comparison
def _collect(rows: Iterator[Mapping]) -> tuple[list[Mapping], str | None]:
    out: list[Mapping] = []
    try:
        for m in rows:
            out.append(m)
    except LimitError:
        return out, "limit"
    return out, None


def same(mem: Any, mode: Any, roots: Any, batch: int = 1 << 16, **kw: Any) -> list[Mapping]:
    """Columns, the Mapping view and the oracle agree on rows, stats and the limit error."""
    s_new, s_view, s_old = EnumStats(), EnumStats(), EnumStats()
    batches: list[RunColumns] = []
    error = None
    try:
        for b in mapping_columns(mem, mode, roots, stats=s_new, batch=batch, **kw):
            batches.append(b)
    except LimitError:
        error = "limit"
    for b in batches:
        assert (b.attrs is not None) == bool(kw.get("raw_attrs")) and len(b) > 0
        assert all(len(getattr(b, f)) == len(b) for f in ("size", "pa", "page_size", "perm"))
        assert int(b.memtype.max()) < len(b.memtypes)
    got = list(concat(batches).rows()) if batches else []
    old, old_error = _collect(old_mappings(mem, mode, roots, stats=s_old, **kw))
    assert (got, error) == (old, old_error)
    assert asdict(s_new) == asdict(s_old)
    view, view_error = _collect(mappings(mem, mode, roots, stats=s_view, **kw))
    assert (view, view_error) == (old, old_error)
    return got


FILTERS = [
    Filter(),
    Filter(need=Perm.WRITE),
    Filter(forbid=Perm.EXEC | Perm.USER),
    Filter(need=Perm.USER, forbid=Perm.WRITE),
    Filter(pa_range=(0x300000, 0x340000)),
    Filter(pa_range=(0x200000, 1 << 64)),
    Filter(sizes=frozenset({4096})),
    Filter(sizes=frozenset({1 << 21, 1 << 22, 1 << 30})),
]


@pytest.mark.parametrize("name", MODES)
def test_random_spaces_every_filter(name: str) -> None:
    for seed in range(4):
        b = random_space(name, random.Random(seed))
        for filt in FILTERS:
            for raw_attrs in (False, True):
                same(b.mem, b.mode, b.space.roots, filt=filt, raw_attrs=raw_attrs)
        rows = same(b.mem, b.mode, b.space.roots, batch=1)  # every run carried across batches
        assert rows
        for m in rows[:3]:
            lo = m.va + (m.size >> 1)
            same(b.mem, b.mode, b.space.roots, va_range=(lo, lo + 0x5000), raw_attrs=True)


@pytest.mark.parametrize("name", MODES)
def test_runs_agree_with_walks(name: str) -> None:
    b = random_space(name, random.Random(7))
    rows = same(b.mem, b.mode, b.space.roots)
    for m in rows:
        for off in (0, m.size - m.page_size):
            got = walk(b.mem, b.mode, b.space.roots, m.va + off)
            assert (got.pa, got.page_size, got.perm) == (m.pa + off, m.page_size, m.perm)


def _pages(n_tables: int, seed: int) -> tuple[PhysicalMemory, Any, tuple[int, ...]]:
    """x86-64, ``n_tables`` PTs of 4 KiB pages; runs of varied length cross table boundaries
    (a contiguous map whose PAs are cut and shuffled in blocks, and some pages made read-only)."""
    mode, rng = make_mode("x86_64"), random.Random(seed)
    mem = PhysicalMemory(8 << 20)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(1 << 20, 4 << 20))
    va, pages = 0x7F0000000000, n_tables * 512
    space.map_range(va, 1 << 32, pages * 4096, Perm.READ | Perm.WRITE, page_sizes=(4096,)).ignore()
    for _ in range(pages // 300):
        space.protect(va + rng.randrange(pages) * 4096, Perm.READ).ignore()
    pts = sorted({space.walk(va + (i << 21)).steps[-1].entry_pa & ~0xFFF for i in range(n_tables)})
    leaves = np.concatenate([mem.read_table(pt, 512, 8) for pt in pts])
    cuts = sorted(rng.sample(range(1, leaves.size), leaves.size // 700))
    blocks = np.split(leaves, cuts)
    rng.shuffle(blocks)
    leaves = np.concatenate(blocks)
    for k, pt in enumerate(pts):
        mem.write_table(pt, leaves[k * 512 : (k + 1) * 512], 8)
    return mem, mode, tuple(space.roots)


@pytest.mark.parametrize("gather", [512, 3 * 512, 1 << 15])
def test_gathers_and_batches_cut_anywhere(monkeypatch: pytest.MonkeyPatch, gather: int) -> None:
    monkeypatch.setattr(ec, "GATHER", gather)
    mem, mode, roots = _pages(40, seed=gather)
    rows = same(mem, mode, roots)
    assert any(m.size > 512 * 4096 for m in rows)  # runs that span tables
    for batch in (1, 7, 1000):
        same(mem, mode, roots, batch=batch)
    same(mem, mode, roots, filt=Filter(forbid=Perm.WRITE), raw_attrs=True)
    same(mem, mode, roots, filt=Filter(pa_range=((1 << 32) + 0x10000, (1 << 32) + 0x90000)))
    for limit in (len(rows) - 1, len(rows) + 5):
        same(mem, mode, roots, limit=limit)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Images:
    d = tmp_path_factory.mktemp("columns")
    return {
        "fanout": str(fanout(d)),
        "same": str(fanout(d, same_frame=True, name="same.img")),
        "selfref": str(self_ref(d)),
        "small": str(fanout(d, fan=(1, 4, 512), name="small.img")),
        "long": str(fanout(d, fan=(1, 5, 512), name="long.img")),
        "end": str(straddle_end(d)),
        "core": str(straddle_core(d)),
    }


@pytest.mark.parametrize("name", ["fanout", "same", "selfref", "small", "long"])
def test_shared_subtrees_and_self_references(hostile: Images, name: str) -> None:
    m = load_machine(hostile[name], {})
    for window in [(0, 1 << 27), (0x1234000, 0x1234000 + (1 << 25)), (0x7F000, 0x2000000)]:
        for raw_attrs in (False, True):
            same(m.mem, m.mode, m.roots, va_range=window, raw_attrs=raw_attrs)
        same(m.mem, m.mode, m.roots, va_range=window, filt=Filter(pa_range=(0x3000, 0x6000)))
    for limit in (10, 5000):
        same(m.mem, m.mode, m.roots, limit=limit)
        same(m.mem, m.mode, m.roots, limit=limit, distinct=True, batch=3)
    same(m.mem, m.mode, m.roots, distinct=True)


def test_memo_kept_or_walked_again(monkeypatch: pytest.MonkeyPatch, hostile: Images) -> None:
    m = load_machine(hostile["small"], {})
    for memo_rows in (1, 100, 1 << 12):
        monkeypatch.setattr(ec, "MEMO_ROWS", memo_rows)
        same(m.mem, m.mode, m.roots)
        same(m.mem, m.mode, m.roots, filt=Filter(need=Perm.WRITE), raw_attrs=True)


@pytest.mark.parametrize("name", ["end", "core"])
def test_partial_tables(hostile: Images, name: str) -> None:
    m = load_machine(hostile[name], {})
    stats = EnumStats()
    rows = concat(list(mapping_columns(m.mem, m.mode, m.roots, stats=stats))).rows()
    assert [(r.va, r.size) for r in rows] == [(0, 256 * 4096)]
    assert list(stats.partial) == [(0x4000, 1)]
    same(m.mem, m.mode, m.roots)
    same(m.mem, m.mode, m.roots, va_range=(0x80000, 0x200000), raw_attrs=True)


def _entry(mode: Any, rng: random.Random) -> int:
    """Nothing, random bits, or a table or leaf entry into the image with flags flipped."""
    levels, kind = mode.halves[0].levels, rng.randrange(4)
    perm = Perm(rng.getrandbits(5)) | Perm.READ
    if kind == 0:
        return 0
    if kind == 1:
        return rng.getrandbits(8 * mode.entry_size)
    if kind == 2:
        raw = mode.encode_table(rng.choice((0x1000, 0x2000, 0x3000)), levels[0], perm)
    else:
        raw = mode.encode_leaf(rng.randrange(64) << 12, levels[-1], perm)
    return raw ^ (rng.getrandbits(8) << 1 if rng.random() < 0.3 else 0)


@pytest.mark.parametrize("name", ["x86", "pae", "x86_64", "aarch64", "sv32", "sv39"])
def test_random_entries_as_tables(tmp_path: Path, name: str) -> None:
    """Three pages of entries pointing back into themselves, leaves, faults and noise."""
    mode = make_mode(name)
    for seed in range(6):
        rng = random.Random(seed)
        words = [_entry(mode, rng) for _ in range(3 * 4096 // mode.entry_size)]
        data = b"".join(w.to_bytes(mode.entry_size, "little") for w in words)
        m = load_machine(str(random_tables(tmp_path, name, data, name=f"r{seed}.img")), {})
        for half in mode.halves:  # windows where a random walk goes at least three levels deep
            for _ in range(64):
                va = rng.randrange(half.va_start, half.va_end)
                if len(walk(m.mem, m.mode, m.roots, va).steps) >= min(3, len(half.levels)):
                    break
            lo = max(half.va_start, va & ~((1 << half.levels[1].shift) - 1))
            same(m.mem, m.mode, m.roots, va_range=(lo, lo + (1 << 28)), limit=1 << 13)
            same(m.mem, m.mode, m.roots, va_range=(lo, lo + (1 << 26)), raw_attrs=True)


def test_merge_rule_and_carry() -> None:
    """Each field breaks a run; a run continued over batch boundaries is one run."""
    rw, r = Perm.READ | Perm.WRITE, Perm.READ
    base = Mapping(0x1000, 0x1000, 0x9000, 0x1000, rw, None, 7)
    variants = [
        replace(base, va=0x2000, pa=0xA000),  # continues
        replace(base, va=0x2000, pa=0xB000),
        replace(base, va=0x3000, pa=0xA000),
        replace(base, va=0x2000, pa=0xA000, perm=r),
        replace(base, va=0x2000, pa=0xA000, memtype="PAT1=0x1"),
        replace(base, va=0x2000, pa=0xA000, attrs=8),
        replace(base, va=0x2000, pa=0xA000, page_size=0x2000),
    ]
    for k, nxt in enumerate(variants):
        cols = RunColumns.from_rows([base, nxt], with_attrs=True)
        assert len(cols.merged()) == (1 if k == 0 else 2)
        assert next(cols.merged().rows()).size == (0x2000 if k == 0 else 0x1000)
    pages = [replace(base, va=0x1000 * i, pa=0x1000 * i) for i in range(10)]
    parts = [RunColumns.from_rows(pages[i : i + 3], with_attrs=True) for i in range(0, 10, 3)]
    for size in (1, 2, 100):
        out = list(merged_batches(iter(parts), size))
        assert [(m.va, m.size) for b in out for m in b.rows()] == [(0, 0xA000)]
