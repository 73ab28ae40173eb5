"""Which paging mode and root a core was using, from the registers its notes carry.

x86 (Intel SDM vol. 3A §2.5, §4.1.1 table 4-1): CR0.PG=0 means no paging; the ELF machine says
whether the CPU was in IA-32e mode (QEMU writes EM_X86_64 exactly when EFER.LMA=1), CR4.LA57
picks 5-level paging, and CR4.PAE picks PAE over 32-bit paging. IA32_EFER is not in QEMU's
note, so NXE is assumed set (every 64-bit Linux sets it); ``--efer`` overrides. AArch64 (Arm ARM
D8.2, D19): QEMU's notes hold no TTBRn_EL1/TCR_EL1, so for a Linux guest the root is
``swapper_pg_dir`` from VMCOREINFO translated with ``kimage_voffset``, and TCR_EL1 is rebuilt
from ``TCR_EL1_T1SZ``/``VA_BITS`` and ``PAGESIZE``; TTBR0 stays unknown (its walks disabled).
Those values come from the dump, so each is checked (a number, T1SZ in 1..63, PAGESIZE a
granule) and a bad one is a DumpError naming it. RISC-V: QEMU's notes carry no satp; the CLI
takes ``--satp`` or finds the root in RAM (:func:`pagewalk.inspect.roots.riscv_root`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pagewalk.errors import DumpError, hx
from pagewalk.formats.x86_bits import CR0_PG, CR4_LA57, CR4_PAE, EFER_LME, EFER_NXE

if TYPE_CHECKING:
    from pagewalk.memory.elfcore import Core

# TCR_EL1 granule encodings (Arm ARM D19 TCR_EL1.TG0/TG1) and fields.
_TG0 = {4096: 0b00, 65536: 0b01, 16384: 0b10}
_TG1 = {4096: 0b10, 16384: 0b01, 65536: 0b11}
_TCR_EPD0 = 1 << 7
_IPS_48 = 5 << 32


@dataclass
class Suggestion:
    """Register values for the machine loader (CLI option names) and why each was chosen."""

    regs: dict[str, Any] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)


def from_core(core: Core, cpu: int = 0) -> Suggestion:
    """The mode, control registers and roots of CPU ``cpu`` in ``core``.

    Raises:
        DumpError: the CPU does not exist, or its registers say paging is off.
    """
    if core.arch in ("x86_64", "i386"):
        return _x86(core, cpu)
    if core.arch == "aarch64":
        return _aarch64(core)
    if core.arch == "riscv":
        return Suggestion(
            why=[f"RISC-V core (ELFCLASS{core.elf_class}): QEMU's notes carry no satp"]
        )
    return Suggestion(why=[f"unknown machine {core.arch}: give --mode and the root registers"])


def _x86(core: Core, cpu: int) -> Suggestion:
    state = core.cpu(cpu) if core.cpus else None
    if state is None or "cr3" not in state.regs:
        return Suggestion(why=["no QEMU CPU-state note: give --mode and --root (CR3)"])
    cr0, cr3, cr4 = state.regs["cr0"], state.regs["cr3"], state.regs["cr4"]
    if not cr0 & CR0_PG:
        raise DumpError(f"{core.mem.source}: CPU {cpu} has paging disabled (CR0={hx(cr0)})")
    if core.arch == "x86_64":
        mode = "la57" if cr4 & CR4_LA57 else "x86_64"
        efer = EFER_LME | EFER_NXE
    else:
        mode = "pae" if cr4 & CR4_PAE else "x86"
        efer = EFER_NXE
    why = [
        f"CPU {cpu} of {len(core.cpus)}: CR0={hx(cr0)} CR3={hx(cr3)} CR4={hx(cr4)} "
        f"(QEMU note); {core.arch} core, so mode {mode}",
        "EFER is not in the core: assuming NXE=1 (use --efer to change)",
    ]
    regs = {"mode": mode, "root": cr3, "cr0": cr0, "cr4": cr4, "efer": efer}
    return Suggestion(regs, why)


def _aarch64(core: Core) -> Suggestion:
    info = core.vmcoreinfo
    missing = [k for k in ("SYMBOL(swapper_pg_dir)", "NUMBER(kimage_voffset)") if k not in info]
    if missing:
        return Suggestion(
            {"mode": "aarch64"},
            [
                "QEMU's AArch64 notes carry no TTBRn_EL1/TCR_EL1 and VMCOREINFO lacks "
                f"{', '.join(missing)}: give --ttbr0/--ttbr1/--tcr, or run find-roots"
            ],
        )
    try:
        swapper = int(info["SYMBOL(swapper_pg_dir)"], 16)
        voffset = int(info["NUMBER(kimage_voffset)"], 0)
        page = int(info.get("PAGESIZE", "4096"), 0)
        if "NUMBER(TCR_EL1_T1SZ)" in info:
            t1sz = int(info["NUMBER(TCR_EL1_T1SZ)"], 0)
        else:
            t1sz = 64 - int(info.get("NUMBER(VA_BITS)", "48"), 0)
    except ValueError as exc:  # not a number, or one of too many digits
        reason = str(exc).split(";")[0]
        raise DumpError(f"{core.mem.source}: bad VMCOREINFO value ({reason})") from None
    if not 0 < t1sz < 64:
        raise DumpError(
            f"{core.mem.source}: VMCOREINFO TCR_EL1_T1SZ/VA_BITS give T1SZ={t1sz}, outside 1..63"
        )
    if page not in _TG0:
        raise DumpError(f"{core.mem.source}: VMCOREINFO PAGESIZE={page} is not 4K, 16K or 64K")
    root = (swapper - voffset) & ((1 << 64) - 1)
    tcr = t1sz | (t1sz << 16) | (_TG0[page] << 14) | (_TG1[page] << 30) | _IPS_48 | _TCR_EPD0
    why = [
        f"TTBR1_EL1 = swapper_pg_dir {hx(swapper)} - kimage_voffset {hx(voffset)} = {hx(root)} "
        "(VMCOREINFO; QEMU's AArch64 notes carry no system registers)",
        f"TCR_EL1 rebuilt as {hx(tcr)}: T0SZ=T1SZ={t1sz}, {page >> 10}K granules, IPS 48 bits; "
        "TTBR0 unknown, so EPD0=1 (give --ttbr0 and --tcr for user space)",
    ]
    return Suggestion({"mode": "aarch64", "ttbr1": root, "tcr": tcr}, why)
