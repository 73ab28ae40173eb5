"""Opening a running QEMU as a machine's source: memory, registers and how to let it go.

One idea: a gdbstub (``HOST:PORT``, :mod:`pagewalk.live.gdb`) or a QMP socket
(:mod:`pagewalk.live.qmp`) -> :class:`LiveSource`, which holds what
:class:`~pagewalk.machine.files.Opened` holds for a dump (a cached
:class:`~pagewalk.live.memory.LiveMemory`, the registers as ``saved["registers"]`` and why) and
the connection, closed by :meth:`LiveSource.close`. The VM is stopped while the source is open
(a gdbstub stops it on connect; over QMP it is stopped with ``stop``) and resumed on close when
it was running. The registers and the RAM layout are those of
:mod:`pagewalk.live.machine_regs` (Intel SDM vol. 3A §2.5, Arm ARM D19, RISC-V privileged spec
satp); over QMP the registers come from ``info registers`` (x86 and RISC-V print them; AArch64
does not, so give ``--ttbr0``/``--ttbr1``/``--tcr``/``--mode`` there, or use ``--gdb``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pagewalk.errors import LiveError
from pagewalk.live.gdb import GdbClient
from pagewalk.live.machine_regs import family_of, hmp_register, ram_layout, saved_registers
from pagewalk.live.memory import LiveMemory
from pagewalk.live.qmp import QmpClient


class Closer(Protocol):
    """What a source holds open: a client, or gdb's own session (:mod:`.gdb_commands`)."""

    def close(self) -> None: ...


@dataclass
class LiveSource:
    """A running machine opened for reading (see the module docstring)."""

    name: str
    mem: LiveMemory
    saved: dict[str, Any]
    why: list[str]
    client: Closer
    extra: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        """Put the machine back as found (memory mode, running state) and disconnect."""
        self.client.close()

    def counters(self) -> dict[str, int]:
        """Bytes and requests so far: for ``--stats`` and the benchmark."""
        stats = self.mem.stats
        packets = self.client.packets if isinstance(self.client, GdbClient) else 0
        commands = self.client.commands if isinstance(self.client, QmpClient) else 0
        return {"bytes_read": stats.bytes, "chunks": stats.chunks, "cache_hits": stats.hits,
                "packets": packets, "qmp_commands": commands}  # fmt: skip


def open_gdb(address: str, *, need_registers: bool = True, timeout: float = 10.0) -> LiveSource:
    """Connect to a gdbstub and read the RAM layout and the paging registers.

    Args:
        need_registers: refuse a target whose paging registers cannot be read (False when
            ``--mode`` and the roots are given as options).

    Raises:
        LiveError: naming ``HOST:PORT`` and what failed.
    """
    client = GdbClient(address, timeout=timeout)
    try:
        layout = ram_layout(client.monitor("info mtree -f"), client.where)
        mem = LiveMemory(client.read_memory, layout, client.where)
        target = client.target()
        family, xlen = family_of(target.architecture or "", client.where)

        def read(name: str) -> int | None:
            if target.find(name) is None:
                return None
            return client.register(name)

        saved, why = _registers(family, xlen, read, client.where, need_registers)
        note = "was running: stopped for this command" if client.was_running else "was stopped"
        why.insert(0, f"{client.where}: {target.architecture}, {note}")
        return LiveSource(f"gdb:{address}", mem, saved, why, client)
    except BaseException:
        client.close()
        raise


def open_qmp(path: str, *, need_registers: bool = True, timeout: float = 10.0) -> LiveSource:
    """Connect to a QMP socket, stop the VM if it runs, read RAM layout and registers.

    Raises:
        LiveError: naming the socket and what failed.
    """
    client = QmpClient(path, timeout=timeout)
    try:
        client.pause()
        layout = ram_layout(client.hmp("info mtree -f"), client.where)
        mem = LiveMemory(client.read_memory, layout, client.where)
        target = client.execute("query-target")
        arch = str(target.get("arch", "")) if isinstance(target, dict) else ""
        family, xlen = family_of(arch, client.where)
        read = hmp_register(client.hmp("info registers"))
        saved, why = _registers(family, xlen, read, client.where, need_registers)
        note = "was running: stopped for this command" if client.was_running else "was stopped"
        why.insert(0, f"{client.where}: {arch}, {note}")
        return LiveSource(f"qmp:{path}", mem, saved, why, client)
    except BaseException:
        client.close()
        raise


def _registers(
    family: str, xlen: int, read: Any, where: str, need: bool
) -> tuple[dict[str, Any], list[str]]:
    try:
        return saved_registers(family, xlen, read, where)
    except LiveError as exc:
        if need:
            raise
        return {}, [f"{exc} (the options give them)"]
