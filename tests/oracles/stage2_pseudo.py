"""Stage-2 translation written out from the manuals' own procedures, as an oracle for tests.

Nothing here imports :mod:`pagewalk.formats`: each function follows one manual's description
step by step, on a ``read(pa) -> int`` of 8-byte entries, so the codecs can be compared with it.

- :func:`ept_translate`: Intel SDM vol. 3C §29.3.2 "EPT Translation Mechanism" (the walk, the
  entry formats in tables 29-1 to 29-6) and §29.3.3.1 "EPT Misconfigurations".
- :func:`s2_walk`: Arm ARM (DDI 0487) ``AArch64.S2Walk`` with ``AArch64.S2StartLevel``,
  ``AArch64.S2InconsistentSL``, the descriptor decode and the Access flag / Address size checks.
- :func:`gstage_walk`: the RISC-V privileged spec's "Virtual Address Translation Process" as the
  hypervisor chapter changes it for G-stage Sv39x4/Sv48x4/Sv57x4 (hgatp, 16-KiB root, 2 extra
  GPA bits, zero-extended GPA, U required on leaves). A/D are left to the MMU, as in the codec.

Each returns an :class:`Outcome`: the output address and page size, or the fault kind (the codec's
vocabulary: ``not-present``/``reserved`` for EPT violation/misconfiguration, ``translation``/
``access-flag``/``address-size`` for Arm, ``page-fault`` for RISC-V) and level number, plus the
permissions the leaf grants: readable, writable, user-executable, supervisor-executable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Read = Callable[[int], int]


@dataclass(frozen=True)
class Outcome:
    pa: int | None
    size: int | None
    fault: tuple[str, int | None] | None
    r: bool = False
    w: bool = False
    xu: bool = False
    xs: bool = False


def _field(value: int, hi: int, lo: int) -> int:
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


# ------------------------------------------------------------------------- Intel EPT
def ept_translate(
    read: Read,
    eptp: int,
    gpa: int,
    *,
    n: int = 52,
    mbec: bool = False,
    exec_only: bool = True,
    page_1g: bool = True,
) -> Outcome:
    """SDM §29.3.2: bits 47:39 (and 56:48 with a 5-level walk) select the first entry from the
    table EPTP bits N-1:12 locate; each entry's bits N-1:12 locate the next table; an EPT PDPTE
    (PDE) with bit 7 = 1 maps a 1-GByte (2-MByte) page; an EPT PTE maps a 4-KByte page."""
    walk_length = _field(eptp, 5, 3) + 1
    table = _field(eptp, n - 1, 12) << 12
    r = w = xs = xu = True
    for level in range(walk_length, 0, -1):  # 5 = PML5 .. 1 = PT
        index = _field(gpa, 12 + 9 * level - 1, 12 + 9 * (level - 1))
        e = read(table + 8 * index)
        present = _field(e, 2, 0) != 0 or (mbec and _field(e, 10, 10) == 1)
        if not present:
            return Outcome(None, None, ("not-present", level))
        # §29.3.3.1: the misconfigurations
        rwx = _field(e, 2, 0)
        if rwx in (0b010, 0b110):
            return Outcome(None, None, ("reserved", level))
        if rwx == 0b100 and not exec_only:
            return Outcome(None, None, ("reserved", level))
        if n < 52 and _field(e, 51, n):
            return Outcome(None, None, ("reserved", level))
        maps_page = level == 1 or (
            _field(e, 7, 7) == 1 and (level == 2 or (level == 3 and page_1g))
        )
        if maps_page:
            if _field(e, 5, 3) in (2, 3, 7):
                return Outcome(None, None, ("reserved", level))
            if level == 3 and _field(e, 29, 12):
                return Outcome(None, None, ("reserved", level))
            if level == 2 and _field(e, 20, 12):
                return Outcome(None, None, ("reserved", level))
        elif level >= 4 or (level == 3 and not page_1g):
            if _field(e, 7, 3):  # bits 7:3 reserved in PML5E, PML4E (and PDPTE w/o 1G)
                return Outcome(None, None, ("reserved", level))
        elif _field(e, 6, 3):  # a PDPTE or PDE that references a table: bits 6:3 reserved
            return Outcome(None, None, ("reserved", level))
        r = r and bool(e & 1)
        w = w and bool(e & 2)
        xs = xs and bool(e & 4)
        xu = xu and bool(e & (1 << 10) if mbec else e & 4)
        if maps_page:
            size_bits = 12 + 9 * (level - 1)
            base = _field(e, n - 1, size_bits) << size_bits
            pa = base | _field(gpa, size_bits - 1, 0)
            return Outcome(pa, 1 << size_bits, None, r, w, xu, xs)
        table = _field(e, n - 1, 12) << 12
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------- Arm stage 2
def s2_walk(read: Read, vtcr: int, vttbr: int, ipa: int, *, xnx: bool = True) -> Outcome:
    """``AArch64.S2Walk`` for a 4K/16K/64K granule without FEAT_LPA/LPA2/TTST."""
    granulebits = {0b00: 12, 0b01: 16, 0b10: 14}[_field(vtcr, 15, 14)]
    stride = granulebits - 3
    sl0 = _field(vtcr, 7, 6)
    startlevel = {12: {0: 2, 1: 1, 2: 0}, 14: {0: 3, 1: 2, 2: 1}, 16: {0: 3, 1: 2, 2: 1}}[
        granulebits
    ][sl0]
    iasize = 64 - _field(vtcr, 5, 0)
    pasize = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48}[_field(vtcr, 18, 16)]
    ha = _field(vtcr, 21, 21) == 1
    if _field(ipa, 63, iasize) if iasize < 64 else 0:
        return Outcome(None, None, ("translation", 0))
    # the start level resolves IPA bits iasize-1 : granulebits + (3 - startlevel) * stride
    startsizelog2 = iasize - (granulebits + (3 - startlevel) * stride)
    baselowerbound = max(3 + startsizelog2, 6)
    baseaddress = _field(vttbr, 47, baselowerbound) << baselowerbound
    if baseaddress >> pasize:
        return Outcome(None, None, ("address-size", 0))
    level = startlevel
    table = baseaddress
    while True:
        lsb = granulebits + (3 - level) * stride
        msb = iasize - 1 if level == startlevel else lsb + stride - 1
        desc = read(table + 8 * _field(ipa, msb, lsb))
        if _field(desc, 0, 0) == 0:
            return Outcome(None, None, ("translation", level))
        if _field(desc, 1, 1) == 1 and level < 3:  # table descriptor
            nexttable = _field(desc, 47, granulebits) << granulebits
            if nexttable >> pasize:
                return Outcome(None, None, ("address-size", level))
            table = nexttable
            level += 1
            continue
        if level == 3 and _field(desc, 1, 1) == 0:
            return Outcome(None, None, ("translation", level))
        block_ok = {12: (1, 2), 14: (2,), 16: (2,)}[granulebits]
        if level < 3 and level not in block_ok:
            return Outcome(None, None, ("translation", level))
        oa = _field(desc, 47, lsb) << lsb
        if oa >> pasize:
            return Outcome(None, None, ("address-size", level))
        if _field(desc, 10, 10) == 0 and not ha:
            return Outcome(None, None, ("access-flag", level))
        xn = _field(desc, 54, 53) if xnx else _field(desc, 54, 54) * 0b10
        # XN[1:0]: 00 both execute, 01 EL1 not, 10 neither, 11 EL0 not
        xs = xn in (0b00, 0b11)
        xu = xn in (0b00, 0b01)
        r, w = bool(_field(desc, 6, 6)), bool(_field(desc, 7, 7))
        return Outcome(oa | _field(ipa, lsb - 1, 0), 1 << lsb, None, r, w, xu, xs)


# ------------------------------------------------------------------------- RISC-V G-stage
def gstage_walk(read: Read, hgatp: int, gpa: int) -> Outcome:
    """The translation process for Sv39x4/Sv48x4/Sv57x4 (PAGESIZE 4096, PTESIZE 8)."""
    levels = {8: 3, 9: 4, 10: 5}[_field(hgatp, 63, 60)]
    gpa_bits = 12 + 9 * levels + 2
    if gpa >> gpa_bits:  # "bits 63:41 of the GPA must all be zeros" (Sv39x4)
        return Outcome(None, None, ("page-fault", None))
    # 1. a = hgatp.ppn x PAGESIZE (16-KiB aligned: PPN[1:0] read as zero), i = LEVELS - 1
    a = (_field(hgatp, 43, 0) & ~3) * 4096
    i = levels - 1
    while True:
        vpn_hi = 12 + 9 * i + (10 if i == levels - 1 else 8)
        vpn = _field(gpa, vpn_hi, 12 + 9 * i)
        # 2. pte = the PTE at a + va.vpn[i] x PTESIZE
        pte = read(a + vpn * 8)
        v, r, w, x, u = (_field(pte, b, b) for b in (0, 1, 2, 3, 4))
        # 3. invalid, W without R, or reserved bits 63:54 -> page fault
        if v == 0 or (r == 0 and w == 1) or _field(pte, 63, 54):
            return Outcome(None, None, ("page-fault", i))
        # 4. not a leaf: D, A, U reserved; next level
        if r == 0 and x == 0:
            if _field(pte, 7, 6) or u:
                return Outcome(None, None, ("page-fault", i))
            i -= 1
            if i < 0:
                return Outcome(None, None, ("page-fault", 0))
            a = _field(pte, 53, 10) * 4096
            continue
        # 5-6. a leaf; G-stage accesses are user-level: U must be 1
        if u == 0:
            return Outcome(None, None, ("page-fault", i))
        # 7. a misaligned superpage
        if i > 0 and _field(pte, 10 + 9 * i - 1, 10):
            return Outcome(None, None, ("page-fault", i))
        ppn = _field(pte, 53, 10)
        size_bits = 12 + 9 * i
        pa = ((ppn >> (9 * i)) << size_bits) | _field(gpa, size_bits - 1, 0)
        return Outcome(pa, 1 << size_bits, None, bool(r), bool(w), bool(x), bool(x))
