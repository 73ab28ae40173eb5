"""QEMU's own AArch64 MMU as a reference: load memory, set system registers, ask ``gva2gpa``.

One idea: every answer comes from QEMU's page walker (``get_phys_addr_lpae`` in
target/arm/ptw.c, which implements FEAT_LPA and FEAT_LPA2 under ``-cpu max`` since QEMU 7.0).
Nothing here walks a table. The steps are generic, so stage-2 tests can reuse them:

1. start ``qemu-system-aarch64 -M virt -cpu max`` stopped (``-S``), with the caller's memory
   blobs loaded raw into guest RAM (``-device loader,file=...,addr=...,force-raw=on``), a GDB
   remote stub and a QMP socket (both Unix sockets, so parallel runs cannot collide on ports);
2. write a stub of ``msr <sysreg>, Xn; isb`` instructions ending in ``b .`` into RAM, set
   X0..Xn and PC through the GDB stub's ``P`` packets, put a breakpoint on the ``b .`` and
   continue: the CPU writes the registers itself (the stub must be identity-mapped by the tables
   once SCTLR_EL1.M is set);
3. ask ``gva2gpa VA`` through QMP's ``human-monitor-command`` for as many VAs as wanted.

For two stages, start with ``machine="virt,virtualization=on"`` (the CPU resets at EL2) and use
:meth:`QemuArm.run_el2_stub`: the stub writes the EL2 and EL1 registers, then ERETs to EL1
(Arm ARM C6.2 ERET), so ``gva2gpa`` answers for the EL1&0 regime, whose debug walk in QEMU
(``get_phys_addr_twostage``; stage-1 table reads through ``S1_ptw_translate``) is both stages.

The instruction encodings are those of the Arm ARM (DDI 0487) C6.2 (MSR (register), ISB, DSB,
TLBI, B) with the system register encodings of D19 (op0, op1, CRn, CRm, op2). The GDB remote
protocol is GDB's "Remote Serial Protocol" appendix; QMP is QEMU's docs/interop/qmp-spec.
Every socket and subprocess has a timeout; a failure raises :class:`QemuError`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

QEMU = "qemu-system-aarch64"
#: the virt machine's RAM base
RAM_BASE = 0x4000_0000
#: where blobs may start: without a kernel, the virt board puts its DTB in RAM's first MiB
LOAD_BASE = RAM_BASE + (16 << 20)
#: (op0, op1, CRn, CRm, op2) of the system registers a stub may write (Arm ARM D19)
SYSREGS: dict[str, tuple[int, int, int, int, int]] = {
    "SCTLR_EL1": (3, 0, 1, 0, 0),
    "TTBR0_EL1": (3, 0, 2, 0, 0),
    "TTBR1_EL1": (3, 0, 2, 0, 1),
    "TCR_EL1": (3, 0, 2, 0, 2),
    "MAIR_EL1": (3, 0, 10, 2, 0),
    "HCR_EL2": (3, 4, 1, 1, 0),
    "VTTBR_EL2": (3, 4, 2, 1, 0),
    "VTCR_EL2": (3, 4, 2, 1, 2),
    "SPSR_EL2": (3, 4, 4, 0, 0),
    "ELR_EL2": (3, 4, 4, 0, 1),
}
ISB = 0xD5033FDF
DSB_SY = 0xD5033F9F
TLBI_VMALLE1 = 0xD508871F
TLBI_VMALLS12E1 = 0xD50C87DF
ERET = 0xD69F03E0
B_SELF = 0x14000000
#: SPSR_EL2 for an ERET to EL1h (M[3:0] = 0b0101) with D, A, I, F masked
SPSR_EL1H = 0x3C5
#: GDB's register numbers for AArch64 (gdb/features/aarch64-core.xml): x0..x30, sp, pc
_GDB_PC = 32


class QemuError(RuntimeError):
    """QEMU did not start, answer, or run the stub as expected."""


def available() -> bool:
    """Whether ``qemu-system-aarch64`` is on PATH."""
    return shutil.which(QEMU) is not None


def version() -> tuple[int, ...]:
    """QEMU's version as numbers (``qemu-system-aarch64 --version``), e.g. (7, 2, 22)."""
    try:
        out = subprocess.run(
            [QEMU, "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise QemuError(f"{QEMU} --version: {exc}") from exc
    words = out.split()
    if "version" not in words or words.index("version") + 1 >= len(words):
        raise QemuError(f"{QEMU} --version printed {out[:80]!r}")
    number = words[words.index("version") + 1].split("(")[0]
    return tuple(int(x) for x in number.split(".") if x.isdigit())


def msr(name: str, rt: int) -> int:
    """``MSR <name>, X<rt>`` (Arm ARM C6.2 MSR (register))."""
    op0, op1, crn, crm, op2 = SYSREGS[name]
    return 0xD5100000 | (op0 - 2) << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | rt


def stub(names: Sequence[str]) -> bytes:
    """``tlbi vmalle1; dsb sy``, then ``msr name_i, X<i>; isb`` for each name, then ``b .``."""
    if len(names) > 30:
        raise ValueError("a stub writes at most 30 registers (X0..X29)")
    words = [TLBI_VMALLE1, DSB_SY]
    for i, name in enumerate(names):
        words += [msr(name, i), ISB]
    words.append(B_SELF)
    return struct.pack(f"<{len(words)}I", *words)


def el2_stub(names: Sequence[str]) -> bytes:
    """For a CPU at EL2: ``tlbi vmalls12e1; dsb sy``, ``msr name_i, X<i>; isb`` for each name,
    ``eret`` (to ELR_EL2 in the mode SPSR_EL2 names, which the caller includes), then ``b .``
    (the word ``len - 4``, where an EL1 whose both stages map this page identically lands)."""
    if len(names) > 30:
        raise ValueError("a stub writes at most 30 registers (X0..X29)")
    words = [TLBI_VMALLS12E1, DSB_SY]
    for i, name in enumerate(names):
        words += [msr(name, i), ISB]
    words += [ERET, B_SELF]
    return struct.pack(f"<{len(words)}I", *words)


def _connect(path: Path, proc: subprocess.Popen[bytes], until: float) -> socket.socket:
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            s.settimeout(10)
            return s
        except OSError:
            s.close()
            if proc.poll() is not None:
                raise QemuError(f"{QEMU} exited with {proc.returncode} before {path}") from None
            if time.monotonic() > until:
                raise QemuError(f"timed out connecting to {path}") from None
            time.sleep(0.02)


class _Gdb:
    """Just enough of the GDB remote protocol: registers, a breakpoint, continue, interrupt."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""
        # QEMU answers P/p packets only for a client that has read the target description.
        self.ask("qSupported:xmlRegisters=aarch64")
        if self.ask("qXfer:features:read:target.xml:0,ffb")[:1] not in ("m", "l"):
            raise QemuError("the GDB stub gave no target description")

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise QemuError("the GDB stub closed the connection")
        return chunk

    def _packet(self) -> str:
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start)
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                data = self.buf[start + 1 : end].decode()
                self.buf = self.buf[end + 3 :]
                self.sock.sendall(b"+")
                return data
            self.buf += self._recv()

    def send(self, data: str) -> None:
        csum = sum(data.encode()) & 0xFF
        self.sock.sendall(f"${data}#{csum:02x}".encode())

    def ask(self, data: str) -> str:
        self.send(data)
        return self._packet()

    def set_reg(self, number: int, value: int) -> None:
        reply = self.ask(f"P{number:x}={struct.pack('<Q', value).hex()}")
        if reply != "OK":
            raise QemuError(f"GDB stub refused register {number}: {reply!r}")

    def get_reg(self, number: int) -> int:
        return int(struct.unpack("<Q", bytes.fromhex(self.ask(f"p{number:x}")[:16]))[0])

    def run_to(self, pc: int, timeout: float) -> bool:
        """Continue until a breakpoint at ``pc`` (True) or ``timeout`` (False, stopped)."""
        if self.ask(f"Z0,{pc:x},4") != "OK":
            raise QemuError(f"GDB stub refused a breakpoint at {pc:#x}")
        self.send("c")
        self.sock.settimeout(timeout)
        try:
            self._packet()
            hit = True
        except TimeoutError:
            self.sock.settimeout(10)
            self.sock.sendall(b"\x03")
            self._packet()
            hit = False
        self.sock.settimeout(10)
        return hit and self.get_reg(_GDB_PC) == pc


class _Qmp:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""
        if "QMP" not in self._read():
            raise QemuError("no QMP greeting")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QemuError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        got: dict[str, Any] = json.loads(line)
        return got

    def execute(self, cmd: str, args: Mapping[str, Any] | None = None) -> Any:
        msg: dict[str, Any] = {"execute": cmd, **({"arguments": dict(args)} if args else {})}
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QemuError(f"QMP {cmd}: {reply['error']}")


class QemuArm:
    """One stopped ``qemu-system-aarch64 -M virt -cpu max`` with memory loaded; a context manager.

    Args:
        blobs: ``(guest PA, bytes)`` to load raw into RAM before the CPU starts.
        ram: RAM size in bytes (from :data:`RAM_BASE`).
        machine, cpu: ``-M`` and ``-cpu``.
        timeout: seconds for QEMU to start and for each stub run.
    """

    def __init__(
        self,
        blobs: Iterable[tuple[int, bytes]],
        *,
        ram: int = 256 << 20,
        machine: str = "virt",
        cpu: str = "max",
        timeout: float = 20.0,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="pw-qemu-")
        d = Path(self._dir.name)
        args = [QEMU, "-M", machine, "-cpu", cpu, "-m", str(ram >> 20), "-S", "-nographic"]
        args += ["-serial", "null", "-monitor", "none", "-nodefaults"]
        args += ["-gdb", f"unix:{d / 'gdb'},server=on,wait=off"]
        args += ["-qmp", f"unix:{d / 'qmp'},server=on,wait=off"]
        for i, (pa, data) in enumerate(blobs):
            path = d / f"blob{i}"
            path.write_bytes(data)
            args += ["-device", f"loader,file={path},addr={pa:#x},force-raw=on"]
        self.timeout = timeout
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            until = time.monotonic() + timeout
            self.qmp = _Qmp(_connect(d / "qmp", self.proc, until))
            self.gdb = _Gdb(_connect(d / "gdb", self.proc, until))
        except (OSError, QemuError) as exc:
            err = self._stderr()
            self.close()
            raise QemuError(f"{QEMU} did not start: {exc}; stderr: {err!r}") from exc
        except BaseException:
            self.close()
            raise

    def _stderr(self) -> str:
        """What QEMU wrote to stderr, once it has exited (empty while it runs)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read(4000).decode(errors="replace").strip()

    def run_stub(self, at: int, regs: Mapping[str, int]) -> None:
        """Write ``regs`` (system register name -> value) by running a stub placed at PA ``at``
        (which must be in RAM, loaded as a blob: see :func:`stub`, and identity-mapped by the
        tables if the stub turns the MMU on). Raises QemuError if it does not reach ``b .``."""
        names = list(regs)
        code = stub(names)
        for i, name in enumerate(names):
            self.gdb.set_reg(i, regs[name])
        self.gdb.set_reg(_GDB_PC, at)
        end = at + len(code) - 4
        if not self.gdb.run_to(end, self.timeout):
            pc = self.gdb.get_reg(_GDB_PC)
            raise QemuError(f"the register stub at {at:#x} did not reach {end:#x} (PC={pc:#x})")

    def run_el2_stub(self, at: int, regs: Mapping[str, int], el1_pc: int) -> None:
        """From EL2 (``-M virt,virtualization=on``), write ``regs`` with :func:`el2_stub` placed
        at PA ``at`` (EL2's MMU is off), ERET, and stop at ``el1_pc`` (ELR_EL2, an EL1 VA that
        both stages must map to a ``b .``). Raises QemuError if EL1 does not get there."""
        names = list(regs)
        for i, name in enumerate(names):
            self.gdb.set_reg(i, regs[name])
        self.gdb.set_reg(_GDB_PC, at)
        if not self.gdb.run_to(el1_pc, self.timeout):
            pc = self.gdb.get_reg(_GDB_PC)
            raise QemuError(f"the EL2 stub at {at:#x} did not reach EL1 {el1_pc:#x} (PC={pc:#x})")

    def gva2gpa(self, va: int) -> int | None:
        """QEMU's translation of ``va`` by the current regime, or None (``Unmapped``)."""
        text = str(self.qmp.execute("human-monitor-command", {"command-line": f"gva2gpa {va:#x}"}))
        if "Unmapped" in text:
            return None
        if not text.startswith("gpa:"):
            raise QemuError(f"gva2gpa {va:#x}: {text.strip()!r}")
        return int(text.split()[1], 16)

    def close(self) -> None:
        """Stop QEMU (terminate, then kill) and remove the sockets and blobs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        with contextlib.suppress(OSError):
            self._dir.cleanup()

    def __enter__(self) -> QemuArm:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = [
    "LOAD_BASE", "RAM_BASE", "SPSR_EL1H", "SYSREGS", "QemuArm", "QemuError", "available",
    "el2_stub", "msr", "stub", "version",
]  # fmt: skip
