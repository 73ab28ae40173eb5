"""Guests under a stage 2, built with AddressSpace for both stages, for the nested-walk tests.

A guest's RAM (4 MiB of guest-physical memory) is built first on its own, with the guest's
stage-1 tables; a stage 2 then maps it into host memory out of order (the first 2 MiB page by
page, permuted; the second as one 2-MiB page placed below the first), and every guest page is
copied to the host page stage 2 gives it. The guest RAM stays as it was, so a test can walk stage
1 directly over it and compose the result with a stage-2 walk on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from oracles.stage2_pseudo import Outcome, ept_translate, gstage_walk, s2_walk
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.formats import PagingMode, Perm, make_mode
from pagewalk.formats.ept import EptMode
from pagewalk.formats.riscv_gstage import RiscVGStageMode
from pagewalk.formats.stage2_arm import ArmStage2Mode
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.nested import Stage2
from pagewalk.nested_machine import NestedMachine, stage2_space
from pagewalk.space import AddressSpace

MIB = 1 << 20
GUEST_RAM = 4 * MIB
HOST_DATA = 16 * MIB  # guest RAM lands at 16..20 MiB of host memory
KVM_40 = 24 | (1 << 6) | (5 << 16)  # VTCR_EL2: 40-bit IPA, 4K, start level 1 (2 tables)
RWX = Perm.READ | Perm.WRITE | Perm.EXEC

#: (stage-1 mode, stage-2 regime) pairs as hardware pairs them
PAIRS = [("x86_64", "ept"), ("x86_64", "ept_ad"), ("x86_64", "npt"), ("aarch64", "arm"),
         ("sv39", "riscv"), ("la57", "ept5")]  # fmt: skip


def hpa_of(gpa: int) -> int:
    """Where stage 2 puts guest page ``gpa``: 0..2 MiB permuted above 18 MiB, 2..4 MiB at 16."""
    if gpa >= 2 * MIB:
        return HOST_DATA + (gpa - 2 * MIB)
    page = gpa >> 12
    return HOST_DATA + 2 * MIB + (((page * 37) % 512) << 12) + (gpa & 0xFFF)


def s2_mode(regime: str) -> tuple[PagingMode, str]:
    if regime in ("ept", "ept_ad", "ept5"):
        return EptMode(5 if regime == "ept5" else 4, ad=regime == "ept_ad", mbec=True), "ept"
    if regime == "npt":
        return make_mode("x86_64"), "npt"
    if regime == "arm":
        return ArmStage2Mode(KVM_40), "arm"
    return RiscVGStageMode("sv39x4"), "riscv"


@dataclass
class Scene:
    guest: PhysicalMemory
    host: PhysicalMemory
    s1: AddressSpace
    s2: AddressSpace
    stage2: Stage2
    machine: NestedMachine
    register: int

    def s2_oracle(self, gpa: int) -> Outcome | None:
        """The manual's stage-2 procedure on ``gpa`` (None for NPT, which has none here)."""
        mode, host = self.stage2.mode, self.host

        def read(pa: int) -> int:
            return host.read_entry(pa, 8)

        if isinstance(mode, EptMode):
            return ept_translate(read, self.register, gpa, mbec=mode.mbec)
        if isinstance(mode, ArmStage2Mode):
            return s2_walk(read, KVM_40, self.register, gpa)
        if isinstance(mode, RiscVGStageMode):
            return gstage_walk(read, self.register, gpa)
        return None


def build(s1_name: str, regime: str, guest_maps: list[tuple[int, int, int, Perm]]) -> Scene:
    """A guest whose stage 1 maps ``guest_maps`` (VA, guest PA, page size, perm)."""
    guest = PhysicalMemory(GUEST_RAM)
    s1 = AddressSpace(make_mode(s1_name), guest, SimpleFrameAllocator(MIB, MIB))
    for va, gpa, size, perm in guest_maps:
        s1.map(va, gpa, size, perm).ignore()
    host = PhysicalMemory(HOST_DATA + GUEST_RAM)
    mode, kind = s2_mode(regime)
    frames = SimpleFrameAllocator(MIB, 2 * MIB)
    s2 = stage2_space(mode, host, frames) if kind != "npt" else AddressSpace(mode, host, frames)
    perm = RWX | Perm.USER
    for gpa in range(0, 2 * MIB, 4096):
        s2.map(gpa, hpa_of(gpa), 4096, perm).ignore()
    s2.map(2 * MIB, hpa_of(2 * MIB), 2 * MIB, perm).ignore()
    for gpa in range(0, GUEST_RAM, 4096):
        host.write(hpa_of(gpa), guest.read(gpa, 4096))
    root = s2.roots[0]
    register = {
        "ept": lambda: mode.eptp(root) if isinstance(mode, EptMode) else 0,
        "arm": lambda: root,
        "riscv": lambda: mode.hgatp(root) if isinstance(mode, RiscVGStageMode) else 0,
        "npt": lambda: root,
    }[kind]()
    stage2 = Stage2(mode, (root,), kind, f"{kind} {register:#x}")
    machine = NestedMachine(host, s1.mode, s1.roots, stage2)
    return Scene(guest, host, s1, s2, stage2, machine, register)
