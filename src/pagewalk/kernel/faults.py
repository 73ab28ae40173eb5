"""The kernel's page-fault handler: demand paging, copy-on-write, and fatal faults.

An access goes through the CPU's access check; a :class:`~pagewalk.errors.PageFault` comes back
to the handler, which looks up the faulting area. A not-present page in a lazy area gets a fresh
zeroed frame (PowerNex's ``MapFreeMemory``); a write to a copy-on-write page gets a private copy,
or, when this process is the frame's last user, the page is simply made writable again. Anything
else (no area, a permission the area does not grant, or a profile that does no demand paging,
such as Redox) is fatal and reported with the full walk. Fault details follow Intel SDM vol. 3A
§4.7, Arm ARM D8 fault status codes and the RISC-V privileged spec page-fault causes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagewalk.alloc.base import FRAME_SIZE
from pagewalk.enumerate import mappings
from pagewalk.errors import PageFault, hx
from pagewalk.formats import Perm
from pagewalk.kernel.mm import Process, ProcessFault, Vma
from pagewalk.walk import walk

if TYPE_CHECKING:
    from pagewalk.kernel.mm import Kernel

#: how many faults one access may take before the handler is declared stuck
MAX_FAULTS = 3


def access(kernel: Kernel, proc: Process, va: int, kind: str = "read", user: bool = True) -> int:
    """Access ``va`` as ``proc`` would; returns the PA, handling faults on the way."""
    kernel.switch_to(proc)
    last: PageFault | None = None
    for _ in range(MAX_FAULTS):
        try:
            return kernel.check_access(va, kind, user)
        except PageFault as fault:
            last = fault
            handle_fault(kernel, proc, fault, kind, user)
    assert last is not None
    raise ProcessFault(last, walk(kernel.mem, kernel.mode, proc.space.roots, va), "fault loop")


def handle_fault(kernel: Kernel, proc: Process, fault: PageFault, kind: str, user: bool) -> None:
    """Serve ``fault`` or raise :class:`ProcessFault` with the walk."""
    va = fault.va
    page = va & ~(FRAME_SIZE - 1)
    vma = proc.vma_at(va)
    trace = walk(kernel.mem, kernel.mode, proc.space.roots, va)
    policy = kernel.profile
    if vma is None:
        _fatal(kernel, fault, trace, f"no memory area at {hx(va)}")
    assert vma is not None
    if not policy.demand_paging and not vma.cow:
        _fatal(kernel, fault, trace, f"{policy.name} does no demand paging: a page fault is fatal")
    if not _allowed(vma, kind, user):
        _fatal(kernel, fault, trace, f"the {vma.name or vma.kind} area is {vma.perm.letters()}")
    if trace.leaf is None and vma.lazy:
        pa = kernel.data_frame()
        kernel.mem.zero(pa, FRAME_SIZE)
        kernel.flush(proc.space.map(page, pa, FRAME_SIZE, vma.perm))
        kernel.log("demand", f"pid {proc.pid}: demand-paged {hx(page)} -> {hx(pa)}", va=va, pa=pa)
        return
    if trace.leaf is not None and kind == "write" and vma.cow:
        _break_cow(kernel, proc, vma, page, trace.leaf.address)
        return
    _fatal(kernel, fault, trace, "the handler has nothing to do for this fault")


def _allowed(vma: Vma, kind: str, user: bool) -> bool:
    need = {"read": Perm.READ, "write": Perm.WRITE, "exec": Perm.EXEC}[kind]
    return bool(vma.perm & need) and (not user or bool(vma.perm & Perm.USER))


def _fatal(kernel: Kernel, fault: PageFault, trace: object, why: str) -> None:
    kernel.log("fatal", f"{fault} ({why})", va=fault.va)
    raise ProcessFault(fault, trace, why)  # type: ignore[arg-type]


def _break_cow(kernel: Kernel, proc: Process, vma: Vma, page: int, frame: int) -> None:
    """Give ``proc`` a private copy of ``frame`` (or keep it if it is the last user)."""
    if kernel.refs.count(frame) == 1:
        kernel.flush(proc.space.protect(page, vma.perm))
        kernel.log("cow", f"pid {proc.pid}: last owner of {hx(frame)} keeps it at {hx(page)}")
        return
    new = kernel.data_frame()
    kernel.mem.copy(new, frame, FRAME_SIZE)
    kernel.flush(proc.space.remap(page, new))
    kernel.flush(proc.space.protect(page, vma.perm))
    kernel.refs.release(frame)
    kernel.log("cow", f"pid {proc.pid}: copied {hx(frame)} -> {hx(new)} for {hx(page)}")


def fork(kernel: Kernel, parent: Process) -> Process:
    """A copy-on-write child: private writable pages become shared and read-only in both."""
    child = kernel.spawn_empty(f"{parent.name}-child")
    for vma in parent.vmas:
        copy = Vma(vma.start, vma.size, vma.perm, vma.kind, vma.name, vma.lazy, vma.cow, vma.shm)
        child.vmas.append(copy)
        private = vma.shm is None and vma.kind != "phys"
        writable = bool(vma.perm & Perm.WRITE) and private
        runs = list(
            mappings(kernel.mem, kernel.mode, parent.space.roots, va_range=(vma.start, vma.end))
        )
        for run in runs:
            perm = vma.perm & ~Perm.WRITE if writable else vma.perm
            if writable:
                kernel.flush(parent.space.protect_range(run.va, run.size, perm))
            kernel.flush(child.space.map_range(run.va, run.pa, run.size, perm))
            if vma.kind != "phys":
                for pa in range(run.pa, run.pa + run.size, FRAME_SIZE):
                    kernel.refs.share(pa)
        if writable:
            vma.cow = copy.cow = True
    kernel.log("fork", f"forked pid {parent.pid} -> pid {child.pid} (copy-on-write)")
    return child


def read(kernel: Kernel, proc: Process, va: int, n: int) -> bytes:
    """Read ``n`` bytes at ``va`` as ``proc`` (page by page, faults handled)."""
    out = bytearray()
    while n > 0:
        chunk = min(n, FRAME_SIZE - va % FRAME_SIZE)
        out += kernel.mem.read(access(kernel, proc, va, "read"), chunk)
        va, n = va + chunk, n - chunk
    return bytes(out)


def write(kernel: Kernel, proc: Process, va: int, data: bytes) -> None:
    """Write ``data`` at ``va`` as ``proc`` (page by page, faults handled)."""
    while data:
        chunk = min(len(data), FRAME_SIZE - va % FRAME_SIZE)
        kernel.mem.write(access(kernel, proc, va, "write"), data[:chunk])
        va, data = va + chunk, data[chunk:]
