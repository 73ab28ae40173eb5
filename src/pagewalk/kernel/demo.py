"""The boot demo: what ``pagewalk boot`` runs and reports, as data.

It boots a profile, starts processes, then shows the memory manager's behaviours one at a time,
each checked through the CPU's access path: demand paging (or, for profiles without it, the fatal
fault), copy-on-write fork (or the eager copy), shared memory, and isolation (another process's
frames are out of reach, and a user access to a kernel page faults). The results are plain data
(:class:`DemoReport`) so the human and JSON renderers show the same run. Faults follow Intel SDM
vol. 3A §4.7, Arm ARM D8 fault status codes and the RISC-V privileged spec page-fault causes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pagewalk.errors import PagingError, hx
from pagewalk.formats import Perm
from pagewalk.kernel.mm import Kernel
from pagewalk.kernel.process import Process, ProcessFault
from pagewalk.walk import Walk, walk


@dataclass
class Check:
    """One demonstrated behaviour and whether it held."""

    name: str
    ok: bool
    detail: str
    fault: dict[str, Any] | None = None


@dataclass
class DemoReport:
    """Everything the demo did."""

    checks: list[Check] = field(default_factory=list)
    walk: Walk | None = None
    walk_process: int = 0

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return all(c.ok for c in self.checks)


def _code(exc: ProcessFault) -> str:
    """The architecture's fault code, for the report."""
    code = exc.fault.code
    return "" if code is None else f" (code {hx(code)})"


def _fault_json(exc: ProcessFault) -> dict[str, Any]:
    out = exc.fault.to_json()
    out.update({"va": exc.fault.va, "access": exc.fault.access, "why": exc.why})
    return out


def run_demo(kernel: Kernel, n_processes: int = 2) -> DemoReport:
    """Start ``n_processes`` processes and run every demonstration."""
    report = DemoReport()
    procs = [kernel.spawn(f"proc{i}", bytes([0x90 + i]) * 64) for i in range(max(n_processes, 2))]
    first, second = procs[0], procs[1]
    heap = first.vmas[1].start
    report.checks.append(_demand(kernel, first, heap))
    report.checks.append(_cow(kernel, first, heap))
    report.checks.append(_shared(kernel, first, second))
    report.checks.extend(_isolation(kernel, first, second, heap))
    report.checks.append(_fatal(kernel, second))
    report.walk = walk(kernel.mem, kernel.mode, first.space.roots, heap + 0x10)
    report.walk_process = first.pid
    return report


def _demand(kernel: Kernel, proc: Process, heap: int) -> Check:
    lazy_va = kernel.mmap(proc, 0x4000, Perm.READ | Perm.WRITE)
    before = proc.space.translate(lazy_va)
    try:
        kernel.write(proc, heap, b"hello from the heap")
        kernel.write(proc, lazy_va + 0x1008, b"lazy")
    except ProcessFault as exc:
        wanted = not kernel.profile.demand_paging
        return Check(
            "demand paging",
            wanted,
            f"fatal, as {kernel.profile.name} says: {exc.why}",
            _fault_json(exc),
        )
    after = proc.space.translate(lazy_va + 0x1000)
    if not kernel.profile.demand_paging:
        ok = before is not None and after is not None
        return Check(
            "demand paging", ok, f"{kernel.profile.name} maps eagerly: {hx(lazy_va)} mapped at mmap"
        )
    ok = before is None and after is not None and kernel.read(proc, lazy_va + 0x1000, 8) == bytes(8)
    return Check(
        "demand paging",
        ok,
        f"{hx(lazy_va + 0x1000)} had no frame until touched; now {hx(after or 0)}, zeroed",
    )


def _cow(kernel: Kernel, parent: Process, heap: int) -> Check:
    child = kernel.fork(parent)
    shared_before = parent.space.translate(heap) == child.space.translate(heap)
    kernel.write(child, heap, b"HELLO from the kid!")
    mine = kernel.read(parent, heap, 19)
    theirs = kernel.read(child, heap, 19)
    split = parent.space.translate(heap) != child.space.translate(heap)
    ok = mine == b"hello from the heap" and theirs == b"HELLO from the kid!" and split
    kind = "copy-on-write" if kernel.profile.cow else "eager copy"
    detail = (
        f"{kind}: shared before the write: {shared_before}; "
        f"after: parent {mine!r}, child {theirs!r}"
    )
    kernel.destroy(child)
    return Check("fork", ok and (shared_before == kernel.profile.cow), detail)


def _shared(kernel: Kernel, a: Process, b: Process) -> Check:
    shm = kernel.shm_create(0x2000)
    va_a = kernel.shm_map(a, shm, Perm.READ | Perm.WRITE)
    va_b = kernel.shm_map(b, shm, Perm.READ | Perm.WRITE)
    kernel.write(a, va_a + 0x1004, b"shared!")
    seen = kernel.read(b, va_b + 0x1004, 7)
    kernel.shm_unlink(shm)
    return Check(
        "shared memory",
        seen == b"shared!",
        f"pid {a.pid} wrote at {hx(va_a + 0x1004)}, "
        f"pid {b.pid} read {seen!r} at {hx(va_b + 0x1004)}",
    )


def _fatal(kernel: Kernel, proc: Process) -> Check:
    """A null-pointer read: no area there, so every profile's handler must refuse it."""
    try:
        kernel.access(proc, 0x10, "read", user=True)
    except ProcessFault as exc:
        levels = " -> ".join(f"{s.level.name}[{s.index}]={s.raw:#x}" for s in exc.walk.steps)
        return Check(
            "fatal fault",
            True,
            f"null read: {exc.fault.kind} fault, {exc.why}; walk {levels}",
            _fault_json(exc),
        )
    return Check("fatal fault", False, "a read of VA 0x10 succeeded")


def _isolation(kernel: Kernel, a: Process, b: Process, heap: int) -> list[Check]:
    own = kernel.read(b, heap, 19)
    pa_a, pa_b = a.space.translate(heap), b.space.translate(heap)
    checks = [
        Check(
            "isolation: same VA, own frames",
            pa_a != pa_b and own != b"hello from the heap",
            f"{hx(heap)} is {hx(pa_a or 0)} in pid {a.pid} and {hx(pa_b or 0)} in pid {b.pid}",
        )
    ]
    kva = kernel.kernel_maps[0].va
    try:
        kernel.access(b, kva, "read", user=True)
        checks.append(Check("isolation: kernel pages", False, f"user read of {hx(kva)} succeeded"))
    except ProcessFault as exc:
        checks.append(
            Check(
                "isolation: kernel pages",
                True,
                f"user read of kernel {hx(kva)}: {exc.fault.kind} fault{_code(exc)}",
                _fault_json(exc),
            )
        )
    except PagingError as exc:
        checks.append(Check("isolation: kernel pages", False, str(exc)))
    return checks
