"""Test harness: a QEMU guest stopped at a chosen paging state, for comparing live and dump.

A pagewalk-built image (``pagewalk build``) is loaded as the guest's RAM with
``-device loader`` and QEMU starts stopped (``-S``); the paging registers the image's
``IMAGE.json`` names are then written through the gdbstub (``P`` packets: test harness only,
pagewalk itself never writes). ``dump()`` takes QMP's ``dump-guest-memory`` ELF core of the
same moment, which pagewalk reads as a dump (Intel SDM vol. 3A §2.5 for the registers).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from pagewalk.live.gdb import GdbClient
from pagewalk.live.qmp import QmpClient

QEMU_X86 = "qemu-system-x86_64"


def have_qemu(binary: str = QEMU_X86) -> bool:
    return shutil.which(binary) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Guest:
    """A stopped x86-64 QEMU whose RAM is ``image`` and whose paging registers are its own."""

    def __init__(self, image: Path, workdir: Path, *, running: bool = False) -> None:
        self.image, self.workdir = image, workdir
        self.port = free_port()
        self.qmp_path = str(workdir / "qmp.sock")
        meta = json.loads(Path(f"{image}.json").read_text())
        ram_mib = max(16, (image.stat().st_size + (1 << 20) - 1) >> 20)
        self.proc = subprocess.Popen(
            [QEMU_X86, "-S", "-nodefaults", "-display", "none", "-m", f"{ram_mib}M",
             "-gdb", f"tcp:127.0.0.1:{self.port}",
             "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
             "-device", f"loader,file={image},addr=0,force-raw=on"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            self._wait()
            self._set_registers(meta)
            if running:
                self.qmp("cont")
        except BaseException:
            self.close()
            raise

    @property
    def gdb(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"QEMU exited: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if Path(self.qmp_path).exists():
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("QEMU did not open its gdbstub")

    def _set_registers(self, meta: dict[str, Any]) -> None:
        regs = meta["registers"]
        # EFER last, with LMA (bit 10) when LME is set: a CPU in IA-32e mode has it
        efer = regs["efer"] | (0x400 if regs["efer"] & 0x100 else 0)
        values = [("cr4", regs["cr4"]), ("cr3", meta["roots"]["CR3"]),
                  ("cr0", regs["cr0"]), ("efer", efer)]  # fmt: skip
        with GdbClient(self.gdb, physical=False) as client:
            for name, value in values:
                reg = client.target().find(name)
                assert reg is not None
                client.ask(f"P{reg.number:x}=" + value.to_bytes(reg.bits // 8, "little").hex())

    def qmp(self, command: str, args: dict[str, Any] | None = None) -> Any:
        client = QmpClient(self.qmp_path)
        try:
            return client.execute(command, args)
        finally:
            client.sock.close()

    def status(self) -> str:
        return str(self.qmp("query-status")["status"])

    def dump(self, path: Path) -> Path:
        self.qmp("dump-guest-memory", {"paging": False, "protocol": f"file:{path}"})
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
