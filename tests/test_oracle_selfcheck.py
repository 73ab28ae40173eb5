"""Self-check of the Unicorn oracle against hand-written page tables.

One idea: every table below is literal hex written into a bytearray, and each
expected PA or fault is worked out by hand from the manuals (Intel SDM vol. 3A
ch. 4; Arm ARM D8 VMSAv8-64; RISC-V privileged spec Sv32/39/48/57), so a
broken oracle set-up fails here before it can bless a broken library.
"""

from __future__ import annotations

import struct

from oracles.unicorn_oracle import (
    aarch64_oracle,
    riscv_oracle,
    x86_oracle,
)

MIB = 1 << 20


def put32(ram: bytearray, pa: int, value: int) -> None:
    struct.pack_into("<I", ram, pa, value)


def put64(ram: bytearray, pa: int, value: int) -> None:
    struct.pack_into("<Q", ram, pa, value)


# ----------------------------------------------------------------------- x86


def test_x86_32bit_pse_pse36_faults_and_ad_bits() -> None:
    ram = bytearray(4 * MIB)
    put32(ram, 0x1000, 0x00002007)  # PDE[0] -> PT 0x2000, P|RW|US
    put32(ram, 0x2000 + 5 * 4, 0x00005003)  # VA 0x5000 -> 0x5000, supervisor RW
    put32(ram, 0x2000 + 6 * 4, 0x00007005)  # VA 0x6000 -> 0x7000, user RO
    put32(ram, 0x1000 + 1 * 4, 0x00800083)  # PDE[1]: 4 MiB page -> 0x800000
    put32(ram, 0x1000 + 2 * 4, 0x00806087)  # PDE[2]: 4 MiB, PSE-36 bits 14:13=3
    put32(ram, 0x1000 + 3 * 4, 0x00A00087)  # PDE[3]: 4 MiB with reserved bit 21
    o = x86_oracle("x86", ram, cr3=0x1000)

    assert o.translate(0x5123).pa == 0x5123
    assert o.translate(0x6ABC, user=True).pa == 0x7ABC
    assert o.translate(0x412345).pa == 0x812345
    assert o.translate(0x812345).pa == 0x3_0081_2345

    r = o.translate(0x9000, "write")
    assert r.pa is None and r.vector == 14 and r.error_code == 0x2 and r.cr2 == 0x9000
    r = o.translate(0xC00000)
    assert r.pa is None and r.error_code == 0x9  # RSVD | P
    r = o.translate(0x5000, user=True)
    assert r.pa is None and r.error_code == 0x5  # U/S | P
    r = o.translate(0x6000, "write", user=True)
    assert r.pa is None and r.error_code == 0x7

    # A set on PDE and PTE by the read above; D only after a write.
    assert struct.unpack_from("<I", o.read_phys(0x1000, 4))[0] & 0x20
    assert not struct.unpack_from("<I", o.read_phys(0x2014, 4))[0] & 0x40
    assert o.translate(0x5000, "write").pa == 0x5000
    assert struct.unpack_from("<I", o.read_phys(0x2014, 4))[0] & 0x60 == 0x60


def test_x86_pae_2m_page_and_nx() -> None:
    ram = bytearray(4 * MIB)
    put64(ram, 0x1000, 0x2001)  # PDPTE[0] -> PD 0x2000 (PAE PDPTEs: P only)
    put64(ram, 0x2000, 0x3007)  # PDE[0] -> PT 0x3000
    put64(ram, 0x3000 + 4 * 8, 0x8000_0000_0000_9003)  # VA 0x4000 -> 0x9000, XD
    put64(ram, 0x2000 + 1 * 8, 0x0040_0083)  # PDE[1]: 2 MiB page -> 0x400000
    o = x86_oracle("pae", ram, cr3=0x1000)
    assert o.translate(0x4567).pa == 0x9567
    assert o.translate(0x2ABCDE).pa == 0x4ABCDE
    r = o.translate(0x4000, "exec")
    assert r.pa is None and r.error_code == 0x11  # I/D | P


def test_x86_64_1g_page_noncanonical_and_user_write() -> None:
    ram = bytearray(4 * MIB)
    va = 0xFFFF_8000_0020_3000  # PML4 256, PDPT 0, PD 1, PT 3
    put64(ram, 0x1000 + 256 * 8, 0x2007)
    put64(ram, 0x2000, 0x3007)
    put64(ram, 0x3000 + 1 * 8, 0x4007)
    put64(ram, 0x4000 + 3 * 8, 0x0000_0000_0012_3005)  # user, read-only
    put64(ram, 0x1000, 0x5007)  # PML4[0] -> PDPT 0x5000
    put64(ram, 0x5000 + 1 * 8, 0x8000_0000_C000_0083)  # 1 GiB page -> 0xC0000000, XD
    o = x86_oracle("x86_64", ram, cr3=0x1000)
    assert o.translate(va + 0x45).pa == 0x123045
    assert o.translate(0x7654_3210).pa == 0xF654_3210
    assert o.translate(0x7654_3210, "exec").error_code == 0x11
    r = o.translate(va, "write", user=True)
    assert r.pa is None and r.error_code == 0x7
    r = o.translate(0x0000_8000_0000_0000)
    assert r.pa is None and r.vector == 13


def test_x86_la57_five_levels() -> None:
    ram = bytearray(1 * MIB)
    va = 0xFF00_0000_0012_3000  # PML5 256, then 0, 0, 0, PT 0x123
    put64(ram, 0x1000 + 256 * 8, 0x2003)
    put64(ram, 0x2000, 0x3003)
    put64(ram, 0x3000, 0x4003)
    put64(ram, 0x4000, 0x5003)
    put64(ram, 0x5000 + 0x123 * 8, 0x9003)
    o = x86_oracle("la57", ram, cr3=0x1000)
    assert o.translate(va + 0x10).pa == 0x9010
    assert o.translate(va - 0x1000).error_code == 0x0  # PT entry 0x122 not present
    # A 4-level reading of the same VA would be non-canonical: LA57 is really on.
    assert o.translate(0x00FF_8000_0000_0000).vector == 14


# ------------------------------------------------------------------- AArch64

TCR_4K_48 = 16 | (16 << 16) | (0b10 << 30) | (0b010 << 32)  # T0SZ=T1SZ=16, TG1=4K, IPS=40


def _a64_tables() -> bytearray:
    ram = bytearray(4 * MIB)
    put64(ram, 0x1000, 0x2003)  # L0[0] -> L1 0x2000
    put64(ram, 0x2000, 0x3003)  # L1[0] -> L2 0x3000
    put64(ram, 0x3000, 0x4003)  # L2[0] -> L3 0x4000
    put64(ram, 0x4000 + 5 * 8, 0x9403)  # VA 0x5000: page, AF, AP=00 (EL1 RW)
    put64(ram, 0x4000 + 6 * 8, 0xA003)  # VA 0x6000: page, AF=0
    put64(ram, 0x4000 + 7 * 8, 0xB401)  # VA 0x7000: type 01 at level 3 = invalid
    put64(ram, 0x4000 + 8 * 8, 0xC443)  # VA 0x8000: AP=01 (EL0 RW), AF
    put64(ram, 0x3000 + 1 * 8, 0x0020_0401)  # L2[1]: 2 MiB block -> 0x200000
    put64(ram, 0x5000 + 511 * 8, 0x6003)  # TTBR1 L0[511] -> L1 0x6000
    put64(ram, 0x6000 + 511 * 8, 0x4000_0401)  # 1 GiB block -> 0x40000000
    return ram


def test_aarch64_pages_blocks_and_faults() -> None:
    o = aarch64_oracle(_a64_tables(), ttbr0=0x1000, ttbr1=0x5000, tcr=TCR_4K_48)
    assert o.translate(0x5123).pa == 0x9123
    assert o.translate(0x20_1234).pa == 0x20_1234
    assert o.translate(0xFFFF_FFFF_C123_4567).pa == 0x4123_4567

    r = o.translate(0x7000)
    assert (r.pa, r.fault, r.level, r.fsc) == (None, "translation", 3, 0x07)
    r = o.translate(0x6000, "write")
    assert (r.fault, r.level, r.fsc) == ("access_flag", 3, 0x0B)
    r = o.translate(0x5000, user=True)
    assert (r.fault, r.level, r.fsc) == ("permission", 3, 0x0F)
    r = o.translate(0x20_0000, "write", user=True)
    assert (r.fault, r.level) == ("permission", 2)
    r = o.translate(0x1_0000_0000_0000)  # between the two VA ranges
    assert (r.fault, r.level) == ("translation", 0)

    assert o.translate(0x8000, "exec", user=True).pa == 0xC000
    r = o.translate(0x8000, "exec")  # EL0-writable => never EL1-executable
    assert (r.pa, r.fault) == (None, "permission")  # level unknown: every AT succeeds
    r = o.translate(0x5000, "exec", user=True)  # UXN=0: EL0 may execute an EL1-only page
    assert r.pa == 0x9000
    assert o.translate(0x6000, "exec").fault == "access_flag"


def test_aarch64_64k_granule() -> None:
    ram = bytearray(4 * MIB)
    # T0SZ=22 (42-bit VA) with 64K granule: walk starts at level 2.
    put64(ram, 0x10000, 0x20003)  # L2[0] -> L3 0x20000
    put64(ram, 0x20000 + 3 * 8, 0x0003_0403)  # VA 0x30000 -> 64K page 0x30000
    put64(ram, 0x10000 + 1 * 8, 0x2000_0401)  # L2[1]: 512 MiB block -> 0x20000000
    tcr = 22 | (0b01 << 14) | (1 << 23) | (0b10 << 30) | (0b010 << 32)  # EPD1
    o = aarch64_oracle(ram, ttbr0=0x10000, ttbr1=0, tcr=tcr)
    assert o.translate(0x3_ABCD).pa == 0x3_ABCD
    assert o.translate(0x2123_4567).pa == 0x2123_4567
    assert o.translate(0x4_0000).fault == "translation"


# -------------------------------------------------------------------- RISC-V

V, R, W, X, U, A, D = 1, 2, 4, 8, 16, 64, 128


def _pte(pa: int, flags: int) -> int:
    return ((pa >> 12) << 10) | flags


def test_riscv_sv39_pages_faults_and_ad() -> None:
    ram = bytearray(4 * MIB)
    put64(ram, 0x1000, _pte(0x2000, V))  # L2[0] -> 0x2000
    put64(ram, 0x2000, _pte(0x3000, V))  # L1[0] -> 0x3000
    put64(ram, 0x3000 + 5 * 8, _pte(0x9000, V | R | W))  # supervisor RW, A=D=0
    put64(ram, 0x3000 + 6 * 8, _pte(0xA000, V | R | U | A))  # user RO
    put64(ram, 0x3000 + 7 * 8, _pte(0xB000, V | W))  # W without R: reserved
    put64(ram, 0x2000 + 1 * 8, _pte(0x20_0000, V | R | X | A))  # 2 MiB megapage
    o = riscv_oracle(ram, satp=(8 << 60) | 1)
    assert o.translate(0x5123).pa == 0x9123
    assert struct.unpack_from("<Q", o.read_phys(0x3028, 8))[0] & (A | D) == A
    assert o.translate(0x5123, "write").pa == 0x9123
    assert struct.unpack_from("<Q", o.read_phys(0x3028, 8))[0] & (A | D) == A | D
    assert o.translate(0x2F_FFFF, "exec").pa == 0x2F_FFFF
    assert o.translate(0x6000, user=True).pa == 0xA000
    r = o.translate(0x5000, user=True)
    assert (r.pa, r.cause, r.tval) == (None, 13, 0x5000)
    assert o.translate(0x6000).cause == 13  # SUM=0: S-mode may not touch U pages
    assert o.translate(0x6000, "write", user=True).cause == 15
    assert o.translate(0x7000).cause == 13
    assert o.translate(0x8000, "exec").cause == 12
    assert riscv_oracle(ram, satp=(8 << 60) | 1, sum_=True).translate(0x6000).pa == 0xA000


def test_riscv_sv48_sv57_sv32() -> None:
    ram = bytearray(4 * MIB)
    put64(ram, 0x1000 + 1 * 8, _pte(0x2000, V))  # Sv48 L3[1]: VA bit 39
    put64(ram, 0x2000, _pte(0x4000_0000, V | R | W | A | D))  # 1 GiB gigapage
    o48 = riscv_oracle(ram, satp=(9 << 60) | 1)
    assert o48.translate(0x80_1234_5678).pa == 0x5234_5678

    put64(ram, 0x5000 + 1 * 8, _pte(0x1000, V))  # Sv57 L4[1]: VA bit 48
    o57 = riscv_oracle(ram, satp=(10 << 60) | 5)
    assert o57.translate(0x1_0080_1234_5678).pa == 0x5234_5678
    assert o57.translate(0x80_1234_5678).cause == 13

    ram32 = bytearray(1 * MIB)
    put32(ram32, 0x1000 + 1 * 4, _pte(0x40_0000, V | R | W | X | A | D))  # 4 MiB megapage
    put32(ram32, 0x1000 + 2 * 4, _pte(0x30_0000, V | R))  # misaligned megapage
    o32 = riscv_oracle(ram32, satp=(1 << 31) | 1, xlen=32)
    assert o32.translate(0x41_2345).pa == 0x41_2345
    assert o32.translate(0x80_0000).pa is None
