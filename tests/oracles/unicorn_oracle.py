"""Unicorn (QEMU TCG) as an independent reference walker for page-table tests.

One idea: hand Unicorn's real MMU a RAM image plus control registers, ask it to
translate one virtual address for one access kind and privilege, and report the
physical address or the architectural fault it raised.  Nothing here walks a
table in Python; every answer comes from the emulator's own page walker.

Manual sections the set-up follows:

* x86: Intel SDM vol. 3A ch. 4 (4.3 32-bit paging incl. PSE-36, 4.4 PAE, 4.5
  4-level and 5-level paging, 4.6 access rights, 4.7 page-fault error code,
  4.8 A/D flags); CPL 3 is entered with IRET per vol. 3A 6.12/5.8.
* AArch64: Arm ARM (DDI 0487) D8 "The AArch64 Virtual Memory System
  Architecture" (stage 1 EL1&0 regime, TTBR0/TTBR1 selection, 4K/16K/64K
  granules, D8.4 permissions, D8.5 access flag); fault status codes from the
  ESR_ELx ISS encodings (D17/D19 "ESR_EL1", "PAR_EL1") and the AT S1E* ops.
* RISC-V: privileged spec ch. "Supervisor-Level ISA", sections Sv32, Sv39,
  Sv48, Sv57 (virtual address translation process, satp, mstatus.SUM/MXR).

How the answers are obtained (details and measured speed: docs/oracles.md):

* PA and success/failure: ``uc_vmem_translate`` (Unicorn >= 2.1) via ctypes,
  after a TLB flush.  It runs the real target ``tlb_fill`` in probe mode, so
  it honours the access kind, the current privilege, and sets A/D bits.
* x86 faults: the probe leaves CR2 and QEMU's ``env->error_code`` behind;
  the error-code offset inside a saved ``uc_context`` is found once per
  process by self-calibration against faults with known codes.
* AArch64 faults: data accesses run a real ``AT S1E{0,1}{R,W}`` and decode
  PAR_EL1.FST.  For instruction fetches ``uc_vmem_translate`` (EXEC, at EL1 or
  EL0) decides; on failure, walk faults come from AT, else it is a
  permission fault whose level comes from any AT permission fault on the same
  leaf (``None`` if none).  The AT code lives in the *other* TTBR half, which
  the oracle temporarily points at a private table.
* RISC-V faults: the probe gives no cause, so the cause is the page-fault
  cause fixed by the access kind (12/13/15) and stval is the VA.
"""

from __future__ import annotations

import ctypes
import importlib
import mmap
import struct
import weakref
from dataclasses import dataclass
from typing import Any

# Unicorn's Python binding is only partly typed: treat it as Any throughout.
uc_mod: Any = importlib.import_module("unicorn")
a64c: Any = importlib.import_module("unicorn.arm64_const")
rvc: Any = importlib.import_module("unicorn.riscv_const")
ucc: Any = importlib.import_module("unicorn.unicorn_const")
x86c: Any = importlib.import_module("unicorn.x86_const")
_lib: Any = importlib.import_module("unicorn.unicorn_py3.unicorn").uclib

__all__ = [
    "AArch64Oracle",
    "Oracle",
    "OracleResult",
    "RiscvOracle",
    "X86Oracle",
    "aarch64_oracle",
    "riscv_oracle",
    "x86_oracle",
]

PAGE = 0x1000
_PROT = {"read": ucc.UC_PROT_READ, "write": ucc.UC_PROT_WRITE, "exec": ucc.UC_PROT_EXEC}

_lib.uc_vmem_translate.argtypes = [
    ctypes.c_void_p,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_uint64),
]
_lib.uc_vmem_translate.restype = ctypes.c_int
_lib.uc_context_size.argtypes = [ctypes.c_void_p]
_lib.uc_context_size.restype = ctypes.c_size_t
_lib.uc_context_alloc.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
_lib.uc_context_alloc.restype = ctypes.c_int
_lib.uc_context_save.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_lib.uc_context_save.restype = ctypes.c_int
_lib.uc_context_free.argtypes = [ctypes.c_void_p]
_lib.uc_context_free.restype = ctypes.c_int


@dataclass(frozen=True)
class OracleResult:
    """Outcome of one translation.

    ``pa`` is the physical address, or ``None`` on a fault.  Fault fields:

    * x86: ``vector`` 14 (#PF) or 13 (#GP, non-canonical VA), ``error_code``
      (P=1, W/R=2, U/S=4, RSVD=8, I/D=0x10, PK=0x20) and ``cr2``.
    * AArch64: ``fsc`` (6-bit DFSC/IFSC), ``fault`` ("translation",
      "access_flag", "permission", "address_size", or "other") and ``level``.
    * RISC-V: ``cause`` (12 fetch, 13 load, 15 store page fault), ``tval``.
    """

    pa: int | None
    fault: str | None = None
    level: int | None = None
    fsc: int | None = None
    vector: int | None = None
    error_code: int | None = None
    cr2: int | None = None
    cause: int | None = None
    tval: int | None = None

    @property
    def ok(self) -> bool:
        return self.pa is not None


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class _SharedRam:
    """Anonymous mmap backing guest PA 0..size, shared by several engines."""

    def __init__(self, ram: bytes | bytearray | memoryview, extra: int = 0) -> None:
        data = bytes(ram)
        self.ram_size = _round_up(max(len(data), PAGE), 0x10000)
        self.size = self.ram_size + extra
        self.buf = mmap.mmap(-1, self.size)
        self.buf[: len(data)] = data
        self._anchor = ctypes.c_char.from_buffer(self.buf)
        self.ptr = ctypes.addressof(self._anchor)

    def map_into(self, mu: Any) -> None:
        mu.mem_map_ptr(0, self.size, ucc.UC_PROT_ALL, self.ptr)

    def read(self, pa: int, n: int) -> bytes:
        if pa < 0 or pa + n > self.size:
            raise ValueError(f"physical range {pa:#x}+{n:#x} outside oracle RAM")
        return bytes(self.buf[pa : pa + n])

    def write(self, pa: int, data: bytes) -> None:
        if pa < 0 or pa + len(data) > self.size:
            raise ValueError(f"physical range {pa:#x}+{len(data):#x} outside oracle RAM")
        self.buf[pa : pa + len(data)] = data


def _flush_tlb(mu: Any) -> None:
    mu.ctl(ucc.UC_CTL_TLB_FLUSH, ucc.UC_CTL_IO_WRITE)


def _vmem_translate(mu: Any, va: int, access: str) -> int | None:
    _flush_tlb(mu)
    pa = ctypes.c_uint64(0)
    err = _lib.uc_vmem_translate(mu._uch, va, _PROT[access], ctypes.byref(pa))
    return int(pa.value) if err == ucc.UC_ERR_OK else None


class _Context:
    """Raw snapshot of the engine's CPU state, used to read QEMU-internal fields."""

    def __init__(self, mu: Any) -> None:
        self._mu = mu
        self.size = int(_lib.uc_context_size(mu._uch))
        self._ctx = ctypes.c_void_p()
        if _lib.uc_context_alloc(mu._uch, ctypes.byref(self._ctx)) != ucc.UC_ERR_OK:
            raise RuntimeError("uc_context_alloc failed")
        self._addr = int(self._ctx.value or 0)
        weakref.finalize(self, _lib.uc_context_free, self._addr)

    def snapshot(self) -> bytes:
        _lib.uc_context_save(self._mu._uch, self._addr)
        return ctypes.string_at(self._addr, self.size)

    def u32(self, offset: int) -> int:
        _lib.uc_context_save(self._mu._uch, self._addr)
        return int(ctypes.c_uint32.from_address(self._addr + offset).value)


def _find_offset(samples: list[tuple[bytes, int]]) -> int | None:
    """Unique 4-byte-aligned offset whose u32 equals the expected value in every sample."""
    size = min(len(raw) for raw, _ in samples)
    hits = [
        off
        for off in range(0, size - 3, 4)
        if all(struct.unpack_from("<I", raw, off)[0] == want for raw, want in samples)
    ]
    return hits[0] if len(hits) == 1 else None


class Oracle:
    """Common interface: ``translate`` one VA, ``read_phys`` back guest RAM."""

    _mem: _SharedRam

    def translate(self, va: int, access: str = "read", user: bool = False) -> OracleResult:
        raise NotImplementedError

    def read_phys(self, pa: int, n: int) -> bytes:
        """Guest physical memory as the emulator sees it (A/D updates included)."""
        return self._mem.read(pa, n)

    def write_phys(self, pa: int, data: bytes) -> None:
        """Patch guest physical memory (e.g. to change an entry between translations)."""
        self._mem.write(pa, data)

    @staticmethod
    def _check_access(access: str) -> None:
        if access not in _PROT:
            raise ValueError(f"access must be read/write/exec, not {access!r}")


# --------------------------------------------------------------------------- x86

_X86_MODES = {"x86", "pae", "x86_64", "la57"}
_CR4_PSE, _CR4_PAE, _CR4_LA57 = 1 << 4, 1 << 5, 1 << 12
_EFER_LME, _EFER_NXE = 1 << 8, 1 << 11
_MSR_EFER = 0xC0000080
_X86_SCRATCH = 0x7FFF0000  # < 2 GiB (push imm32 sign-extends); mapped only during set-up


def _gdt_desc(code: bool, dpl: int, long_mode: bool) -> int:
    typ = 0xB if code else 0x3
    l_bit = 1 if (code and long_mode) else 0
    db = 0 if l_bit else 1
    lo = 0xFFFF
    hi = (typ << 8) | (1 << 12) | (dpl << 13) | (1 << 15) | (0xF << 16)
    hi |= (l_bit << 21) | (db << 22) | (1 << 23)
    return lo | (hi << 32)


def _x86_engine(mem: _SharedRam, long_mode: bool, user: bool, model: int) -> Any:
    """An x86 engine at CPL 0 or CPL 3 with paging still off."""
    mu = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_64 if long_mode else uc_mod.UC_MODE_32)
    mu.ctl_set_cpu_model(model)
    mem.map_into(mu)
    if user:
        # Flat GDT (null, code0, data0, code3, data3); IRET to CPL 3 with PG=0.
        s = _X86_SCRATCH
        mu.mem_map(s, 0x2000)
        gdt = [0] + [_gdt_desc(c, d, long_mode) for d in (0, 3) for c in (True, False)]
        mu.mem_write(s, b"".join(struct.pack("<Q", g) for g in gdt))
        mu.reg_write(x86c.UC_X86_REG_GDTR, (0, s, len(gdt) * 8 - 1, 0))
        code, target, stack = s + 0x100, s + 0x200, s + 0x1FF0
        seq = b"\x6a\x23" + b"\x68" + struct.pack("<I", stack)
        seq += b"\x68" + struct.pack("<I", 2) + b"\x6a\x1b" + b"\x68" + struct.pack("<I", target)
        seq += b"\x48\xcf" if long_mode else b"\xcf"
        mu.mem_write(code, seq)
        if long_mode:
            mu.reg_write(x86c.UC_X86_REG_RSP, s + 0x1F00)
        else:
            mu.reg_write(x86c.UC_X86_REG_SS, 0x10)
            mu.reg_write(x86c.UC_X86_REG_ESP, s + 0x1F00)
        mu.emu_start(code, target)
        if mu.reg_read(x86c.UC_X86_REG_SS) & 3 != 3:
            raise RuntimeError("could not enter CPL 3")
        mu.mem_unmap(s, 0x2000)
    return mu


def _x86_program(mu: Any, long_mode: bool, cr0: int, cr3: int, cr4: int, efer: int) -> None:
    mu.reg_write(x86c.UC_X86_REG_CR4, cr4)
    mu.reg_write(x86c.UC_X86_REG_MSR, (_MSR_EFER, efer))
    mu.reg_write(x86c.UC_X86_REG_CR3, cr3)
    mu.reg_write(x86c.UC_X86_REG_CR0, cr0)


_X86_ERR_OFFSET: list[int | None] = []


def _x86_error_code_offset(model: int) -> int | None:
    """Locate QEMU's env->error_code inside a saved context (once per process)."""
    if _X86_ERR_OFFSET:
        return _X86_ERR_OFFSET[0]
    ram = bytearray(0x10000)
    pd, pt = 0x1000, 0x2000
    struct.pack_into("<I", ram, pd, pt | 0x7)
    struct.pack_into("<I", ram, pt + 5 * 4, 0x5000 | 0x3)  # supervisor RW
    struct.pack_into("<I", ram, pt + 6 * 4, 0x6000 | 0x5)  # user RO
    struct.pack_into("<I", ram, pd + 4, 0x400000 | 0x87 | (1 << 21))  # 4M, reserved bit 21
    mem = _SharedRam(ram)
    cases = {
        False: [
            (0x9000, "read", 0x0),
            (0x9000, "write", 0x2),
            (0x6000, "write", 0x3),
            (0x400000, "read", 0x9),
            (0x400000, "write", 0xB),
        ],
        True: [(0x5000, "read", 0x5), (0x5000, "write", 0x7), (0x9000, "write", 0x6)],
    }
    samples: list[tuple[bytes, int]] = []
    for user, items in cases.items():
        mu = _x86_engine(mem, False, user, model)
        _x86_program(mu, False, 0x80010011, pd, _CR4_PSE, 0)
        ctx = _Context(mu)
        for va, access, want in items:
            if _vmem_translate(mu, va, access) is not None:
                _X86_ERR_OFFSET.append(None)
                return None
            samples.append((ctx.snapshot(), want))
    _X86_ERR_OFFSET.append(_find_offset(samples))
    return _X86_ERR_OFFSET[0]


class X86Oracle(Oracle):
    """x86 paging (32-bit/PSE-36, PAE, 4-level, 5-level) via Unicorn's x86 MMU."""

    def __init__(
        self,
        mode: str,
        ram: bytes | bytearray | memoryview,
        *,
        cr3: int,
        cr0: int,
        cr4: int,
        efer: int,
        cpu_model: int,
    ) -> None:
        if mode not in _X86_MODES:
            raise ValueError(f"unknown x86 mode {mode!r}")
        self.mode = mode
        self._long = mode in ("x86_64", "la57")
        self._regs = (cr0, cr3, cr4, efer)
        self._model = cpu_model
        self._mem = _SharedRam(ram)
        if self._mem.size > _X86_SCRATCH:
            raise ValueError("x86 oracle RAM must stay below 2 GiB - 64 KiB")
        self._engines: dict[bool, tuple[Any, _Context]] = {}
        self._err_off = _x86_error_code_offset(cpu_model)
        self._va_mask = (1 << 64) - 1 if self._long else 0xFFFFFFFF

    def _engine(self, user: bool) -> tuple[Any, _Context]:
        if user not in self._engines:
            mu = _x86_engine(self._mem, self._long, user, self._model)
            cr0, cr3, cr4, efer = self._regs
            _x86_program(mu, self._long, cr0, cr3, cr4, efer)
            self._engines[user] = (mu, _Context(mu))
        return self._engines[user]

    def translate(self, va: int, access: str = "read", user: bool = False) -> OracleResult:
        self._check_access(access)
        va &= self._va_mask
        mu, ctx = self._engine(user)
        sentinel = (~va) & self._va_mask
        mu.reg_write(x86c.UC_X86_REG_CR2, sentinel)
        pa = _vmem_translate(mu, va, access)
        if pa is not None:
            return OracleResult(pa=pa)
        cr2 = int(mu.reg_read(x86c.UC_X86_REG_CR2)) & self._va_mask
        if cr2 != va:
            # QEMU raises #GP (no CR2 update) for a non-canonical linear address.
            return OracleResult(pa=None, fault="gp", vector=13)
        err = ctx.u32(self._err_off) if self._err_off is not None else None
        return OracleResult(pa=None, fault="page_fault", vector=14, error_code=err, cr2=cr2)


def x86_oracle(
    mode: str,
    ram: bytes | bytearray | memoryview,
    *,
    cr3: int,
    cr0: int = 0x80010011,
    cr4: int | None = None,
    efer: int | None = None,
    cpu_model: int = x86c.UC_CPU_X86_ICELAKE_SERVER,
) -> X86Oracle:
    """Build an x86 oracle; ``ram`` is guest physical memory at PA 0.

    Defaults: cr4 = PSE (x86), PAE (pae, x86_64), PAE|LA57 (la57); efer = 0
    (x86), NXE (pae), LME|NXE (x86_64, la57).  The mode's required bits
    (PAE, LA57, LME) are forced on; CR0.PG is forced on.
    """
    defaults = {
        "x86": (_CR4_PSE, 0),
        "pae": (_CR4_PAE, _EFER_NXE),
        "x86_64": (_CR4_PAE, _EFER_LME | _EFER_NXE),
        "la57": (_CR4_PAE | _CR4_LA57, _EFER_LME | _EFER_NXE),
    }
    if mode not in defaults:
        raise ValueError(f"unknown x86 mode {mode!r}")
    d_cr4, d_efer = defaults[mode]
    cr4 = d_cr4 if cr4 is None else cr4
    efer = d_efer if efer is None else efer
    if mode == "x86":
        cr4 &= ~(_CR4_PAE | _CR4_LA57)
    elif mode == "pae":
        cr4 = (cr4 | _CR4_PAE) & ~_CR4_LA57
    elif mode == "x86_64":
        cr4 = (cr4 | _CR4_PAE) & ~_CR4_LA57
        efer |= _EFER_LME
    else:
        cr4 |= _CR4_PAE | _CR4_LA57
        efer |= _EFER_LME
    if mode in ("x86", "pae"):
        efer &= ~_EFER_LME
    return X86Oracle(
        mode, ram, cr3=cr3, cr0=cr0 | 0x80000001, cr4=cr4, efer=efer, cpu_model=cpu_model
    )


# ----------------------------------------------------------------------- AArch64

_A64_LOW_CODE = 0x0000_0000_0001_0000
_A64_HIGH_CODE = 0xFFFF_FFFF_FFFF_0000
_A64_PRIV_TXSZ = 25  # private half: 39-bit VA, 4K granule, walk starts at level 1
_A64_INSNS = (
    0xD5087800,  # 0: AT S1E1R, X0
    0xD5087820,  # 1: AT S1E1W, X0
    0xD5087840,  # 2: AT S1E0R, X0
    0xD5087860,  # 3: AT S1E0W, X0
    0xD61F0000,  # 4: BR X0
    0xD5184020,  # 5: MSR ELR_EL1, X0
    0xD5184001,  # 6: MSR SPSR_EL1, X1
    0xD69F03E0,  # 7: ERET
)
_A64_SCRATCH = 0x10000
# Sysregs as (crn, crm, op0, op1, op2) for UC_ARM64_REG_CP_REG.
_SCR_EL3 = (1, 1, 3, 6, 0)
_HCR_EL2 = (1, 1, 3, 4, 0)
_SCTLR_EL1 = (1, 0, 3, 0, 0)
_TTBR0_EL1 = (2, 0, 3, 0, 0)
_TTBR1_EL1 = (2, 0, 3, 0, 1)
_TCR_EL1 = (2, 0, 3, 0, 2)
_MAIR_EL1 = (10, 2, 3, 0, 0)
_PAR_EL1 = (7, 4, 3, 0, 0)

# TCR_EL1 fields owned by each half (Arm ARM D17 TCR_EL1).
_TCR_T0 = 0x3F | (1 << 7) | (0x3 << 8) | (0x3 << 10) | (0x3 << 12) | (0x3 << 14)
_TCR_T0 |= (1 << 37) | (1 << 41) | (1 << 51) | (1 << 53) | (1 << 55)
_TCR_T1 = (0x3F << 16) | (1 << 23) | (0x3 << 24) | (0x3 << 26) | (0x3 << 28) | (0x3 << 30)
_TCR_T1 |= (1 << 38) | (1 << 42) | (1 << 52) | (1 << 54) | (1 << 56)
_TCR_T0_PRIV = _A64_PRIV_TXSZ  # TG0=00 (4K), EPD0=0, TBI0=0
_TCR_T1_PRIV = (_A64_PRIV_TXSZ << 16) | (0x2 << 30)  # TG1=10 (4K)


def _decode_fsc(fsc: int) -> tuple[str, int | None]:
    kind = {0: "address_size", 1: "translation", 2: "access_flag", 3: "permission"}
    if fsc >> 4 == 0:
        return kind[(fsc >> 2) & 3], fsc & 3
    return "other", None


class _A64Layout:
    """Private tables and code page placed just above the caller's RAM."""

    def __init__(self, base: int, big_endian: bool) -> None:
        self.base = base
        self.fmt = ">Q" if big_endian else "<Q"
        self.low_l1, self.high_l1 = base + 0x1000, base + 0x4000
        self.code = base + 0x7000


def _a64_build_private(mem: _SharedRam, lay: _A64Layout) -> None:
    mem.write(lay.code, b"".join(struct.pack("<I", i) for i in _A64_INSNS))
    for l1, va in ((lay.low_l1, _A64_LOW_CODE), (lay.high_l1, _A64_HIGH_CODE)):
        l2, l3 = l1 + 0x1000, l1 + 0x2000
        mem.write(l1 + ((va >> 30) & 0x1FF) * 8, struct.pack(lay.fmt, l2 | 3))
        mem.write(l2 + ((va >> 21) & 0x1FF) * 8, struct.pack(lay.fmt, l3 | 3))
        # Code page: AP=11 (read-only EL0+EL1), AF=1, UXN=PXN=0, SH=11.
        page = lay.code | 3 | (1 << 10) | (3 << 8) | (3 << 6)
        mem.write(l3 + ((va >> 12) & 0x1FF) * 8, struct.pack(lay.fmt, page))


class AArch64Oracle(Oracle):
    """VMSAv8-64 stage 1, EL1&0 regime, via Unicorn's AArch64 MMU."""

    def __init__(
        self,
        ram: bytes | bytearray | memoryview,
        *,
        ttbr0: int,
        ttbr1: int,
        tcr: int,
        mair: int,
        sctlr: int,
        cpu_model: int | None,
    ) -> None:
        self._mem = _SharedRam(ram, extra=_A64_SCRATCH)
        if self._mem.size > 1 << 32:
            raise ValueError("AArch64 oracle RAM must stay below 4 GiB (private tables)")
        self._lay = _A64Layout(self._mem.ram_size, bool(sctlr & (1 << 25)))
        _a64_build_private(self._mem, self._lay)
        self._ttbr = (ttbr0, ttbr1)
        self._tcr = tcr
        self._mair = mair
        self._sctlr = sctlr
        self._model = cpu_model
        self._intr: list[int] = []
        self._engines: dict[bool, Any] = {}

    # -- engine set-up -------------------------------------------------------
    def _cp(self, mu: Any, reg: tuple[int, int, int, int, int], value: int) -> None:
        mu.reg_write(a64c.UC_ARM64_REG_CP_REG, (*reg, value))

    def _hook(self, mu: Any, intno: int, _data: Any) -> None:
        self._intr.append(intno)
        mu.emu_stop()

    def _engine(self, el0: bool) -> Any:
        if el0 not in self._engines:
            mu = uc_mod.Uc(uc_mod.UC_ARCH_ARM64, uc_mod.UC_MODE_ARM)
            if self._model is not None:
                mu.ctl_set_cpu_model(self._model)
            self._mem.map_into(mu)
            # EL1 must be AArch64 and Non-secure: SCR_EL3.{RW,NS}, HCR_EL2.RW.
            self._cp(mu, _SCR_EL3, (1 << 10) | 1)
            self._cp(mu, _HCR_EL2, 1 << 31)
            self._cp(mu, _MAIR_EL1, self._mair)
            self._cp(mu, _SCTLR_EL1, self._sctlr)
            mu.hook_add(ucc.UC_HOOK_INTR, self._hook)
            self._configure(mu, 0)
            if el0:
                # ERET from EL1 into EL0 at the BR instruction of the high code page.
                land = _A64_HIGH_CODE + 4 * 4
                mu.reg_write(a64c.UC_ARM64_REG_X0, land)
                mu.reg_write(a64c.UC_ARM64_REG_X1, 0)  # SPSR: EL0t, AArch64
                mu.emu_start(_A64_HIGH_CODE + 5 * 4, land)
                if (mu.reg_read(a64c.UC_ARM64_REG_PSTATE) >> 2) & 3 != 0:
                    raise RuntimeError("could not enter EL0")
            self._engines[el0] = mu
        return self._engines[el0]

    def _configure(self, mu: Any, va: int) -> int:
        """Point the half *not* used by ``va`` at the private table; return code VA."""
        if (va >> 55) & 1:
            tcr = (self._tcr & ~_TCR_T0) | _TCR_T0_PRIV
            self._cp(mu, _TTBR0_EL1, self._lay.low_l1)
            self._cp(mu, _TTBR1_EL1, self._ttbr[1])
            code = _A64_LOW_CODE
        else:
            tcr = (self._tcr & ~_TCR_T1) | _TCR_T1_PRIV
            self._cp(mu, _TTBR0_EL1, self._ttbr[0])
            self._cp(mu, _TTBR1_EL1, self._lay.high_l1)
            code = _A64_HIGH_CODE
        self._cp(mu, _TCR_EL1, tcr)
        _flush_tlb(mu)
        return code

    # -- probes ----------------------------------------------------------------
    def _at(self, va: int, access: str, user: bool) -> int:
        mu = self._engine(False)
        code = self._configure(mu, va)
        op = (2 if user else 0) + (1 if access == "write" else 0)
        mu.reg_write(a64c.UC_ARM64_REG_X0, va)
        mu.emu_start(code + 4 * op, code + 4 * op + 4)
        return int(mu.reg_read(a64c.UC_ARM64_REG_CP_REG, _PAR_EL1))

    def _fault(self, fsc: int) -> OracleResult:
        kind, level = _decode_fsc(fsc)
        return OracleResult(pa=None, fault=kind, level=level, fsc=fsc)

    def translate(self, va: int, access: str = "read", user: bool = False) -> OracleResult:
        self._check_access(access)
        va &= (1 << 64) - 1
        if access != "exec":
            par = self._at(va, access, user)
            if par & 1:
                return self._fault((par >> 1) & 0x3F)
            return OracleResult(pa=(par & 0x000F_FFFF_FFFF_F000) | (va & 0xFFF))
        mu = self._engine(user)
        self._configure(mu, va)
        pa = _vmem_translate(mu, va, "exec")
        if pa is not None:
            return OracleResult(pa=pa)
        # Walk faults do not depend on the access kind (Arm ARM D8): take them
        # from a real AT.  Otherwise the fetch failed on permissions; any AT
        # permission fault on the same leaf descriptor reveals its level.
        level = None
        for probe_access, probe_user in (("read", user), ("read", not user), ("write", user)):
            par = self._at(va, probe_access, probe_user)
            if par & 1:
                fsc = (par >> 1) & 0x3F
                kind, lvl = _decode_fsc(fsc)
                if kind != "permission":
                    return self._fault(fsc)
                level = lvl
                break
        fsc = 0x0C | (level if level is not None else 0)
        return OracleResult(pa=None, fault="permission", level=level, fsc=fsc)


def aarch64_oracle(
    ram: bytes | bytearray | memoryview,
    *,
    ttbr0: int,
    ttbr1: int,
    tcr: int,
    mair: int = 0xFF,
    sctlr: int = 0x30D00801,
    cpu_model: int | None = None,
) -> AArch64Oracle:
    """Build an AArch64 stage-1 EL1&0 oracle; ``ram`` is guest PA 0 onwards.

    ``sctlr`` must have M (bit 0) set.  ``cpu_model`` is a UC_CPU_ARM64_*
    constant (default: Unicorn's, Cortex-A72).  The oracle's private tables
    and code occupy 64 KiB of PA right above ``ram`` (rounded to 64 KiB).
    """
    if not sctlr & 1:
        raise ValueError("SCTLR_EL1.M must be set")
    return AArch64Oracle(
        ram, ttbr0=ttbr0, ttbr1=ttbr1, tcr=tcr, mair=mair, sctlr=sctlr, cpu_model=cpu_model
    )


# ------------------------------------------------------------------------ RISC-V

_RV_CAUSE = {"exec": 12, "read": 13, "write": 15}
_MSTATUS_SUM, _MSTATUS_MXR = 1 << 18, 1 << 19


class RiscvOracle(Oracle):
    """Sv32/Sv39/Sv48/Sv57 via Unicorn's RISC-V MMU (S- or U-mode accesses)."""

    def __init__(
        self, ram: bytes | bytearray | memoryview, *, satp: int, xlen: int, sum_: bool, mxr: bool
    ) -> None:
        self._mem = _SharedRam(ram)
        mode = uc_mod.UC_MODE_RISCV32 if xlen == 32 else uc_mod.UC_MODE_RISCV64
        self._mu: Any = uc_mod.Uc(uc_mod.UC_ARCH_RISCV, mode)
        self._mem.map_into(self._mu)
        self._mu.reg_write(rvc.UC_RISCV_REG_SATP, satp)
        mstatus = int(self._mu.reg_read(rvc.UC_RISCV_REG_MSTATUS))
        mstatus &= ~(_MSTATUS_SUM | _MSTATUS_MXR)
        mstatus |= (_MSTATUS_SUM if sum_ else 0) | (_MSTATUS_MXR if mxr else 0)
        self._mu.reg_write(rvc.UC_RISCV_REG_MSTATUS, mstatus)
        self._va_mask = 0xFFFFFFFF if xlen == 32 else (1 << 64) - 1
        if int(self._mu.reg_read(rvc.UC_RISCV_REG_SATP)) != satp & self._va_mask:
            raise ValueError("Unicorn rejected this satp value")

    def translate(self, va: int, access: str = "read", user: bool = False) -> OracleResult:
        self._check_access(access)
        va &= self._va_mask
        self._mu.reg_write(rvc.UC_RISCV_REG_PRIV, 0 if user else 1)
        pa = _vmem_translate(self._mu, va, access)
        if pa is not None:
            return OracleResult(pa=pa)
        return OracleResult(pa=None, fault="page_fault", cause=_RV_CAUSE[access], tval=va)


def riscv_oracle(
    ram: bytes | bytearray | memoryview,
    *,
    satp: int,
    xlen: int = 64,
    sum_: bool = False,
    mxr: bool = False,
) -> RiscvOracle:
    """Build a RISC-V oracle.  ``xlen=32`` for Sv32 (satp MODE bit 31), else 64.

    ``sum_``/``mxr`` set mstatus.SUM/MXR.  Fault causes are the page-fault
    causes implied by the access kind (Unicorn's probe does not report one).
    """
    if xlen not in (32, 64):
        raise ValueError("xlen must be 32 or 64")
    return RiscvOracle(ram, satp=satp, xlen=xlen, sum_=sum_, mxr=mxr)
