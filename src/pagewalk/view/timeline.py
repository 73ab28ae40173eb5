"""The boot as a timeline a student can step through: the kernel's events with the TLB beside them.

:class:`Recorder` watches a :class:`~pagewalk.kernel.Kernel` from before it boots: every event the
kernel logs (early tables, final tables, processes, demand paging, copy-on-write...) is kept with
the TLB's counters at that moment and the flushes made since the event before (what the kernel
told the TLB, Intel SDM vol. 3A §4.10.4, Arm ARM D8.13, RISC-V ``SFENCE.VMA``), and the early
tables are captured as an address space of the report just before they are freed. It only wraps
the kernel instance's ``log`` and ``flush``; the kernel itself is unchanged.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from pagewalk.view.page import render
from pagewalk.view.space import Section, section

if TYPE_CHECKING:
    from pagewalk.flush import Flush
    from pagewalk.kernel import Kernel
    from pagewalk.kernel.demo import DemoReport


class Recorder:
    """Keeps a timeline of ``kernel``'s events (attach before ``kernel.boot()``)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.steps: list[dict[str, Any]] = []
        self.sections: list[Section] = []
        self._flushes: list[str] = []
        self._last = {"hits": 0, "misses": 0}
        log, flush = kernel.log, kernel.flush

        def on_log(kind: str, message: str, **details: Any) -> None:
            log(kind, message, **details)
            self._event(kind, message, details)

        def on_flush(change: Flush) -> None:
            self._flushes.append(change.describe())
            flush(change)

        kernel.log = on_log  # type: ignore[method-assign]
        kernel.flush = on_flush  # type: ignore[method-assign,assignment]

    def _tlb(self) -> dict[str, Any]:
        mmu = self.kernel.mmu
        st = mmu.tlb.stats
        stale = len(mmu.detector.reports) if mmu.detector is not None else 0
        out = {"hits": st.hits, "misses": st.misses, "walks": st.walks, "stale": stale}
        out["d_hits"] = st.hits - self._last["hits"]
        out["d_misses"] = st.misses - self._last["misses"]
        self._last = {"hits": st.hits, "misses": st.misses}
        return out

    def _event(self, kind: str, message: str, details: dict[str, Any]) -> None:
        k = self.kernel
        step: dict[str, Any] = {"kind": kind, "message": message, "tlb": self._tlb(),
                                "flushes": self._flushes, "space": None}  # fmt: skip
        self._flushes = []
        if kind == "switch" and k.early_space is not None:  # captured before they are freed
            step["space"] = self._capture("early tables", k.early_space.roots)
        self.steps.append(step)

    def _capture(self, name: str, roots: tuple[int, ...]) -> int:
        k = self.kernel
        self.sections.append(section(name, k.mem, k.mode, roots, inspect=False))
        return len(self.sections) - 1

    def report(self, report: DemoReport) -> bytes:
        """The page: the final kernel tables, every live process, and the timeline."""
        k = self.kernel
        assert k.kernel_space is not None
        first = len(self.sections)
        final = self._capture_full("final kernel tables", k.kernel_space.roots)
        by_pid = {}
        for p in k.processes.values():
            by_pid[p.pid] = self._capture_full(f"pid {p.pid} {p.name}", p.space.roots)
        for step in self.steps:
            pid = None
            if step["kind"] == "switch":
                step["space"] = step["space"] if step["space"] is not None else final
            elif step["kind"] in ("process", "demand", "cow", "fork"):
                pid = _pid(step["message"])
            if pid is not None and pid in by_pid:
                step["space"] = by_pid[pid]
        order = [final, *range(first + 1, len(self.sections)), *range(first)]
        renumber = {old: new for new, old in enumerate(order)}
        for step in self.steps:
            if step["space"] is not None:
                step["space"] = renumber[step["space"]]
        extra = {
            "timeline": self.steps,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in report.checks],
            "tlb": k.tlb_stats(),
        }
        title = f"pagewalk boot: {k.profile.name} on {k.mode.describe()}"
        return render([self.sections[i] for i in order], title, extra)

    def _capture_full(self, name: str, roots: tuple[int, ...]) -> int:
        k = self.kernel
        self.sections.append(section(name, k.mem, k.mode, roots))
        return len(self.sections) - 1


def _pid(message: str) -> int | None:
    """The pid a kernel message is about (``pid N`` as the kernel writes it), or None."""
    words = message.replace(",", " ").replace(":", " ").replace("(", " ").split()
    for a, b in itertools.pairwise(words):
        if a == "pid" and b.isdigit():
            return int(b)
    return None
