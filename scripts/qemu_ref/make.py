"""Making one profile's reference: packages, one boot, a kernel stop and a user stop,
then ``meta.json`` and the rename of ``<profile>.partial`` to ``<profile>``.

One idea: the order of a run and the record of it. The recorded roots are CR3 (Intel SDM
vol. 3A ch. 4, 4.5; under PTI the user PGD is the kernel's plus 4 KiB), TTBR0/1_EL1 with their
ASIDs (Arm ARM D8) and satp (RISC-V privileged spec).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .boot import Boot, read_layout
from .capture import capture, read_vmcoreinfo_ram
from .common import RefError, log, run
from .guest import PROBE_SYMS, USER_MARKER
from .monitor import GdbStub, connect_unix
from .packages import Apt, prepare_guest
from .parse import vmcoreinfo_values
from .profiles import NEW_ARCHES, Profile


def first_line(cmd: list[str]) -> str:
    r = run(cmd)
    return (r.stdout or r.stderr).splitlines()[0] if (r.stdout or r.stderr) else ""


def make_profile(
    prof: Profile, cache: Path, apt: Apt, timeout: float, every_page: bool = False
) -> dict[str, Any]:
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = apt.ensure_installed([prof.qemu_package])
    if shutil.which(prof.qemu_binary) is None:
        raise RefError(f"{prof.qemu_binary} not found after installing {prof.qemu_package}")
    files = prepare_guest(apt, prof, cache)
    t_install = time.monotonic() - t_start

    final = cache / prof.name
    work = cache / f"{prof.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    boot = Boot(prof, files, work, timeout)
    boot.every_page = every_page
    log(f"{prof.name}: booting {files.kernel_pkg} ({prof.note})")
    log("  " + " ".join(boot.cmd))
    meta: dict[str, Any] = {}
    with boot.running() as qmp:
        t0 = time.monotonic()
        console = boot.wait_marker()
        t_boot = time.monotonic() - t0
        log(f"{prof.name}: marker after {t_boot:.1f} s; letting the user loop run")
        time.sleep(3)
        maps = re.findall(r"PAGEWALK maps (.*)", console)
        (work / "proc_maps.txt").write_text("".join(m.rstrip("\r") + "\n" for m in maps))
        user_maps = [
            (int(m.group(1), 16), int(m.group(2), 16), m.group(3))
            for m in (re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", x) for x in maps)
            if m
        ]
        if prof.arch in ("aarch64", "riscv64"):
            qmp.execute("stop")
            assert boot.proc is not None
            boot.gdb = connect_unix(
                boot.sockdir / "gdb", boot.deadline, boot.proc, lambda p: GdbStub(f"unix:{p}")
            )
            qmp.execute("cont")
        vmci_ram_text = None
        if prof.arch in NEW_ARCHES:
            vmci_ram_text = read_vmcoreinfo_ram(qmp, console, boot.sockdir)
            if vmci_ram_text is not None:
                (work / "vmcoreinfo_ram.txt").write_text(vmci_ram_text)
                boot.vmci_ram = vmcoreinfo_values(vmci_ram_text)
        ksyms = {
            m.group(3): int(m.group(1), 16)
            for m in re.finditer(r"PAGEWALK ksym ([0-9a-f]+) (\w) (\w+)", console)
        }
        # A kernel symbol that the KPTI user tables do not map (arm64 has no KALLSYMS_ALL, so
        # only text symbols are listed there; its trampoline tables do not map _stext).
        probe = next((ksyms[k] for k in PROBE_SYMS if ksyms.get(k)), None)
        if prof.arch in NEW_ARCHES:
            # i386 has no KALLSYMS_ALL either, and its PTI user tables may map text: take a
            # data symbol from VMCOREINFO first.
            probe = next(
                (
                    v
                    for v in (
                        *(ksyms.get(k) for k in PROBE_SYMS[:4]),
                        boot.vmci_ram.get("SYMBOL(swapper_pg_dir)"),
                        ksyms.get("_stext"),
                    )
                    if v
                ),
                None,
            )
        t1 = time.monotonic()
        k_text, k_tries = boot.catch(qmp, want_user=False, probe=probe)
        layout = read_layout(qmp, ksyms) if prof.arch == "x86_64" else {}
        kernel = capture(boot, qmp, k_text, work, "kernel", user_maps, ksyms, layout)
        kernel["stops_needed"] = k_tries
        log(f"{prof.name}: kernel-mode stop after {k_tries} tries")
        qmp.execute("cont")
        time.sleep(0.5)
        user: dict[str, Any] | None
        try:
            u_text, u_tries = boot.catch(qmp, want_user=True, probe=None)
            user = capture(boot, qmp, u_text, work / "user", "user", user_maps, ksyms, layout)
            user["stops_needed"] = u_tries
            log(f"{prof.name}: user-mode stop after {u_tries} tries")
        except RefError as e:
            user = None
            log(f"{prof.name}: no user-mode stop: {e}")
        t_capture = time.monotonic() - t1
        uname = re.search(r"PAGEWALK uname (\S+) (\S+)", console)
        user_pid = re.search(r"PAGEWALK user-pid (\d+)", console)
        meta = {
            "profile": prof.name,
            "arch": prof.arch,
            "choices": prof.note,
            "kernel_package": files.kernel_pkg,
            "kernel_package_version": files.kernel_version,
            "kernel_release": uname.group(1) if uname else files.kernel_release,
            "busybox_static_version": files.busybox_version,
            "qemu_package": prof.qemu_package,
            "qemu_package_version": host[prof.qemu_package],
            "qemu_version": first_line([prof.qemu_binary, "--version"]),
            "qemu_command": boot.cmd,
            "kernel_append": prof.append,
            "cpu": prof.cpu,
            "memory_mib": 128,
            "user_process_pid": int(user_pid.group(1)) if user_pid else None,
            "user_marker": USER_MARKER,
            "kallsyms": {k: f"{v:#018x}" for k, v in sorted(ksyms.items())},
            "kernel_layout": {k: f"{v:#018x}" for k, v in layout.items()},
            "fw_cfg_vmcoreinfo": "PAGEWALK fw_cfg loaded" in console,
            "kernel": kernel,
            "user": user,
            "user_cr3_caught": user is not None,
            "started_utc": started,
            "seconds": {
                "install_and_fetch": round(t_install, 1),
                "boot_to_marker": round(t_boot, 1),
                "captures": round(t_capture, 1),
            },
        }
        if prof.arch in ("x86_64", "i386") and user is not None:
            meta["user_cr3_equals_kernel_cr3"] = user["cr3"] == kernel["cr3"]
            meta["user_cr3_is_kernel_cr3_with_bit12"] = user["cr3"] == kernel["cr3"] | 0x1000
        if prof.arch in NEW_ARCHES:
            meta["vmcoreinfo_in_core"] = any(
                n["name"] == "VMCOREINFO" for n in kernel["core"]["notes"]
            )
            meta["vmcoreinfo_in_ram"] = vmci_ram_text is not None
            meta["debian_suite"] = prof.suite
            m = re.search(r"PAGEWALK vmcoreinfo (?:0x)?([0-9a-f]+) ([0-9a-f]+)", console)
            if m:
                meta["vmcoreinfo_note_pa"] = int(m.group(1), 16)
                meta["vmcoreinfo_note_size"] = int(m.group(2), 16)
            meta["vmcoreinfo_ram_values"] = {
                k: f"{v:#x}"
                for k, v in boot.vmci_ram.items()
                if k.startswith(("SYMBOL(", "NUMBER(", "KERNELOFFSET"))
            }
            fw = re.search(r"OpenSBI v[\d.]+", console)
            if fw:
                meta["firmware"] = fw.group(0)
        if prof.arch == "riscv64" and user is not None:
            meta["user_satp_equals_kernel_satp"] = user["satp"] == kernel["satp"]
    if prof.arch == "aarch64" and meta["user"] is not None:
        k1, u1 = meta["kernel"]["ttbr1_el1"], meta["user"]["ttbr1_el1"]
        mask = (1 << 48) - 2  # BADDR, CnP bit 0 left out
        meta["ttbr1_kernel_minus_user_baddr"] = (k1 & mask) - (u1 & mask)
        meta["ttbr1_asid_kernel_user"] = [k1 >> 48, u1 >> 48]
    meta["seconds"]["total"] = round(time.monotonic() - t_start, 1)
    # Paths as they are after the rename below, so the command can be re-run by hand.
    meta["qemu_command"] = [a.replace(str(work), str(final)) for a in meta["qemu_command"]]
    (work / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    return meta
