"""Test harness: a Debian Linux guest of the QEMU reference suite, booted and stopped.

The guest is one profile of ``scripts/qemu_reference.py`` (its cached kernel and busybox under
``~/.cache/pagewalk/qemu-ref/packages/``), booted with that script's own command line
(``qemu_ref.boot.Boot``), its gdbstub moved to a TCP port for ``--gdb``. After the init script
prints its marker the kernel's tables are up; the VM is stopped (in kernel mode where QMP's
``info registers`` tells the privilege level: CPL of Intel SDM vol. 3A §5.5, EL of Arm ARM D1)
and QEMU's ``dump-guest-memory`` core of that moment is the oracle. The registers the dump
side is given come from QEMU too: the core's own notes (x86), the gdbstub's system registers
(AArch64, Arm ARM D19) or ``info registers`` (RISC-V satp).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from guests import free_port

from pagewalk.live.gdb import GdbClient

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from qemu_ref.boot import Boot  # noqa: E402
from qemu_ref.common import RefError, default_cache_dir  # noqa: E402
from qemu_ref.guest import PROBE_SYMS  # noqa: E402
from qemu_ref.packages import Apt, prepare_guest  # noqa: E402
from qemu_ref.profiles import PROFILES  # noqa: E402

#: the profiles the live tests boot: one per family (RISC-V: Sv39 boots fastest)
LINUX_PROFILES = ("x86_64", "aarch64", "riscv64-sv39")
#: the AArch64 system registers the dump side is given, as pagewalk options
_ARM_OPTIONS = {"ttbr0_el1": "--ttbr0", "ttbr1_el1": "--ttbr1", "tcr_el1": "--tcr",
                "mair_el1": "--mair"}  # fmt: skip


class Unavailable(Exception):
    """The profile cannot boot here (no QEMU binary, or its packages are not cached)."""


class LinuxGuest:
    """A booted, stopped Linux guest: ``gdb`` (HOST:PORT), ``dump_options`` and ``dump()``."""

    def __init__(self, profile: str, workdir: Path, timeout: float = 300.0) -> None:
        self.prof = prof = PROFILES[profile]
        if shutil.which(prof.qemu_binary) is None:
            raise Unavailable(f"{prof.qemu_binary} is not installed")
        try:
            files = prepare_guest(Apt(allow_install=False), prof, default_cache_dir())
        except RefError as exc:
            raise Unavailable(f"{profile}: {exc} (run scripts/qemu_reference.py)") from None
        self.boot = Boot(prof, files, workdir, timeout)
        self.port = free_port()
        self.boot.cmd = _tcp_gdb(self.boot.cmd, self.port)
        self.stack = contextlib.ExitStack()
        try:
            self.qmp = self.stack.enter_context(self.boot.running())
            started = time.monotonic()
            self.console = self.boot.wait_marker()
            self.boot_seconds = time.monotonic() - started
            self.stop()
        except BaseException:
            self.stack.close()
            raise

    @property
    def gdb(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the VM, in kernel mode where QMP tells the mode (x86, AArch64)."""
        if self.prof.arch == "riscv64":  # no privilege level in `info registers`; satp is one
            self.qmp.execute("stop")
        else:  # a kernel VA mapped: past KPTI's trampoline (make.py's probe, too)
            found = re.findall(r"PAGEWALK ksym ([0-9a-f]+) \w (\w+)", self.console)
            ksyms = {name: addr for addr, name in found}
            probe = next((int(v, 16) for k in PROBE_SYMS if (v := ksyms.get(k))), None)
            self.boot.catch(self.qmp, want_user=False, probe=probe)

    def resume(self) -> None:
        self.qmp.execute("cont")

    def status(self) -> str:
        return str(self.qmp.execute("query-status")["status"])

    def dump(self, path: Path) -> Path:
        """QEMU's ELF core of this moment (``dump-guest-memory``, no paging)."""
        self.qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{path}"})
        return path

    def dump_options(self) -> list[str]:
        """The registers the dump side needs as options, read from QEMU (see the docstring)."""
        if self.prof.arch == "aarch64":
            with GdbClient(self.gdb, physical=False) as client:
                return [x for reg, opt in _ARM_OPTIONS.items()
                        for x in (opt, hex(client.register(reg)))]  # fmt: skip
        if self.prof.arch == "riscv64":
            text = self.qmp.hmp("info registers")
            m = re.search(r"\bsatp\s+([0-9a-f]+)", text)
            assert m, text
            return ["--satp", "0x" + m.group(1)]
        return []

    def close(self) -> None:
        self.stack.close()


def _tcp_gdb(cmd: list[str], port: int) -> list[str]:
    """The boot command with its gdbstub (if any) on 127.0.0.1:``port``."""
    out: list[str] = []
    skip = False
    for arg in cmd:
        if skip:
            skip = False
            continue
        if arg == "-gdb":
            skip = True
            continue
        out.append(arg)
    return [*out, "-gdb", f"tcp:127.0.0.1:{port}"]


@contextlib.contextmanager
def linux_guest(profile: str) -> Any:
    """A :class:`LinuxGuest` in a temporary directory, shut down on exit."""
    work = Path(tempfile.mkdtemp(prefix=f"pw-live-{profile}-"))
    guest = LinuxGuest(profile, work)
    try:
        yield guest
    finally:
        guest.close()
        shutil.rmtree(work, ignore_errors=True)
