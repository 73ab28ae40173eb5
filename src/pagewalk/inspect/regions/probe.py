"""What region naming reads from a machine: the first mapping in a VA window, the vmcoreinfo
of an ELF core, and numbers in it.

A randomised base (Linux KASLR) is found where the kernel put something: the first leaf at or
above a window's start (Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec walks,
through :meth:`pagewalk.machine.Machine.maps`, which reads only the tables on the way to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagewalk.errors import PagingError

if TYPE_CHECKING:
    from pagewalk.enumerate_runs import Mapping
    from pagewalk.machine import Machine

GIB = 1 << 30
TIB = 1 << 40
TOP = 1 << 64


def first(machine: Machine, lo: int, hi: int) -> Mapping | None:
    """The first mapped range in VAs ``[lo, hi)``, or None (also for a window no half holds)."""
    lo, hi = max(lo, 0), min(hi, TOP)
    if lo >= hi:
        return None
    try:
        return next(iter(machine.maps((lo, hi))), None)
    except PagingError:
        return None


def linear_bits(machine: Machine) -> int:
    """The width of the addresses the tables translate (32, 39, 48, 57): the top level's
    shift plus its index bits (``ArchFacts.va_bits`` is the printed width, 64 on x86-64)."""
    top = machine.mode.halves[0].levels[0]
    return int(top.shift + top.bits)


def first_kernel(machine: Machine, lo: int, hi: int) -> Mapping | None:
    """The first supervisor-only mapped range in ``[lo, hi)``, or None."""
    from pagewalk.formats.base import Perm

    try:
        return next((m for m in machine.maps((lo, hi)) if not m.perm & Perm.USER), None)
    except PagingError:
        return None


def vmcoreinfo(machine: Machine) -> dict[str, str]:
    """The core's VMCOREINFO note (empty without one)."""
    core = machine.core
    info = getattr(core, "vmcoreinfo", None) if core is not None else None
    return dict(info) if info else {}


def number(info: dict[str, str], key: str) -> int | None:
    """``NUMBER(key)``, ``SYMBOL(key)`` or ``key`` of a VMCOREINFO text, as an int (hex for
    symbols and KERNELOFFSET, as the kernel prints them), or None."""
    for name, base in ((f"NUMBER({key})", 0), (f"SYMBOL({key})", 16), (key, 16)):
        text = info.get(name)
        if text is None:
            continue
        try:
            value = int(text, base) if base else int(text, 0)
        except ValueError:
            try:
                value = int(text, 10)
            except ValueError:
                return None
        return value % TOP
    return None


def round_up(value: int, step: int) -> int:
    """``value`` rounded up to a multiple of ``step``."""
    return -(-value // step) * step
