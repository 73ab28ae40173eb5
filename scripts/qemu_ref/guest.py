"""The guest's initramfs: an init script that starts a user process and prints what the
capture needs, packed as a newc cpio written here (no cpio binary, a stable archive).

One idea: the guest tells the host, on its serial console, its release, the user process's
/proc/PID/maps, where VMCOREINFO is and the kernel symbols, then prints MARKER. No manual
section applies (Linux's initramfs and /proc interfaces).
"""

from __future__ import annotations

import gzip
from pathlib import Path

MARKER = "PAGEWALK-READY"


# Symbols the guest prints from /proc/kallsyms: labels, and a test for "kernel tables active".
KSYMS = (
    "init_top_pgt|swapper_pg_dir|tramp_pg_dir|reserved_pg_dir|_text|_stext|_etext|_edata"
    "|page_offset_base|vmalloc_base|vmemmap_base|init_task|jiffies"
)


PROBE_SYMS = ("init_top_pgt", "swapper_pg_dir", "init_task", "jiffies", "_stext")


LAYOUT_VARS = ("page_offset_base", "vmalloc_base", "vmemmap_base")


USER_MARKER = "PAGEWALK-USER-MARKER-5f3c9a1e"


def init_script(extra_ksyms: str = "") -> str:
    ksyms = KSYMS + (f"|{extra_ksyms}" if extra_ksyms else "")
    return f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
if [ -f /qemu_fw_cfg.ko ] && insmod /qemu_fw_cfg.ko; then echo "PAGEWALK fw_cfg loaded"; fi
sh -c 'M={USER_MARKER}; while :; do i=0; while [ $i -lt 1000 ]; do i=$((i+1)); done; done' &
PID=$!
echo "PAGEWALK uname $(uname -r) $(uname -m)"
echo "PAGEWALK user-pid $PID"
sleep 1
sed "s/^/PAGEWALK maps /" /proc/$PID/maps
echo "PAGEWALK vmcoreinfo $(cat /sys/kernel/vmcoreinfo 2>/dev/null)"
grep -E ' ({ksyms})$' /proc/kallsyms | sed "s/^/PAGEWALK ksym /"
echo "{MARKER}"
exec sleep 100000000
"""


INIT_SCRIPT = init_script()


# Page-table symbols worth having from a riscv64 kernel (it has KALLSYMS_ALL)
EXTRA_KSYMS = {"riscv64": "trampoline_pg_dir|early_pg_dir|init_mm|kernel_map|phys_ram_base"}


def _newc_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    nb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = hdr + nb
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def build_initramfs(busybox: Path, fw_cfg_ko: Path | None, script: str = INIT_SCRIPT) -> bytes:
    entries: list[tuple[str, int, bytes]] = [
        ("bin", 0o040755, b""),
        ("dev", 0o040755, b""),
        ("proc", 0o040755, b""),
        ("sys", 0o040755, b""),
        ("bin/busybox", 0o100755, busybox.read_bytes()),
        ("init", 0o100755, script.encode()),
    ]
    if fw_cfg_ko is not None:
        entries.append(("qemu_fw_cfg.ko", 0o100644, fw_cfg_ko.read_bytes()))
    raw = b"".join(_newc_entry(n, m, d, i + 1) for i, (n, m, d) in enumerate(entries))
    raw += _newc_entry("TRAILER!!!", 0, b"", 0)
    raw += b"\0" * (-len(raw) % 512)
    return gzip.compress(raw, compresslevel=6, mtime=0)
