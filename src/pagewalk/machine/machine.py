"""A machine: a dump's physical memory, its configured paging mode and its root registers.

:func:`open` is the library's way in, and the CLI's: it opens a raw image (with the
``IMAGE.json`` pagewalk saves next to it), an ELF core (``cpu`` picks whose registers), or
either compressed, and takes the same register options as the ``pagewalk`` command (``mode``,
``root``, ``ttbr0``/``ttbr1``, ``satp``, ``cr0``/``cr4``/``efer``, ``tcr``/``mair``,
``strict``...), which override what the image says. The :class:`Machine` it returns lists
mappings (:meth:`Machine.maps`, what ``pagewalk maps`` prints), walks one address
(:meth:`Machine.walk`, :meth:`Machine.translate`) and finds the aliases of a physical address
(:meth:`Machine.aliases`). Walks follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V
privileged spec; every error is a :class:`~pagewalk.errors.PagingError` naming the file, field,
register or address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagewalk.enumerate import mappings
from pagewalk.enumerate_filter import Filter
from pagewalk.enumerate_runs import EnumStats, Mapping
from pagewalk.errors import ConfigError, hx
from pagewalk.formats import PagingMode
from pagewalk.machine.files import open_image, parse_int, sidecar_path
from pagewalk.machine.registers import configure
from pagewalk.memory.dump import Memory
from pagewalk.walk import Fault, Walk, translate, walk

if TYPE_CHECKING:
    from types import TracebackType

    from pagewalk.columns import RunColumns
    from pagewalk.live.session import LiveSource
    from pagewalk.memory.elfcore import Core

_U64 = 1 << 64
#: the register options :func:`open` and :func:`load_machine` take, as the CLI names them
OPTIONS = (
    "mode", "root", "ttbr0", "ttbr1", "tcr", "mair", "cr0", "cr4", "efer", "maxphyaddr",
    "strict", "satp",
)  # fmt: skip


def check_window(pair: tuple[int, int] | None, name: str, what: str) -> tuple[int, int] | None:
    """Check a window ``[A, B)``: 0 <= A < B <= 2^64; ``name`` is how the message calls it.

    Raises:
        ConfigError: an empty, reversed or out-of-range window.
    """
    if pair is None:
        return None
    lo, hi = pair
    if not 0 <= lo < hi <= _U64:
        raise ConfigError(
            f"{name} {hx(lo) if lo >= 0 else lo} {hx(hi) if hi >= 0 else hi}: give {what}s "
            f"A < B within 0..{hx(_U64)}"
        )
    return pair


@dataclass
class Machine:
    """Memory, mode and roots: everything a walk needs, and where they came from.

    Attributes:
        mem: the image's physical memory.
        mode: the configured paging mode.
        roots: the root tables' PAs, indexed like ``mode.root_names``.
        source: the image's path, as given.
        why: how the mode and roots were found (notes, compression, options that overrode).
        core: the ELF core, or None for a raw image.
        saved: what the image says about its registers: the checked ``IMAGE.json`` of a raw
            image, or ``{"registers": ...}`` read from a core's notes (or a live machine).
        live: the running machine (``gdb=``/``qmp=``), or None for a dump; :meth:`close`
            lets it go (resumes it if it was running).
    """

    mem: Memory
    mode: PagingMode
    roots: tuple[int, ...]
    source: str
    why: list[str] = field(default_factory=list)
    core: Core | None = None
    saved: dict[str, Any] = field(default_factory=dict)
    live: LiveSource | None = None

    def close(self) -> None:
        """Let a live machine go (memory mode restored, resumed if it was running); a dump
        needs nothing. Also what ``with pagewalk.open(...) as m:`` does on exit."""
        if self.live is not None:
            self.live.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def memory(self) -> Memory:
        """The image's physical memory (the same as :attr:`mem`)."""
        return self.mem

    @property
    def path(self) -> Path:
        """The image's path."""
        return Path(self.source)

    @property
    def sidecar(self) -> Path | None:
        """The register file that was read (``IMAGE.json``), or None (a core, or none)."""
        if self.core is not None or self.live is not None or not self.saved:
            return None
        return sidecar_path(self.source)

    def describe(self) -> str:
        """One line naming the image, mode and roots."""
        names = self.mode.root_names
        roots = ", ".join(f"{n}={hx(r)}" for n, r in zip(names, self.roots, strict=False))
        return f"{self.source}: {self.mode.describe()}, {roots}"

    def walk(self, va: int | str) -> Walk:
        """Every level of the walk of ``va`` (what ``pagewalk walk`` and ``translate`` show);
        a fault is part of the result.

        Raises:
            ConfigError: ``va`` is not a number in 0..2^64-1.
        """
        return walk(self.mem, self.mode, self.roots, parse_int(va, "VA"))

    def translate(self, va: int | str) -> tuple[int | None, int | None, Fault | None]:
        """``(pa, page_size, fault)`` of ``va``: the same walk, without its steps.

        Raises:
            ConfigError: ``va`` is not a number in 0..2^64-1.
        """
        return translate(self.mem, self.mode, self.roots, parse_int(va, "VA"))

    def maps(
        self,
        va_range: tuple[int, int] | None = None,
        *,
        has: int | None = None,
        filt: Filter | None = None,
        stats: EnumStats | None = None,
        raw_attrs: bool = False,
        limit: int | None = None,
    ) -> Iterator[Mapping]:
        """Every mapping, merged into ranges with effective permissions, in VA order (the
        listing of ``pagewalk maps``); it streams, reading each table when it is reached.

        Args:
            va_range: only VAs in ``[A, B)``; subtrees outside are never read.
            has: only the merged range holding this VA (see :meth:`containing`).
            filt: permissions, PA window and page sizes to keep, applied during the walk.
            stats: filled with counts (tables, leaves, tables partly outside the image).
            raw_attrs: merge only leaves with equal raw attribute bits, and report them.
            limit: the most ranges the tables may describe; None for no limit.

        Raises:
            ConfigError: a bad window, or both ``va_range`` and ``has``.
            NonCanonicalAddressError: ``has`` is outside every translation range.
            LimitError: (at the first ``next``) the tables describe more than ``limit`` ranges.
        """
        check_window(va_range, "va_range", "VA")
        if has is not None:
            if va_range is not None:
                raise ConfigError("give va_range or has, not both")
            return iter(self.containing(has, filt=filt, stats=stats, raw_attrs=raw_attrs,
                                        limit=limit))  # fmt: skip
        return mappings(
            self.mem, self.mode, self.roots,
            va_range=va_range, stats=stats, filt=filt, raw_attrs=raw_attrs, limit=limit,
        )  # fmt: skip

    def map_columns(
        self,
        va_range: tuple[int, int] | None = None,
        *,
        has: int | None = None,
        filt: Filter | None = None,
        stats: EnumStats | None = None,
        raw_attrs: bool = False,
        limit: int | None = None,
    ) -> Iterator[RunColumns]:
        """:meth:`maps` as batches of numpy columns (:class:`~pagewalk.columns.RunColumns`):
        the same runs with no object per run, for bulk consumers (same arguments and errors)."""
        from pagewalk.columns import RunColumns
        from pagewalk.enumerate import mapping_columns

        if has is not None:
            found = self.maps(has=has, filt=filt, stats=stats, raw_attrs=raw_attrs, limit=limit)
            yield RunColumns.from_rows(found, with_attrs=raw_attrs)
            return
        check_window(va_range, "va_range", "VA")
        yield from mapping_columns(
            self.mem, self.mode, self.roots,
            va_range=va_range, stats=stats, filt=filt, raw_attrs=raw_attrs, limit=limit,
        )  # fmt: skip

    def containing(
        self,
        va: int | str,
        *,
        filt: Filter | None = None,
        stats: EnumStats | None = None,
        raw_attrs: bool = False,
        limit: int | None = None,
    ) -> list[Mapping]:
        """The merged range holding ``va`` (empty when none): a window around it is listed,
        widened until the range no longer touches its edge.

        Raises:
            NonCanonicalAddressError: ``va`` is outside every translation range.
        """
        va = parse_int(va, "VA")
        half = self.mode.check_virtual(va)
        span = 1 << half.levels[-1].shift
        while True:
            lo = max(half.va_start, va & ~(span - 1))
            hi = min(half.va_end, lo + span)
            window = mappings(
                self.mem, self.mode, self.roots,
                va_range=(lo, hi), stats=stats, filt=filt, raw_attrs=raw_attrs, limit=limit,
            )  # fmt: skip
            hit = [m for m in window if m.va <= va < m.end]
            edge = bool(hit) and (hit[0].va == lo or hit[0].end == hi)
            if not edge or (lo, hi) == (half.va_start, half.va_end):
                return hit
            span <<= 1

    def aliases(
        self, pa: int | str, *, stats: EnumStats | None = None
    ) -> Iterator[tuple[int, Mapping]]:
        """Every VA that maps ``pa``, with the range that maps it (one walk filtered by PA).

        Raises:
            ConfigError: ``pa`` is not a number in 0..2^64-1.
        """
        at = parse_int(pa, "PA")
        found = mappings(
            self.mem, self.mode, self.roots, stats=stats, filt=Filter(pa_range=(at, at + 1))
        )
        return ((m.va + (at - m.pa), m) for m in found)


def load_machine(
    image: str, opts: dict[str, Any], cpu: int | None = None, *, guest_physical: bool = False
) -> Machine:
    """Open ``image`` and build its mode and roots from options, its sidecar JSON or its notes.

    Args:
        opts: register options by name (:data:`OPTIONS`: ``mode``, ``root``, ``ttbr0``...,
            and the other registers an image may save, such as ``pat``); None means not given.
        cpu: the core's CPU to read; when given, ``image`` must be an ELF core that has it.
        guest_physical: the roots are guest-physical (a guest's stage 1, read through a
            stage 2: ``docs/nested.md``), so they are not required to lie in the image.

    Raises:
        ConfigError: missing mode/root, options that do not fit the mode, or values wider
            than their register.
        DumpError: a corrupt, truncated or unknown dump, or a malformed register file.
        PhysicalMemoryError: the image cannot be opened, or a root lies outside it.
    """
    opened = open_image(image, cpu)
    mode, roots, why = configure(opened, image, opts, guest_physical=guest_physical)
    return Machine(opened.mem, mode, roots, image, why, opened.core, opened.saved)


def load_live(
    opts: dict[str, Any],
    *,
    gdb: str | None = None,
    qmp: str | None = None,
    guest_physical: bool = False,
) -> Machine:
    """Open a running QEMU (its gdbstub at ``gdb`` = ``HOST:PORT``, or its QMP socket
    ``qmp``) and build the mode and roots from its registers, ``opts`` overriding them.

    Raises:
        ConfigError: both or neither of ``gdb`` and ``qmp``, or options that do not fit.
        (``guest_physical`` as for :func:`load_machine`.)
        LiveError: the machine cannot be reached or read (naming host:port or the socket).
    """
    from pagewalk.live.session import open_gdb, open_qmp

    if (gdb is None) == (qmp is None):
        raise ConfigError("give one live machine: gdb=HOST:PORT or qmp=SOCKET")
    need = opts.get("mode") is None
    if gdb is not None:
        return live_machine(open_gdb(gdb, need_registers=need), opts, guest_physical)
    assert qmp is not None
    return live_machine(open_qmp(qmp, need_registers=need), opts, guest_physical)


def live_machine(live: LiveSource, opts: dict[str, Any], guest_physical: bool = False) -> Machine:
    """The machine of an opened live source, ``opts`` over its registers (closes the source
    when that fails)."""
    from pagewalk.machine.files import Opened

    try:
        opened = Opened(live.mem, live.saved, live.why, None)
        mode, roots, why = configure(opened, live.name, opts, guest_physical=guest_physical)
        return Machine(live.mem, mode, roots, live.name, why, None, live.saved, live)
    except BaseException:
        live.close()
        raise


def open(
    path: str | os.PathLike[str] | None = None,
    *,
    gdb: str | None = None,
    qmp: str | None = None,
    cpu: int | None = None,
    mode: str | None = None,
    root: int | str | None = None,
    ttbr0: int | str | None = None,
    ttbr1: int | str | None = None,
    satp: int | str | None = None,
    tcr: int | str | None = None,
    mair: int | str | None = None,
    cr0: int | str | None = None,
    cr4: int | str | None = None,
    efer: int | str | None = None,
    maxphyaddr: int | str | None = None,
    strict: bool | None = None,
    guest_physical: bool = False,
) -> Machine:
    """Open a dump or a saved image as a :class:`Machine`, as the ``pagewalk`` command does.

    Every option is the command's option of the same name (``docs/cli.md``): None takes the
    value from ``IMAGE.json`` or the core's notes. Numbers may be ints or text such as
    ``"0x1000"``.

    Args:
        path: a raw image, an ELF core, or either gzip- or zstd-compressed; or None with
            ``gdb`` or ``qmp``.
        gdb: a running QEMU's gdbstub, ``HOST:PORT`` (``-gdb tcp::PORT``; see docs/live.md):
            the machine reads its memory and registers live; close it (or use ``with``).
        qmp: a running QEMU's QMP Unix socket, instead.
        cpu: the core's CPU whose registers to use (default 0; ELF cores only).
        mode: the paging mode (``x86``, ``pae``, ``x86_64``, ``la57``, ``aarch64``, ``sv32``,
            ``sv39``, ``sv48``, ``sv57``).
        root: CR3, or the root table's PA (satp's root); not AArch64.
        ttbr0: TTBR0_EL1; ttbr1: TTBR1_EL1 (AArch64 only).
        satp: satp as written (RISC-V only): sets the mode and the root.
        tcr: TCR_EL1; mair: MAIR_EL1 (AArch64 only).
        cr0: CR0; cr4: CR4; efer: IA32_EFER; maxphyaddr: MAXPHYADDR (x86 only).
        strict: PAE PDPTE bits 2:1 and 8:5 are reserved (x86 only).
        guest_physical: the roots are a guest's guest-physical addresses, to be walked
            through a stage 2 (:func:`pagewalk.cli.nested_opts.nested_machine`,
            ``docs/nested.md``); they are then not required to lie in the image.

    Raises:
        PagingError: every failure, as a subclass: ConfigError (an option that does not fit,
            a missing mode or root), DumpError (a corrupt dump or register file, naming the
            file and offset or field), PhysicalMemoryError (a missing file, a root outside
            the image).
    """
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0):
        raise ConfigError(f"cpu {cpu!r} is not a CPU number (0, 1, ...)")
    opts = {
        "mode": mode, "root": root, "ttbr0": ttbr0, "ttbr1": ttbr1, "tcr": tcr, "mair": mair,
        "cr0": cr0, "cr4": cr4, "efer": efer, "maxphyaddr": maxphyaddr, "strict": strict,
        "satp": satp,
    }  # fmt: skip
    if gdb is not None or qmp is not None:
        if path is not None or cpu is not None:
            raise ConfigError("give a dump path or gdb=/qmp=, not both (cpu applies to cores)")
        return load_live(opts, gdb=gdb, qmp=qmp, guest_physical=guest_physical)
    if path is None:
        raise ConfigError("give a dump path, or gdb=HOST:PORT or qmp=SOCKET")
    return load_machine(os.fspath(path), opts, cpu=cpu, guest_physical=guest_physical)
