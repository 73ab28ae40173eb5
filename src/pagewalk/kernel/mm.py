"""The kernel memory manager shared by every profile: boot, processes, areas, fork and sharing.

Boot follows the "howto steps" of the seL4-style design (seeds/aarch64-sel4-style-mmu.md): take
the firmware memory map, list the RAM, build early tables and install them, build the final
kernel tables (the image with W^X, a direct map of all RAM with the largest pages that fit, the
heap), switch to them with the right flush, then free or keep the early tables. Processes
(:mod:`pagewalk.kernel.process`) share the kernel half (the x86-64 upper half, AArch64's TTBR1,
or a copy of the kernel's entries), get a user layout (program, heap, stack, libraries) and a
program loaded from bytes. Page faults go to the :class:`~pagewalk.kernel.faults.FaultHandler`
the kernel holds (demand paging, copy-on-write, fatal faults with the full walk); each profile
picks the policy its design document describes. Every table change goes out with its flush
(Intel SDM vol. 3A §4.10.4, Arm ARM D8.13 TLBI, the RISC-V privileged spec's SFENCE.VMA); where
the architecture needs break-before-make (Arm ARM D8.16.1) each space gets the kernel's flush
for it. Context switches follow the ASID/PCID rules (Intel SDM vol. 3A §4.10.1, Arm ARM D8.13).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pagewalk.alloc.base import FRAME_SIZE, Usage
from pagewalk.enumerate import mappings
from pagewalk.errors import NotMappedError, PagingError, hx
from pagewalk.flush import Flush
from pagewalk.formats import MemType, PagingMode, Perm, make_mode
from pagewalk.kernel.faults import FaultHandler
from pagewalk.kernel.frames import FrameRefs
from pagewalk.kernel.machine import kernel_regs, ram_runs
from pagewalk.kernel.process import Process, ProcessFault, SharedMemory, Vma
from pagewalk.memory.memmap import MemoryMap
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.mmu import MMU
from pagewalk.mmu.cpu import CPU
from pagewalk.space import AddressSpace

if TYPE_CHECKING:
    from pagewalk.kernel.profile import Profile


@dataclass
class Event:
    """One thing the kernel did, for the boot report."""

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class Kernel:
    """A running kernel memory manager configured by a profile.

    Args:
        profile: the seed kernel's design (mode, layout, allocator, fault policy).
        ram: RAM size in bytes when no memory map is given.
        memmap: the firmware memory map (the profile's default map of ``ram`` otherwise).
    """

    def __init__(
        self, profile: Profile, *, ram: int | None = None, memmap: MemoryMap | None = None
    ) -> None:
        self.profile = profile
        self.memmap = memmap if memmap is not None else profile.memory_map(ram or profile.ram)
        self.mem = PhysicalMemory(regions=ram_runs(self.memmap))
        self.mode: PagingMode = make_mode(profile.mode)
        self.mmu = MMU(self.mem, self.mode, regs=kernel_regs(self.mode), checking=True)
        self.cpu: CPU = self.mmu.cpu
        self.events: list[Event] = []
        self.frames = profile.make_allocator(self)
        self.refs = FrameRefs(self.frames)
        self.usage_at_boot: Usage | None = None
        self.kernel_maps: list[Any] = []
        self.kernel_space: AddressSpace | None = None
        self.early_space: AddressSpace | None = None
        self.processes: dict[int, Process] = {}
        self.current: Process | None = None
        self.shared: list[SharedMemory] = []
        self.library: SharedMemory | None = None
        self.faults = FaultHandler(self)
        self._pids = itertools.count(1)
        self._shm_ids = itertools.count(1)

    # ------------------------------------------------------------------------ boot
    def log(self, kind: str, message: str, **details: Any) -> None:
        """Record an event."""
        self.events.append(Event(kind, message, details))

    def flush(self, flush: Flush) -> None:
        """Hand a flush to the CPU side: the MMU's TLB and stale-entry detector."""
        flush.apply(self.mmu)

    def _own(self, space: AddressSpace) -> AddressSpace:
        """Give the kernel's flush to ``space`` as its break-before-make step where the
        architecture requires one (AArch64, Arm ARM D8.16.1): a remap, a split of a live block
        or a change of memory type then goes invalid, TLBI, new entry."""
        if self.mode.facts.needs_bbm:
            space.bbm = self.flush
        return space

    def boot(self) -> Kernel:
        """Run the boot sequence: early tables, final tables, switch, early tables dropped."""
        p = self.profile
        self.log(
            "boot",
            f"memory map: {len(self.memmap)} regions, {hx(self.memmap.usable_bytes())} usable",
        )
        self.early_space = self._own(AddressSpace(self.mode, self.mem, self.frames))
        for m in p.early_mappings(self):
            self.flush(self.early_space.map_range(m.va, m.pa, m.size, m.perm))
            self.log("early", f"early map {m.name}: {hx(m.va)}+{hx(m.size)} -> {hx(m.pa)}")
        self.mmu.attach(self.early_space)
        self.flush(Flush("install early tables", everything=True))
        space = self._own(AddressSpace(self.mode, self.mem, self.frames))
        self.kernel_maps = p.kernel_mappings(self)
        for m in self.kernel_maps:
            flush = space.map_range(m.va, m.pa, m.size, m.perm, m.memtype)
            self.flush(flush)
            self.log(
                "kernel", f"map {m.name}: {hx(m.va)}+{hx(m.size)} -> {hx(m.pa)} {m.perm.letters()}"
            )
        self.kernel_space = space
        self.mmu.attach(space)
        self.flush(Flush("switch to final kernel tables", everything=True))
        self.log("switch", f"switched to final tables at {hx(space.roots[0])}")
        if not p.keep_early:
            self.flush(self.early_space.destroy())
            self.log("early", "early tables freed")
        self.library = self._load_library(p.library_image())
        self.usage_at_boot = self.frames.usage()
        return self

    def _load_library(self, image: bytes) -> SharedMemory:
        """The shared library every process maps read-only at its layout's library address."""
        frames = []
        for off in range(0, max(len(image), 1), FRAME_SIZE):
            pa = self.refs.alloc(**self.profile.library_alloc_kwargs)
            self.mem.zero(pa, FRAME_SIZE)
            self.mem.write(pa, image[off : off + FRAME_SIZE])
            frames.append(pa)
        library = SharedMemory(next(self._shm_ids), frames)
        self.log("boot", f"shared library: {len(frames)} frame(s) at {hx(frames[0])}")
        return library

    # ------------------------------------------------------------------- processes
    def spawn(self, name: str, program: bytes = b"\xf4") -> Process:
        """Create a process sharing the kernel half, with its layout and program loaded."""
        self._kernel()  # booted, or refuse before a pid is taken
        proc = self.spawn_empty(name)
        pid = proc.pid
        u = self.profile.user_layout
        text = -(-max(len(program), 1) // FRAME_SIZE) * FRAME_SIZE
        self._add_vma(
            proc, Vma(u.program, text, Perm.READ | Perm.EXEC | Perm.USER, "program", "text")
        )
        self._populate(proc, proc.vmas[-1], program)
        lazy = self.profile.demand_paging
        rw = Perm.READ | Perm.WRITE | Perm.USER
        self._add_vma(proc, Vma(u.program + text, u.heap_size, rw, "heap", "heap", lazy=lazy))
        self._add_vma(
            proc, Vma(u.stack_top - u.stack_size, u.stack_size, rw, "stack", "stack", lazy=lazy)
        )
        for vma in proc.vmas[1:]:
            if not vma.lazy:
                self._populate(proc, vma, b"")
        if self.library is not None:
            rx = Perm.READ | Perm.EXEC
            self.shm_map(proc, self.library, rx, va=u.libs, kind="lib", name="libshared")
        self.log("process", f"spawned {name} (pid {pid}, asid {proc.asid})", pid=pid)
        return proc

    def data_frame(self) -> int:
        """One frame for a process's data, with one user."""
        return self.refs.alloc(**self.profile.data_alloc_kwargs)

    def spawn_empty(self, name: str) -> Process:
        """A process with a fresh space (kernel half shared) and no areas yet."""
        pid = next(self._pids)
        space = self._own(self.profile.process_space(self, self._kernel()))
        proc = Process(pid, name, space, self.profile.asid_for(pid))
        self.processes[pid] = proc
        return proc

    def fork(self, parent: Process) -> Process:
        """A child: copy-on-write when the profile does it, an eager copy otherwise."""
        if self.profile.cow:
            return self.faults.fork(parent)
        child = self.spawn_empty(f"{parent.name}-child")
        for vma in parent.vmas:
            copy = self._add_vma(
                child, Vma(vma.start, vma.size, vma.perm, vma.kind, vma.name, vma.lazy)
            )
            if vma.shm is not None:
                child.vmas.remove(copy)
                self.shm_map(child, vma.shm, vma.perm, vma.start, kind=vma.kind, name=vma.name)
                continue
            for run in mappings(
                self.mem, self.mode, parent.space.roots, va_range=(vma.start, vma.end)
            ):
                for off in range(0, run.size, FRAME_SIZE):
                    pa = self.data_frame()
                    self.mem.copy(pa, run.pa + off, FRAME_SIZE)
                    self.flush(child.space.map(run.va + off, pa, FRAME_SIZE, vma.perm))
        self.log("fork", f"forked pid {parent.pid} -> pid {child.pid} (eager copy)")
        return child

    def access(self, proc: Process, va: int, kind: str = "read", user: bool = True) -> int:
        """Access ``va`` as ``proc``; faults go to the handler. Returns the PA."""
        return self.faults.access(proc, va, kind, user)

    def read(self, proc: Process, va: int, n: int) -> bytes:
        """Read ``n`` bytes of ``proc``'s memory through the MMU."""
        return self.faults.read(proc, va, n)

    def write(self, proc: Process, va: int, data: bytes) -> None:
        """Write ``data`` into ``proc``'s memory through the MMU."""
        self.faults.write(proc, va, data)

    def tlb_stats(self) -> dict[str, Any]:
        """The TLB's statistics (and the stale-TLB detector's count)."""
        st = self.mmu.tlb.stats
        out: dict[str, Any] = {
            "hits": st.hits,
            "misses": st.misses,
            "walks": st.walks,
            "reads_per_walk": round(st.reads_per_walk, 2),
            "evictions": st.evictions,
            "hit_rate": round(st.hit_rate, 3),
        }
        if self.mmu.detector is not None:
            out["stale_uses"] = len(self.mmu.detector.reports)
        return out

    def check_access(self, va: int, kind: str, user: bool) -> int:
        """One access through the CPU's current tables; raises PageFault."""
        return self.mmu.access(va, kind, user)

    def _kernel(self) -> AddressSpace:
        if self.kernel_space is None:
            raise PagingError("the kernel has not booted")
        return self.kernel_space

    def _add_vma(self, proc: Process, vma: Vma) -> Vma:
        for other in proc.vmas:
            if vma.start < other.end and other.start < vma.end:
                raise PagingError(
                    f"pid {proc.pid}: area {hx(vma.start)}+{hx(vma.size)} overlaps "
                    f"{other.name or other.kind}"
                )
        proc.vmas.append(vma)
        return vma

    def _populate(self, proc: Process, vma: Vma, data: bytes) -> None:
        """Back every page of ``vma`` with a fresh frame holding ``data`` (zeros after it)."""
        for off in range(0, vma.size, FRAME_SIZE):
            pa = self.data_frame()
            self.mem.zero(pa, FRAME_SIZE)
            chunk = data[off : off + FRAME_SIZE]
            if chunk:
                self.mem.write(pa, chunk)
            self.flush(proc.space.map(vma.start + off, pa, FRAME_SIZE, vma.perm))

    def mmap(
        self,
        proc: Process,
        size: int,
        perm: Perm,
        *,
        va: int | None = None,
        lazy: bool | None = None,
    ) -> int:
        """Map anonymous memory; lazily (demand paging) when the profile does it."""
        size = -(-size // FRAME_SIZE) * FRAME_SIZE
        if va is None:
            va = self._free_va(proc, size)
        lazy = self.profile.demand_paging if lazy is None else lazy
        vma = self._add_vma(proc, Vma(va, size, perm | Perm.USER, "anon", "mmap", lazy=lazy))
        if not lazy:
            self._populate(proc, vma, b"")
        return va

    def _free_va(self, proc: Process, size: int) -> int:
        u = self.profile.user_layout
        va = u.mmap_base
        for vma in sorted(proc.vmas, key=lambda v: v.start):
            if vma.end > va and vma.start < va + size:
                va = vma.end
        return va

    def munmap(self, proc: Process, va: int, size: int) -> None:
        """Unmap ``[va, va + size)``; frames go back when their last user lets go."""
        vma = proc.vma_at(va)
        if vma is None or va != vma.start or size != vma.size:
            raise NotMappedError(f"pid {proc.pid}: no area exactly at {hx(va)}+{hx(size)}", va=va)
        flush = proc.space.unmap_range(va, size)
        self.flush(flush)
        self._release_runs(vma, flush.unmapped)
        proc.vmas.remove(vma)

    def _release_runs(self, vma: Vma, runs: list[tuple[int, int, int]]) -> None:
        if vma.kind == "phys":
            return
        for _va, pa, size in runs:
            for frame in range(pa, pa + size, FRAME_SIZE):
                self.refs.release(frame)

    # -------------------------------------------------------------- shared memory
    def shm_create(self, size: int) -> SharedMemory:
        """A named block of frames, zeroed, that processes can map."""
        frames = []
        for _ in range(-(-size // FRAME_SIZE)):
            pa = self.data_frame()
            self.mem.zero(pa, FRAME_SIZE)
            frames.append(pa)
        shm = SharedMemory(next(self._shm_ids), frames)
        self.shared.append(shm)
        return shm

    def shm_map(
        self,
        proc: Process,
        shm: SharedMemory,
        perm: Perm,
        va: int | None = None,
        *,
        kind: str = "shm",
        name: str = "",
    ) -> int:
        """Map every frame of ``shm`` into ``proc``; each mapping holds a reference."""
        va = self._free_va(proc, shm.size) if va is None else va
        vma = Vma(va, shm.size, perm | Perm.USER, kind, name or f"shm{shm.id}", shm=shm)
        self._add_vma(proc, vma)
        for i, pa in enumerate(shm.frames):
            self.refs.share(pa)
            self.flush(proc.space.map(va + i * FRAME_SIZE, pa, FRAME_SIZE, perm | Perm.USER))
        return va

    def shm_unlink(self, shm: SharedMemory) -> None:
        """Drop the name's reference; frames go when the last mapping goes too."""
        if shm.linked:
            shm.linked = False
            for pa in shm.frames:
                self.refs.release(pa)

    # ------------------------------------------------------------------- lifecycle
    def destroy(self, proc: Process) -> None:
        """Return every frame and table frame of ``proc``."""
        for vma in list(proc.vmas):
            flush = proc.space.unmap_range(vma.start, vma.size)
            self.flush(flush)
            self._release_runs(vma, flush.unmapped)
        proc.vmas.clear()
        self.flush(proc.space.destroy())
        proc.alive = False
        del self.processes[proc.pid]
        if self.current is proc:
            self.current = None
            self.mmu.attach(self._kernel())
        self.log("process", f"destroyed {proc.name} (pid {proc.pid})")

    def switch_to(self, proc: Process) -> None:
        """Load ``proc``'s tables into the CPU, with the profile's switch flush."""
        if self.current is proc:
            return
        self.mmu.attach(proc.space, proc.asid)
        self.current = proc
        self.flush(self.profile.switch_flush(proc))

    def user_mappings(self, proc: Process) -> list[Any]:
        """The merged user-half mappings of ``proc``."""
        half = self.mode.halves[0]
        return list(
            mappings(self.mem, self.mode, proc.space.roots, va_range=(half.va_start, half.va_end))
        )


__all__ = ["Event", "Kernel", "MemType", "Process", "ProcessFault", "SharedMemory", "Vma"]
