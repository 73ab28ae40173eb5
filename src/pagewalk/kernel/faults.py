"""The kernel's page-fault handler: demand paging, copy-on-write, and fatal faults.

The handler is an object the kernel holds (:class:`FaultHandler`), built on the few services it
needs from the kernel (:class:`KernelServices`), so it knows nothing of how the kernel boots or
keeps its processes. An access goes through the CPU's access check; a
:class:`~pagewalk.errors.PageFault` comes back to the handler, which looks up the faulting area.
A not-present page in a lazy area gets a fresh zeroed frame (PowerNex's ``MapFreeMemory``); a
write to a copy-on-write page gets a private copy, or, when this process is the frame's last
user, the page is simply made writable again. Anything else (no area, a permission the area does
not grant, or a profile that does no demand paging, such as Redox) is fatal and reported with
the full walk. A copy-on-write fork, which sets up the pages the handler later splits, lives here
too. Every change goes out with its flush (Intel SDM vol. 3A §4.10.4, Arm ARM D8.13 TLBI, the
RISC-V privileged spec's SFENCE.VMA). Fault details follow Intel SDM vol. 3A §4.7, Arm ARM D8
fault status codes and the RISC-V privileged spec page-fault causes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from pagewalk.alloc.base import FRAME_SIZE
from pagewalk.enumerate import mappings
from pagewalk.errors import PageFault, hx
from pagewalk.formats import PagingMode, Perm
from pagewalk.kernel.process import Process, ProcessFault, Vma
from pagewalk.walk import Walk, walk

if TYPE_CHECKING:
    from pagewalk.flush import Flush
    from pagewalk.kernel.frames import FrameRefs
    from pagewalk.kernel.profile import Profile
    from pagewalk.memory.physical import PhysicalMemory

#: how many faults one access may take before the handler is declared stuck
MAX_FAULTS = 3


class KernelServices(Protocol):
    """What the fault handler needs from the kernel it serves."""

    @property
    def profile(self) -> Profile:
        """The fault policy (``demand_paging``) and its name."""

    @property
    def mem(self) -> PhysicalMemory:
        """Physical memory."""

    @property
    def mode(self) -> PagingMode:
        """The paging mode."""

    @property
    def refs(self) -> FrameRefs:
        """Users of each data frame."""

    def data_frame(self) -> int:
        """One frame for a process's data, with one user."""

    def flush(self, flush: Flush) -> None:
        """Hand a flush to the CPU side."""

    def log(self, kind: str, message: str, **details: Any) -> None:
        """Record an event."""

    def switch_to(self, proc: Process) -> None:
        """Load ``proc``'s tables into the CPU."""

    def check_access(self, va: int, kind: str, user: bool) -> int:
        """One access through the CPU's current tables; raises PageFault."""

    def spawn_empty(self, name: str) -> Process:
        """A process with a fresh space and no areas yet."""


class FaultHandler:
    """Serve page faults for the kernel behind ``kernel``, by its profile's policy."""

    def __init__(self, kernel: KernelServices) -> None:
        self.kernel = kernel

    def access(self, proc: Process, va: int, kind: str = "read", user: bool = True) -> int:
        """Access ``va`` as ``proc`` would; returns the PA, handling faults on the way."""
        k = self.kernel
        k.switch_to(proc)
        last: PageFault | None = None
        for _ in range(MAX_FAULTS):
            try:
                return k.check_access(va, kind, user)
            except PageFault as fault:
                last = fault
                self.handle(proc, fault, kind, user)
        assert last is not None
        raise ProcessFault(last, walk(k.mem, k.mode, proc.space.roots, va), "fault loop")

    def handle(self, proc: Process, fault: PageFault, kind: str, user: bool) -> None:
        """Serve ``fault`` or raise :class:`ProcessFault` with the walk."""
        k = self.kernel
        va = fault.va
        page = va & ~(FRAME_SIZE - 1)
        vma = proc.vma_at(va)
        trace = walk(k.mem, k.mode, proc.space.roots, va)
        policy = k.profile
        if vma is None:
            self._fatal(fault, trace, f"no memory area at {hx(va)}")
        if not policy.demand_paging and not vma.cow:
            self._fatal(fault, trace, f"{policy.name} does no demand paging: a page fault is fatal")
        if not _allowed(vma, kind, user):
            self._fatal(fault, trace, f"the {vma.name or vma.kind} area is {vma.perm.letters()}")
        if trace.leaf is None and vma.lazy:
            pa = k.data_frame()
            k.mem.zero(pa, FRAME_SIZE)
            k.flush(proc.space.map(page, pa, FRAME_SIZE, vma.perm))
            k.log("demand", f"pid {proc.pid}: demand-paged {hx(page)} -> {hx(pa)}", va=va, pa=pa)
            return
        if trace.leaf is not None and kind == "write" and vma.cow:
            self._break_cow(proc, vma, page, trace.leaf.address)
            return
        self._fatal(fault, trace, "the handler has nothing to do for this fault")

    def _fatal(self, fault: PageFault, trace: Walk, why: str) -> NoReturn:
        self.kernel.log("fatal", f"{fault} ({why})", va=fault.va)
        raise ProcessFault(fault, trace, why)

    def _break_cow(self, proc: Process, vma: Vma, page: int, frame: int) -> None:
        """Give ``proc`` a private copy of ``frame`` (or keep it if it is the last user)."""
        k = self.kernel
        if k.refs.count(frame) == 1:
            k.flush(proc.space.protect(page, vma.perm))
            k.log("cow", f"pid {proc.pid}: last owner of {hx(frame)} keeps it at {hx(page)}")
            return
        new = k.data_frame()
        k.mem.copy(new, frame, FRAME_SIZE)
        k.flush(proc.space.remap(page, new))
        k.flush(proc.space.protect(page, vma.perm))
        k.refs.release(frame)
        k.log("cow", f"pid {proc.pid}: copied {hx(frame)} -> {hx(new)} for {hx(page)}")

    def fork(self, parent: Process) -> Process:
        """A copy-on-write child: private writable pages become shared and read-only in both."""
        k = self.kernel
        child = k.spawn_empty(f"{parent.name}-child")
        for vma in parent.vmas:
            copy = Vma(
                vma.start, vma.size, vma.perm, vma.kind, vma.name, vma.lazy, vma.cow, vma.shm
            )
            child.vmas.append(copy)
            private = vma.shm is None and vma.kind != "phys"
            writable = bool(vma.perm & Perm.WRITE) and private
            runs = list(mappings(k.mem, k.mode, parent.space.roots, va_range=(vma.start, vma.end)))
            for run in runs:
                perm = vma.perm & ~Perm.WRITE if writable else vma.perm
                if writable:
                    k.flush(parent.space.protect_range(run.va, run.size, perm))
                k.flush(child.space.map_range(run.va, run.pa, run.size, perm))
                if vma.kind != "phys":
                    for pa in range(run.pa, run.pa + run.size, FRAME_SIZE):
                        k.refs.share(pa)
            if writable:
                vma.cow = copy.cow = True
        k.log("fork", f"forked pid {parent.pid} -> pid {child.pid} (copy-on-write)")
        return child

    def read(self, proc: Process, va: int, n: int) -> bytes:
        """Read ``n`` bytes at ``va`` as ``proc`` (page by page, faults handled)."""
        out = bytearray()
        while n > 0:
            chunk = min(n, FRAME_SIZE - va % FRAME_SIZE)
            out += self.kernel.mem.read(self.access(proc, va, "read"), chunk)
            va, n = va + chunk, n - chunk
        return bytes(out)

    def write(self, proc: Process, va: int, data: bytes) -> None:
        """Write ``data`` at ``va`` as ``proc`` (page by page, faults handled)."""
        while data:
            chunk = min(len(data), FRAME_SIZE - va % FRAME_SIZE)
            self.kernel.mem.write(self.access(proc, va, "write"), data[:chunk])
            va, data = va + chunk, data[chunk:]


def _allowed(vma: Vma, kind: str, user: bool) -> bool:
    need = {"read": Perm.READ, "write": Perm.WRITE, "exec": Perm.EXEC}[kind]
    return bool(vma.perm & need) and (not user or bool(vma.perm & Perm.USER))


__all__ = ["MAX_FAULTS", "FaultHandler", "KernelServices"]
