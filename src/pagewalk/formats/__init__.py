"""The registry of paging modes: one name per mode, built from control-register settings.

Each mode module follows its manual (Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged
spec, and for the stage-2 modes Intel SDM vol. 3C §29.3 and the hypervisor chapters); this
module only maps the CLI's names to configured :class:`PagingMode` objects.
"""

from __future__ import annotations

from pagewalk.errors import ConfigError
from pagewalk.formats.aarch64 import MAIR_DEFAULT, TCR_DEFAULT, AArch64Mode
from pagewalk.formats.base import (
    ALL_PERMS,
    ArchFacts,
    Entry,
    EntryKind,
    Field,
    GiB,
    Half,
    KiB,
    Level,
    MemType,
    MiB,
    PagingMode,
    Perm,
    PhysAddr,
    TiB,
    VirtAddr,
)
from pagewalk.formats.ept import EptMode
from pagewalk.formats.riscv import RiscVMode
from pagewalk.formats.riscv_gstage import RiscVGStageMode
from pagewalk.formats.stage2_arm import ArmStage2Mode
from pagewalk.formats.x86 import X86Mode
from pagewalk.formats.x86_bits import CR0_PG, CR0_WP, EFER_LME, EFER_NXE, PAT_RESET

#: every mode name, in the order help text lists them
MODE_NAMES = ("x86", "pae", "x86_64", "la57", "aarch64", "sv32", "sv39", "sv48", "sv57")

#: the stage-2 (nested) modes, configured by their root registers (EPTP, VTCR_EL2, hgatp):
#: Intel SDM vol. 3C §29.3, Arm ARM D8 stage 2, RISC-V privileged spec "Hypervisor Extension"
STAGE2_MODE_NAMES = ("ept", "ept5", "aarch64_s2", "sv39x4", "sv48x4", "sv57x4")

#: the x86 defaults of the CLI: CR0.WP=1, CR4.PSE=1, EFER.NXE=1
X86_CR0_DEFAULT = CR0_PG | CR0_WP | 1


def make_mode(
    name: str,
    *,
    cr0: int | None = None,
    cr4: int | None = None,
    efer: int | None = None,
    maxphyaddr: int | None = None,
    pat: int | None = None,
    pdpe1gb: bool = True,
    tcr: int | None = None,
    mair: int | None = None,
    svpbmt: bool = False,
    strict: bool = False,
) -> PagingMode:
    """Build a configured mode by name.

    Options that do not apply to the chosen mode are refused, so a typo in a script (a TCR for
    an x86 image, say) is reported instead of silently ignored. ``strict`` (x86 only) makes PAE
    PDPTE bits 2:1 and 8:5 reserved, as the manual says, instead of accepted as QEMU does.

    Raises:
        ConfigError: for an unknown name or an option the mode does not take.
    """
    name = name.lower().replace("-", "_")
    x86_opts = {"cr0": cr0, "cr4": cr4, "efer": efer, "maxphyaddr": maxphyaddr, "pat": pat}
    arm_opts = {"tcr": tcr, "mair": mair}
    if name in ("x86", "pae", "x86_64", "la57"):
        _refuse(name, arm_opts)
        return X86Mode(
            name,
            cr0=X86_CR0_DEFAULT if cr0 is None else cr0,
            cr4=cr4,
            efer=(EFER_NXE | EFER_LME) if efer is None else efer,
            maxphyaddr=52 if maxphyaddr is None else maxphyaddr,
            pdpe1gb=pdpe1gb,
            pat=PAT_RESET if pat is None else pat,
            strict=strict,
        )
    if strict:
        raise ConfigError(
            f"mode {name} does not take --strict (x86 only: PAE PDPTE bits 2:1 and 8:5)"
        )
    if name == "aarch64":
        _refuse(name, x86_opts)
        return AArch64Mode(
            tcr=TCR_DEFAULT if tcr is None else tcr, mair=MAIR_DEFAULT if mair is None else mair
        )
    if name in ("sv32", "sv39", "sv48", "sv57"):
        _refuse(name, {**x86_opts, **arm_opts})
        return RiscVMode(name, svpbmt=svpbmt)
    raise ConfigError(f"unknown paging mode {name!r} (known: {', '.join(MODE_NAMES)})")


def make_stage2_mode(
    name: str,
    *,
    vtcr: int | None = None,
    maxphyaddr: int = 52,
    ad: bool = False,
    mbec: bool = False,
    svpbmt: bool = False,
) -> PagingMode:
    """Build a stage-2 mode by name (see :data:`STAGE2_MODE_NAMES`).

    ``vtcr`` is VTCR_EL2 (``aarch64_s2`` only, required there); ``maxphyaddr``, ``ad`` (EPTP
    bit 6) and ``mbec`` (mode-based execute control) are EPT's; ``svpbmt`` the G-stage modes'.
    AMD NPT has no mode of its own: its tables are long-mode tables (``make_mode("x86_64")``)
    walked with every access a user access (AMD APM vol. 2 §15.25.5).

    Raises:
        ConfigError: an unknown name, or a missing VTCR_EL2 for ``aarch64_s2``.
    """
    name = name.lower().replace("-", "_")
    if name in ("ept", "ept5"):
        return EptMode(4 if name == "ept" else 5, maxphyaddr=maxphyaddr, ad=ad, mbec=mbec)
    if name == "aarch64_s2":
        if vtcr is None:
            raise ConfigError("mode aarch64_s2 needs VTCR_EL2 (--vtcr)")
        return ArmStage2Mode(vtcr)
    if name in ("sv39x4", "sv48x4", "sv57x4"):
        return RiscVGStageMode(name, svpbmt=svpbmt)
    raise ConfigError(f"unknown stage-2 mode {name!r} (known: {', '.join(STAGE2_MODE_NAMES)})")


def _refuse(name: str, opts: dict[str, int | None]) -> None:
    given = [k for k, v in opts.items() if v is not None]
    if given:
        raise ConfigError(f"mode {name} does not take {', '.join('--' + g for g in given)}")


__all__ = [
    "ALL_PERMS",
    "MODE_NAMES",
    "STAGE2_MODE_NAMES",
    "AArch64Mode",
    "ArchFacts",
    "ArmStage2Mode",
    "Entry",
    "EntryKind",
    "EptMode",
    "Field",
    "GiB",
    "Half",
    "KiB",
    "Level",
    "MemType",
    "MiB",
    "PagingMode",
    "Perm",
    "PhysAddr",
    "RiscVGStageMode",
    "RiscVMode",
    "TiB",
    "VirtAddr",
    "X86Mode",
    "make_mode",
    "make_stage2_mode",
]
