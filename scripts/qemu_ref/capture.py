"""Recording one stop: registers, the ELF core, ``info mem``/``info tlb``, ``gva2gpa``
answers and their check against QEMU's own listing, PAE PDPTEs, the user marker.

One idea: at a stopped VM, write out/ so a test can compare pagewalk's walk of the core with
QEMU's MMU. Intel SDM vol. 3A ch. 4 (4.4.1: the 4 PAE PDPTEs at CR3 bits 31:5, Table 4-8
reserved bits), Arm ARM D8 (TTBR0/1_EL1) and the RISC-V privileged spec (satp, U bit and
sstatus.SUM of 4.3).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import time
from pathlib import Path
from typing import Any

from .boot import Boot
from .candidates import (
    I386_PAE_PA_MASK,
    arm_candidates,
    i386_candidates,
    riscv_candidates,
    x86_candidates,
)
from .elfcore import parse_notes, read_phys, summarize_core
from .guest import USER_MARKER
from .monitor import QMP, gva2gpa
from .parse import (
    MemRange,
    TlbEntry,
    decode_satp,
    mem_lookup,
    parse_arm_registers,
    parse_info_tlb,
    parse_riscv_info_mem,
    parse_riscv_registers,
    parse_x86_registers,
    tlb_lookup,
    vmcoreinfo_values,
)
from .profiles import NEW_ARCHES

PAGE_CHECK_TARGET = 4000  # pages per stop; gva2gpa costs about 1 ms each through QMP


def check_pages(
    qmp: QMP, runs: list[tuple[int, int, int | None]], every_page: bool
) -> dict[str, Any]:
    """gva2gpa against what QEMU's own listing (`info tlb` / riscv `info mem`) implies, for
    runs (va, pages, expected pa of the first page or None): every page with every_page,
    else the first and last page of each run and every stride-th page (about
    PAGE_CHECK_TARGET in all). What disagrees is listed (the first 20)."""
    t0 = time.monotonic()
    total = sum(n for _, n, _ in runs)
    stride = 1 if every_page else max(1, -(-total // PAGE_CHECK_TARGET))
    checked = 0
    bad = []
    for va, n, pa in runs:
        for i in sorted({*range(0, n, stride), n - 1}):
            checked += 1
            exp = None if pa is None else pa + i * 0x1000
            got = gva2gpa(qmp, va + i * 0x1000)
            if got != exp:
                bad.append({"va": va + i * 0x1000, "expected": exp, "gva2gpa": got})
    return {
        "pages_listed": total,
        "stride": stride,
        "pages_checked": checked,
        "mismatches": len(bad),
        "first_mismatches": bad[:20],
        "seconds": round(time.monotonic() - t0, 1),
    }


def capture(
    boot: Boot,
    qmp: QMP,
    regs_text: str,
    out: Path,
    mode: str,
    user_maps: list[tuple[int, int, str]],
    ksyms: dict[str, int],
    layout: dict[str, int],
) -> dict[str, Any]:
    """Record everything about the current stop into out/ (the VM must be stopped)."""
    out.mkdir(parents=True, exist_ok=True)
    prof = boot.prof
    (out / "registers.txt").write_text(regs_text)
    t0 = time.monotonic()
    core = out / "vmcore.elf"
    qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{core}"})
    t_dump = time.monotonic() - t0
    core.chmod(0o644)  # QEMU creates it 0400
    core_info = summarize_core(core, prof.arch)
    vmci = vmcoreinfo_values(core_info.get("vmcoreinfo", ""))
    info: dict[str, Any] = {"mode": mode, "dump_seconds": round(t_dump, 2)}
    large = 0x200000
    ranges: list[MemRange] = []
    if prof.arch in NEW_ARCHES:
        info["elf"] = core_info["elf"]
        vmci = {**boot.vmci_ram, **vmci}
    if prof.arch == "i386":
        regs = parse_x86_registers(regs_text)
        pae = bool(regs["CR4"] & (1 << 5))
        large = 0x200000 if pae else 0x400000
        (out / "info_mem.txt").write_text(qmp.hmp("info mem"))
        tlb_text = qmp.hmp("info tlb")
        (out / "info_tlb.txt").write_text(tlb_text)
        # With PAE, QEMU's `info tlb` prints `pte & ~0xfff` (2M: `& ~0xfffff`), so the PA
        # column keeps bit 63 (XD) and the other high bits; the PA is bits 51:12.
        raw_tlb = parse_info_tlb(tlb_text)
        tlb = [TlbEntry(e.va, e.pa & I386_PAE_PA_MASK, e.flags) for e in raw_tlb]
        cands = i386_candidates(tlb, regs, {**vmci, **_ksym_keys(ksyms)}, large)
        ident = {"cr3": regs["CR3"]}
        info.update(
            cr0=regs["CR0"],
            cr3=regs["CR3"],
            cr4=regs["CR4"],
            efer=regs.get("EFER"),
            cpl=regs["CPL"],
            cs=regs.get("CS_SEL"),
            pae=pae,
            pse=bool(regs["CR4"] & (1 << 4)),
            cr3_page_aligned=regs["CR3"] & 0xFFF == 0,
            info_tlb_entries=len(tlb),
            info_tlb_pa_column_with_bit63=sum(e.pa >> 63 for e in raw_tlb),
        )
        if pae:
            info["pdptes"] = pae_pdptes(qmp, core, regs["CR3"])
        qs = core_info.get("qemu_cpu_state", {})
        info["elf_note_cr3_matches"] = qs.get("cr3") == regs["CR3"]
        info["elf_note_eip_matches"] = core_info.get("prstatus", {}).get("eip") == regs.get("EIP")
    elif prof.arch == "riscv64":
        regs = parse_riscv_registers(regs_text)
        assert boot.gdb is not None
        csrs = boot.gdb.riscv_csrs()
        (out / "sysregs.json").write_text(
            json.dumps({k: f"{v:#018x}" for k, v in csrs.items()}, indent=1) + "\n"
        )
        satp = decode_satp(regs["satp"])
        mem_text = qmp.hmp("info mem")
        (out / "info_mem.txt").write_text(mem_text)
        ranges = parse_riscv_info_mem(mem_text)
        tlb = []
        cands = riscv_candidates(
            ranges,
            {**regs, **csrs},
            {**vmci, **_ksym_keys(ksyms)},
            satp["va_bits"],
            [start for start, _, _ in user_maps] if mode == "user" else [],
        )
        ident = {"satp": regs["satp"]}
        info.update(
            priv=csrs.get("priv"),
            pc=regs.get("pc"),
            satp=regs["satp"],
            satp_decoded=satp,
            satp_gdb_matches=csrs.get("satp") == regs["satp"],
            sstatus=csrs.get("sstatus"),
            info_mem_lines=len(ranges),
            info_mem_bytes=sum(r.size for r in ranges),
        )
        pr = core_info.get("prstatus", {})
        info["elf_note_pc_matches"] = pr.get("pc") == regs.get("pc")
    elif prof.arch == "x86_64":
        regs = parse_x86_registers(regs_text)
        la57 = bool(regs["CR4"] & (1 << 12))
        (out / "info_mem.txt").write_text(qmp.hmp("info mem"))
        tlb_text = qmp.hmp("info tlb")
        (out / "info_tlb.txt").write_text(tlb_text)
        tlb = parse_info_tlb(tlb_text)
        cands = x86_candidates(tlb, regs, {**vmci, **_ksym_keys(ksyms)}, la57, layout)
        ident = {"cr3": regs["CR3"]}
        info.update(
            cr0=regs["CR0"],
            cr3=regs["CR3"],
            cr4=regs["CR4"],
            efer=regs.get("EFER"),
            cpl=regs["CPL"],
            cs=regs.get("CS_SEL"),
            la57=la57,
            info_tlb_entries=len(tlb),
        )
        qs = core_info.get("qemu_cpu_state", {})
        info["elf_note_cr3_matches"] = qs.get("cr3") == regs["CR3"]
    else:
        regs = parse_arm_registers(regs_text)
        assert boot.gdb is not None
        sysregs = boot.gdb.system_registers()
        (out / "sysregs.json").write_text(
            json.dumps({k: f"{v:#018x}" for k, v in sysregs.items()}, indent=1) + "\n"
        )
        cands = arm_candidates(
            regs,
            sysregs,
            {**vmci, **_ksym_keys(ksyms)},
            [start for start, _, _ in user_maps] if mode == "user" else [],
        )
        ident = {k.lower(): sysregs[k] for k in ("TTBR0_EL1", "TTBR1_EL1") if k in sysregs}
        info.update(
            el=regs.get("EL"),
            pc=regs.get("PC"),
            ttbr0_el1=sysregs.get("TTBR0_EL1"),
            ttbr1_el1=sysregs.get("TTBR1_EL1"),
            tcr_el1=sysregs.get("TCR_EL1"),
            mair_el1=sysregs.get("MAIR_EL1"),
            sctlr_el1=sysregs.get("SCTLR"),
        )
        pr = core_info.get("prstatus", {})
        info["elf_note_pc_matches"] = pr.get("pc") == regs.get("PC")
        tlb = []
    answers = []
    mismatches = 0
    for va, lab in cands:
        pa = gva2gpa(qmp, va)
        answers.append({**ident, "va": va, "pa": pa, "label": lab})
        if tlb:
            exp = tlb_lookup(tlb, va, large)
            if exp != pa and not (exp is None and "inside large page" in lab):
                mismatches += 1
        elif ranges and mem_lookup(ranges, va, mode == "user") != pa:
            mismatches += 1
    if prof.arch == "riscv64":
        info["gva2gpa_vs_info_mem_mismatches"] = mismatches
    if prof.arch in NEW_ARCHES:
        # The pages QEMU's own listing says are mapped, through QEMU's real MMU code.
        if prof.arch == "i386":
            runs: list[tuple[int, int, int | None]] = [
                (e.va, (large if e.large else 0x1000) >> 12, e.pa) for e in tlb
            ]
        else:
            runs = [
                (r.va, r.size >> 12, None if mode == "user" and "u" not in r.attr else r.pa)
                for r in ranges
            ]
        info["gva2gpa_page_check"] = check_pages(qmp, runs, boot.every_page)
    if mode == "user":
        found = find_user_marker(qmp, core, user_maps)
        info["user_marker_pages"] = [{"va": va, "pa": pa} for va, pa in found]
        seen = {a["va"] for a in answers}
        for va, pa in found:
            if va not in seen:
                answers.append({**ident, "va": va, "pa": pa, "label": "page holding USER_MARKER"})
    (out / "gva2gpa.json").write_text(json.dumps(answers, indent=1) + "\n")
    info["gva2gpa_count"] = len(answers)
    info["gva2gpa_mapped"] = sum(a["pa"] is not None for a in answers)
    if tlb:
        info["gva2gpa_vs_info_tlb_mismatches"] = mismatches
    info["core"] = {
        "file": "vmcore.elf",
        "bytes": core.stat().st_size,
        "sha256": sha256(core),
        "notes": core_info["notes"],
    }
    if "vmcoreinfo" in core_info:
        (out / "vmcoreinfo.txt").write_text(core_info["vmcoreinfo"])
    return info


PAE_PDPTE_RESERVED = 0x1E6  # bits 2:1 and 8:5 (SDM "Format of a PAE PDPTE"); 5 is A elsewhere


def pae_pdptes(qmp: QMP, core: Path, cr3: int) -> list[dict[str, Any]]:
    """The 4 PDPTEs at CR3 (bits 31:5), as QEMU's `xp` and the core's bytes show them."""
    base = cr3 & 0xFFFFFFE0
    xp = [int(v, 16) for v in re.findall(r"0x([0-9a-f]{16})", qmp.hmp(f"xp /4gx {base:#x}"))]
    raw = read_phys(core, base, 32)
    out = []
    for i in range(4):
        v = struct.unpack_from("<Q", raw, 8 * i)[0] if raw is not None else None
        out.append(
            {
                "index": i,
                "pa": base + 8 * i,
                "core": v,
                "xp": xp[i] if i < len(xp) else None,
                "present": None if v is None else bool(v & 1),
                "accessed_bit5": None if v is None else bool(v & 0x20),
                "reserved_low_bits": None if v is None else v & PAE_PDPTE_RESERVED,
                "bits_above_35": None if v is None else v >> 36,
                "table_pa": None if v is None else v & 0xFFFFFFFFF000,
            }
        )
    return out


def read_vmcoreinfo_ram(qmp: QMP, console: str, tmpdir: Path) -> str | None:
    """The guest's VMCOREINFO note, read from guest RAM with QEMU's `pmemsave` at the physical
    address /sys/kernel/vmcoreinfo gives ("PA SIZE", both hex). It is there whether or not the
    machine has -device vmcoreinfo (QEMU 7.2's riscv virt machine cannot have it)."""
    m = re.search(r"PAGEWALK vmcoreinfo (?:0x)?([0-9a-f]+) ([0-9a-f]+)", console)
    if not m:
        return None
    pa, size = int(m.group(1), 16), int(m.group(2), 16)
    dest = tmpdir / "vmcoreinfo.bin"
    qmp.execute("pmemsave", {"val": pa, "size": size, "filename": str(dest)})
    if not dest.exists():
        return None
    for name, _t, desc in parse_notes(dest.read_bytes()):
        if name == "VMCOREINFO":
            return desc.rstrip(b"\0").decode(errors="replace")
    return None


def find_user_marker(
    qmp: QMP, core: Path, user_maps: list[tuple[int, int, str]]
) -> list[tuple[int, int]]:
    """(va, pa) of the pages in the user process's writable mappings that hold USER_MARKER.

    The VA comes from /proc/PID/maps, the PA from gva2gpa, the bytes from the core: a test
    can walk to the same PA and check that the marker really is there.
    """
    found = []
    for start, end, perms in user_maps:
        if "w" not in perms or end - start > 0x100000:
            continue
        for va in range(start, end, 0x1000):
            pa = gva2gpa(qmp, va)
            page = read_phys(core, pa, 0x1000) if pa is not None else None
            if pa is not None and page is not None and USER_MARKER.encode() in page:
                found.append((va, pa))
    return found


def _ksym_keys(ksyms: dict[str, int]) -> dict[str, int]:
    return {f"SYMBOL({k}) from kallsyms": v for k, v in ksyms.items()}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
