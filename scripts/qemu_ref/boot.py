"""One QEMU boot of a profile: the command line, the running VM, waiting for the guest's
marker, and stopping the CPU in user or kernel mode.

One idea: a stop is only kept when QEMU says the CPU is where it is wanted: CPL 3 or not
(Intel SDM vol. 3A 5.5), EL0 or EL1 (Arm ARM D1, with KPTI's trampoline tables of D8 in
mind), U or S mode (RISC-V privileged spec 1.2), with a kernel VA mapped for a kernel stop.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .common import RefError
from .guest import EXTRA_KSYMS, LAYOUT_VARS, MARKER, build_initramfs, init_script
from .monitor import QMP, GdbStub, connect_unix, gva2gpa
from .packages import GuestFiles
from .parse import parse_arm_registers, parse_x86_registers
from .profiles import Profile


class Boot:
    def __init__(self, prof: Profile, files: GuestFiles, workdir: Path, timeout: float) -> None:
        self.prof = prof
        self.files = files
        self.dir = workdir
        self.deadline = time.monotonic() + timeout
        self.sockdir = Path(tempfile.mkdtemp(prefix="pw-q-"))  # short path: sun_path limit
        self.console = workdir / "console.log"
        self.initrd = workdir / "initramfs.cpio.gz"
        self.initrd.write_bytes(
            build_initramfs(
                files.busybox,
                files.fw_cfg_ko if prof.vmcoreinfo_device else None,
                init_script(EXTRA_KSYMS.get(prof.arch, "")),
            )
        )
        self.cmd = [
            prof.qemu_binary,
            *prof.machine,
            "-accel",
            "tcg",
            "-cpu",
            prof.cpu,
            "-m",
            "128M",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-kernel",
            str(files.vmlinuz),
            "-initrd",
            str(self.initrd),
            "-append",
            prof.append,
            *(["-device", "vmcoreinfo"] if prof.vmcoreinfo_device else []),
            "-serial",
            f"file:{self.console}",
            "-monitor",
            "none",
            "-qmp",
            f"unix:{self.sockdir / 'qmp'},server=on,wait=off",
        ]
        if prof.arch in ("aarch64", "riscv64"):  # system registers / riscv privilege level
            self.cmd += ["-gdb", f"unix:{self.sockdir / 'gdb'},server=on,wait=off"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.gdb: GdbStub | None = None
        self.vmci_ram: dict[str, int] = {}  # NEW_ARCHES: VMCOREINFO read from guest RAM
        self.every_page = False  # NEW_ARCHES: gva2gpa for every listed page, not a sample

    def left(self) -> float:
        return self.deadline - time.monotonic()

    @contextlib.contextmanager
    def running(self) -> Iterator[QMP]:
        qlog = (self.dir / "qemu.log").open("wb")
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT
        )
        try:
            qmp = connect_unix(self.sockdir / "qmp", self.deadline, self.proc, QMP)
            yield qmp
            with contextlib.suppress(Exception):
                qmp.execute("quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            qlog.close()
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def wait_marker(self) -> str:
        assert self.proc is not None
        while True:
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            if MARKER in text:
                return text
            if self.proc.poll() is not None:
                raise RefError(
                    f"QEMU exited (code {self.proc.returncode}) before the marker; "
                    f"see {self.console} and {self.dir / 'qemu.log'}"
                )
            if re.search(r"Kernel panic", text):
                raise RefError(f"guest kernel panicked; see {self.console}")
            if self.left() < 0:
                raise RefError(f"timed out waiting for {MARKER!r} on {self.console}")
            time.sleep(0.2)

    def catch(
        self, qmp: QMP, want_user: bool, probe: int | None, tries: int = 2000
    ) -> tuple[str, int]:
        """Stop the VM when the CPU is in user (or kernel) mode; the VM is left stopped.

        A kernel-mode stop also needs the VA `probe` (a kernel data symbol) to be mapped: with
        KPTI the CPU runs the first instructions of every kernel entry on the user tables.
        """
        for n in range(1, tries + 1):
            qmp.execute("stop")
            text = qmp.hmp("info registers")
            if self.prof.arch in ("x86_64", "i386"):
                level = parse_x86_registers(text).get("CPL", -1)
                user = level == 3
                kernel = not user
            elif self.prof.arch == "riscv64":
                # `info registers` has no privilege level; the gdbstub's virtual `priv` does.
                assert self.gdb is not None
                priv = self.gdb.read("priv")
                level = -1 if priv is None else priv
                user = level == 0
                kernel = level == 1  # S-mode, not OpenSBI's M-mode (no translation there)
            else:
                level = parse_arm_registers(text).get("EL", -1)
                user = level == 0
                kernel = not user
            if (user if want_user else kernel) and (
                user or probe is None or gva2gpa(qmp, probe) is not None
            ):
                return text, n
            qmp.execute("cont")
            if self.left() < 0:
                break
            time.sleep(random.uniform(0.002, 0.05))
        raise RefError(f"could not catch the CPU in {'user' if want_user else 'kernel'} mode")


def read_layout(qmp: QMP, ksyms: dict[str, int]) -> dict[str, int]:
    """Values of the x86 KASLR region bases, read through the current (kernel) tables."""
    out = {}
    for name in LAYOUT_VARS:
        if name in ksyms:
            m = re.search(r": (0x[0-9a-f]+)", qmp.hmp(f"x /1gx {ksyms[name]:#x}"))
            if m:
                out[name] = int(m.group(1), 16)
    return out
