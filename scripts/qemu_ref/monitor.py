"""Talking to a running QEMU: QMP (and the human monitor through it) and just enough of
the GDB remote protocol to read system registers and CSRs while the VM is stopped.

One idea: every fact about the guest's MMU is QEMU's answer (``gva2gpa`` walks the tables
with QEMU's own code). The registers read are those of Arm ARM D8 (TTBR0/1_EL1, TCR_EL1) and
the RISC-V privileged spec (satp, sstatus, the virtual ``priv`` register).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import RefError


def connect_unix(path: Path, deadline: float, proc: subprocess.Popen[bytes]) -> socket.socket:
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if proc.poll() is not None:
                raise RefError(f"QEMU exited (code {proc.returncode}) before {path.name}") from None
            if time.monotonic() > deadline:
                raise RefError(f"timed out connecting to {path}") from None
            time.sleep(0.05)


class QMP:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(300)
        self.buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise RefError(f"unexpected QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RefError("QMP connection closed (QEMU died?)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        msg: dict[str, Any] = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                raise RefError(f"QMP {cmd} failed: {r['error']}")
            return r.get("return")

    def hmp(self, line: str) -> str:
        out = self.execute("human-monitor-command", {"command-line": line})
        return str(out).replace("\r\n", "\n")


class GdbStub:
    """Just enough of the GDB remote protocol to read registers while the VM is stopped."""

    def __init__(self, sock: socket.socket, arch: str = "aarch64") -> None:
        self.sock = sock
        self.sock.settimeout(60)
        self.buf = b""
        self.transact(f"qSupported:xmlRegisters={'riscv' if arch == 'riscv64' else arch}")
        self.transact("?")
        self.feature: dict[str, str] = {}  # register name -> the XML annex that defines it
        self.regs = self._register_map()

    def _packet(self) -> str:
        while True:
            m = re.search(rb"\$([^#]*)#[0-9a-fA-F]{2}", self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                self.sock.sendall(b"+")
                return m.group(1).decode()
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RefError("gdbstub connection closed")
            self.buf += chunk

    def transact(self, payload: str, skip_stop_replies: bool = False) -> str:
        csum = sum(payload.encode()) & 0xFF
        self.sock.sendall(b"$" + payload.encode() + b"#%02x" % csum)
        while True:
            reply = self._packet()
            # A stop made through QMP is also announced to gdb as a 'T05...' packet.
            if skip_stop_replies and reply[:1] in ("T", "S"):
                continue
            return reply

    def _xfer(self, annex: str) -> str:
        out, off = "", 0
        while True:
            r = self.transact(f"qXfer:features:read:{annex}:{off:x},fff", True)
            if not r or r[0] not in "lm":
                raise RefError(f"gdbstub cannot read {annex}: {r}")
            out += r[1:]
            off += len(r) - 1
            if r[0] == "l":
                return out

    def _register_map(self) -> dict[str, int]:
        """Register numbers as GDB assigns them: a <reg> without regnum is one more than the
        register before it, across the features in target.xml order (riscv's `priv` needs it)."""
        target = self._xfer("target.xml")
        regs: dict[str, int] = {}
        nxt = 0
        for annex in re.findall(r'href="([^"]+)"', target):
            doc = self._xfer(annex)
            for tag in re.findall(r"<reg\b[^>]*>", doc):
                name = re.search(r'name="([^"]+)"', tag)
                num = re.search(r'regnum="(\d+)"', tag)
                n = int(num.group(1)) if num else nxt
                nxt = n + 1
                if name:
                    regs[name.group(1)] = n
                    self.feature[name.group(1)] = annex
        return regs

    def read(self, name: str) -> int | None:
        r = self.transact(f"p{self.regs[name]:x}", True)
        if not r or r.startswith("E") or "x" in r:
            return None
        return int.from_bytes(bytes.fromhex(r), "little")

    def system_registers(self) -> dict[str, int]:
        skip = re.compile(r"^(x\d+|[vqd]\d+|sp|pc|cpsr|fpsr|fpcr)$", re.IGNORECASE)
        out = {}
        for name in sorted(self.regs, key=self.regs.__getitem__):
            if skip.match(name):
                continue
            v = self.read(name)
            if v is not None:
                out[name] = v
        return out

    def riscv_csrs(self) -> dict[str, int]:
        """`priv` (0 U, 1 S, 3 M) and every CSR the gdbstub's riscv-csr.xml lists."""
        out = {}
        for name in sorted(self.regs, key=self.regs.__getitem__):
            if name == "priv" or "csr" in self.feature.get(name, ""):
                v = self.read(name)
                if v is not None:
                    out[name] = v
        return out


def gva2gpa(qmp: QMP, va: int) -> int | None:
    out = qmp.hmp(f"gva2gpa {va:#x}").strip()
    m = re.match(r"gpa: (0x[0-9a-f]+|0)$", out)  # printf("%#x", 0) prints a bare "0"
    if m:
        return int(m.group(1), 16)
    if "Unmapped" in out:
        return None
    raise RefError(f"unexpected gva2gpa answer for {va:#x}: {out!r}")
