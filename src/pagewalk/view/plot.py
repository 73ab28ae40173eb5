"""Plots of an address space with matplotlib: page sizes, table memory, TLB hit rates.

``page-sizes`` counts the pages of the columnar enumeration by leaf size per VA half (or per named
region); ``table-memory`` is the stats report's bytes of tables per level
(:mod:`pagewalk.inspect.stats`); ``tlb`` runs a synthetic trace (a working set walked with a
fixed stride, twice) through the MMU model (:mod:`pagewalk.mmu`: TLB, walk on a miss, rights
check) over the space's mapped pages and plots the hit rate. Sizes and levels are those of Intel
SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec. matplotlib is imported only here,
with the Agg backend (no display needed); it is the ``plot`` extra.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pagewalk.errors import ConfigError, PagingError

if TYPE_CHECKING:
    from pagewalk.machine.machine import Machine
    from pagewalk.view.space import Region

KINDS = ("page-sizes", "table-memory", "tlb")
#: strides (in pages) and working sets (in pages) of the TLB trace
STRIDES = (1, 2, 8, 64)
WORKING_SETS = (8, 32, 128, 512, 2048)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError("plot needs matplotlib: pip install 'pagewalk[plot]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _size_label(n: int) -> str:
    for shift, unit in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def page_sizes(machine: Machine, regions: Sequence[Region] = ()) -> dict[str, dict[int, int]]:
    """Pages by leaf size, per region (or per VA half when there are no regions)."""
    groups = [(r[0], r[1], r[2]) for r in regions] or [
        (h.va_start, h.va_end, f"{h.name} {h.va_start:#x}") for h in machine.mode.halves
    ]
    out: dict[str, dict[int, int]] = {name: {} for _, _, name in groups}
    for batch in machine.map_columns():
        pages = batch.size // batch.page_size
        for lo, hi, name in groups:
            pick = (batch.va >= np.uint64(lo)) & (batch.va <= np.uint64(hi - 1))
            for size in np.unique(batch.page_size[pick]).tolist():
                n = int(pages[pick & (batch.page_size == size)].sum())
                out[name][int(size)] = out[name].get(int(size), 0) + n
    return out


class _Overlay:
    """A dump's entries with the MMU's A/D writes kept aside (the dump is never written)."""

    def __init__(self, mem: Any) -> None:
        self.mem = mem
        self.written: dict[int, int] = {}

    def read_entry(self, pa: int, entry_size: int) -> int:
        got = self.written.get(pa)
        return int(self.mem.read_entry(pa, entry_size)) if got is None else got

    def write_entry(self, pa: int, entry_size: int, value: int) -> None:
        self.written[pa] = value


def tlb_rates(machine: Machine) -> dict[int, list[tuple[int, float]]]:
    """Per stride (pages): ``(working set in pages, hit rate)`` of the trace over mapped pages."""
    from pagewalk.mmu.core import MMU

    page = machine.mode.page_size
    starts: list[int] = []
    need = max(WORKING_SETS) * max(STRIDES)
    for batch in machine.map_columns():
        for va, size in zip(batch.va.tolist(), batch.size.tolist(), strict=True):
            starts.extend(range(va, va + min(size, (need - len(starts)) * page), page))
            if len(starts) >= need:
                break
        if len(starts) >= need:
            break
    if not starts:
        raise ConfigError(f"{machine.source}: no mapped page to run a TLB trace over")
    out: dict[int, list[tuple[int, float]]] = {}
    for stride in STRIDES:
        for ws in WORKING_SETS:
            mmu = MMU(_Overlay(machine.mem), machine.mode)
            mmu.cpu.load_roots(machine.mode, machine.roots)
            trace = [starts[(i * stride) % len(starts)] for i in range(ws)] * 2
            for va in trace:
                try:
                    mmu.access(va, "read", "supervisor")
                except PagingError:
                    continue
            st = mmu.tlb.stats
            total = st.hits + st.misses
            out.setdefault(stride, []).append((ws, st.hits / total if total else 0.0))
    return out


def figure(machine: Machine, kind: str, regions: Sequence[Region] = ()) -> Any:
    """The matplotlib figure of ``kind`` for ``machine``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if kind == "page-sizes":
        data = page_sizes(machine, regions)
        sizes = sorted({s for d in data.values() for s in d})
        width = 0.8 / max(1, len(sizes))
        for k, size in enumerate(sizes):
            xs = [i + k * width for i in range(len(data))]
            ax.bar(xs, [d.get(size, 0) for d in data.values()], width, label=_size_label(size))
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(data))], list(data), fontsize=8)
        ax.set_ylabel("pages")
        ax.set_title(f"pages by size: {machine.source}")
        ax.legend(title="page size")
    elif kind == "table-memory":
        from pagewalk.inspect.stats import stats

        levels = list(stats(machine.mem, machine.mode, machine.roots).levels.values())
        ax.bar([lv.name for lv in levels], [lv.bytes for lv in levels])
        ax.set_ylabel("bytes of tables")
        ax.set_title(f"table memory per level: {machine.source}")
    elif kind == "tlb":
        for stride, points in tlb_rates(machine).items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                    label=f"stride {stride} page(s)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("working set (pages touched, each twice)")
        ax.set_ylabel("TLB hit rate")
        ax.set_ylim(0, 1)
        ax.set_title(f"TLB hit rate (MMU model): {machine.source}")
        ax.legend()
    else:
        raise ConfigError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    fig.tight_layout()
    return fig


def render_plot(machine: Machine, kind: str, fmt: str, regions: Sequence[Region] = ()) -> bytes:
    """The plot as PNG or SVG bytes."""
    plt = _pyplot()
    fig = figure(machine, kind, regions)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    plt.close(fig)
    return buf.getvalue()
