"""Talking to a running QEMU: QMP (and the human monitor through it) and the gdbstub's
system registers and CSRs while the VM is stopped, on pagewalk's own clients
(:mod:`pagewalk.live.qmp`, :mod:`pagewalk.live.gdb`; QEMU QMP reference, GDB manual "Remote
Protocol"), their errors turned into the script's ``RefError``.

One idea: every fact about the guest's MMU is QEMU's answer (``gva2gpa`` walks the tables
with QEMU's own code). The registers read are those of Arm ARM D8 (TTBR0/1_EL1, TCR_EL1) and
the RISC-V privileged spec (satp, sstatus, the virtual ``priv`` register).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pagewalk.errors import LiveError
from pagewalk.live.gdb import GdbClient
from pagewalk.live.qmp import QmpClient

from .common import RefError

T = TypeVar("T")
#: seconds for any one answer (a dump-guest-memory of 128 MiB, a gdbstub under TCG load)
QMP_TIMEOUT, GDB_TIMEOUT = 300.0, 60.0


def connect_unix(
    path: Path, deadline: float, proc: subprocess.Popen[bytes], make: Callable[[str], T]
) -> T:
    """``make(str(path))`` once QEMU listens on the Unix socket ``path`` (it may not yet)."""
    while True:
        if not path.exists():
            err: LiveError | None = LiveError(f"{path} does not exist yet")
        else:
            try:
                return make(str(path))
            except LiveError as exc:
                if "cannot connect" not in str(exc):
                    raise RefError(str(exc)) from None
                err = exc
        if proc.poll() is not None:
            raise RefError(f"QEMU exited (code {proc.returncode}) before {path.name}") from None
        if time.monotonic() > deadline:
            raise RefError(f"timed out connecting to {path}: {err}") from None
        time.sleep(0.05)


class QMP:
    """QMP and the human monitor through pagewalk's client; failures are RefErrors."""

    def __init__(self, path: str) -> None:
        self.client = QmpClient(path, timeout=QMP_TIMEOUT)  # LiveError: see connect_unix

    def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return self.client.execute(cmd, args)
        except LiveError as exc:
            raise RefError(f"QMP {cmd} failed: {exc}") from None

    def hmp(self, line: str) -> str:
        out = self.execute("human-monitor-command", {"command-line": line})
        return str(out).replace("\r\n", "\n")


class GdbStub:
    """Registers read while the VM is stopped, through pagewalk's gdbstub client (virtual
    addresses: the script never reads memory through it)."""

    def __init__(self, address: str) -> None:
        self.client = GdbClient(address, timeout=GDB_TIMEOUT, physical=False)
        self.description = self.client.target()  # LiveError: see connect_unix

    def _ordered(self) -> list[Any]:
        return sorted(self.description.registers.values(), key=lambda r: r.number)

    def read(self, name: str) -> int | None:
        """Register ``name``, or None when the stub has none or cannot read it."""
        try:
            return self.client.try_register(name)
        except LiveError as exc:
            raise RefError(str(exc)) from None

    def system_registers(self) -> dict[str, int]:
        skip = re.compile(r"^(x\d+|[vqd]\d+|sp|pc|cpsr|fpsr|fpcr)$", re.IGNORECASE)
        out = {}
        for reg in self._ordered():
            if skip.match(reg.name):
                continue
            v = self.read(reg.name)
            if v is not None:
                out[reg.name] = v
        return out

    def riscv_csrs(self) -> dict[str, int]:
        """`priv` (0 U, 1 S, 3 M) and every CSR of the gdbstub's csr feature."""
        out = {}
        for reg in self._ordered():
            if reg.name == "priv" or "csr" in reg.feature:
                v = self.read(reg.name)
                if v is not None:
                    out[reg.name] = v
        return out


def gva2gpa(qmp: QMP, va: int) -> int | None:
    out = qmp.hmp(f"gva2gpa {va:#x}").strip()
    m = re.match(r"gpa: (0x[0-9a-f]+|0)$", out)  # printf("%#x", 0) prints a bare "0"
    if m:
        return int(m.group(1), 16)
    if "Unmapped" in out:
        return None
    raise RefError(f"unexpected gva2gpa answer for {va:#x}: {out!r}")
