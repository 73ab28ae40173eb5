"""``pagewalk maps|walk|translate`` inside gdb (or pwndbg, GEF) connected to QEMU's gdbstub.

One idea: gdb sources this file (``source $(python -m pagewalk.live.gdb_path)``) and gets a
``pagewalk`` command that runs pagewalk's own walks on the inferior: physical memory through
gdb's connection (``maintenance packet Qqemu.PhyMemMode:1`` for the command, the old mode put
back after, gdb's memory cache flushed both times), the RAM layout from ``monitor info mtree
-f``, and the paging registers from gdb's own register set (x86 CR0/CR3/CR4/EFER, AArch64
TTBRn_EL1/TCR_EL1/MAIR_EL1, RISC-V satp: Intel SDM vol. 3A §2.5, Arm ARM D19, RISC-V privileged
spec). Nothing is written to the guest.

gdb embeds its own Python (3.11 on Debian 12): when pagewalk or numpy is not importable there,
the directory that holds this package and the site-packages of ``$PAGEWALK_PYTHON`` (default:
``python3`` on PATH) are added to ``sys.path``, if that Python has gdb's version.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any


def _add_paths() -> None:
    """Make pagewalk and its dependencies importable in gdb's Python."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import click  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        python = os.environ.get("PAGEWALK_PYTHON", "python3")
        code = (
            "import sys, sysconfig; v = sys.version_info; "
            "print(v[0], v[1], sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib'])"
        )
        try:
            out = subprocess.run(
                [python, "-c", code], capture_output=True, text=True, timeout=20, check=True
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            return
        if out[:2] == [str(sys.version_info[0]), str(sys.version_info[1])]:
            sys.path.extend(p for p in out[2:] if p not in sys.path)


def _machine(opts: dict[str, Any]) -> Any:
    """A pagewalk Machine over the inferior, with physical-memory mode on until it closes."""
    import gdb  # type: ignore[import-not-found,import-untyped,unused-ignore]

    from pagewalk.live.machine_regs import family_of, ram_layout, saved_registers
    from pagewalk.live.memory import LiveMemory
    from pagewalk.live.session import LiveSource
    from pagewalk.machine.machine import live_machine

    where = "gdb inferior"
    old = gdb.execute("maintenance packet qqemu.PhyMemMode", to_string=True)
    old_mode = "1" if 'received: "1"' in old else "0"

    class Session:
        def close(self) -> None:
            gdb.execute(f"maintenance packet Qqemu.PhyMemMode:{old_mode}", to_string=True)
            gdb.execute("maintenance flush dcache", to_string=True)

    gdb.execute("maintenance packet Qqemu.PhyMemMode:1", to_string=True)
    gdb.execute("maintenance flush dcache", to_string=True)
    session = Session()
    try:
        inferior = gdb.selected_inferior()

        def fetch(pa: int, n: int) -> bytes:
            return bytes(inferior.read_memory(pa, n))

        frame = gdb.selected_frame()

        def read(name: str) -> int | None:
            try:
                return int(frame.read_register(name)) & ((1 << 64) - 1)
            except (ValueError, gdb.error):
                try:
                    return int(frame.read_register(name.upper())) & ((1 << 64) - 1)
                except (ValueError, gdb.error):
                    return None

        layout = ram_layout(gdb.execute("monitor info mtree -f", to_string=True), where)
        mem = LiveMemory(fetch, layout, where)
        family, xlen = family_of(frame.architecture().name(), where)
        need = opts.get("mode") is None
        try:
            saved, why = saved_registers(family, xlen, read, where)
        except Exception:
            if need:
                raise
            saved, why = {}, []
        live = LiveSource("gdb", mem, saved, why, session)
    except BaseException:
        session.close()
        raise
    return live_machine(live, opts)


def _options(words: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``--mode x --root 0x...`` style register options, and the other words."""
    from pagewalk.machine import OPTIONS

    opts: dict[str, Any] = dict.fromkeys(OPTIONS)
    rest: list[str] = []
    it = iter(words)
    for word in it:
        key = word[2:].replace("-", "_")
        if word.startswith("--") and key in opts:
            opts[key] = True if key == "strict" else next(it, None)
        else:
            rest.append(word)
    return opts, rest


def run(argument: str) -> str:
    """One ``pagewalk`` command line inside gdb -> its output text."""
    from pagewalk.errors import PagingError

    words = shlex.split(argument)
    if not words or words[0] not in ("maps", "walk", "translate"):
        return "usage: pagewalk maps|walk VA|translate VA... [--mode M --root R ...]"
    opts, rest = _options(words[1:])
    try:
        machine = _machine(opts)
        try:
            return _render(machine, words[0], rest)
        finally:
            machine.close()
    except PagingError as exc:
        return f"pagewalk: error: {exc}"


def _render(machine: Any, command: str, rest: list[str]) -> str:
    lines = [machine.describe()]
    if command == "maps":
        for m in machine.maps():
            lines.append(
                f"{m.va:#018x}-{m.end - 1:#018x} {m.size:#12x} -> {m.pa:#x} {m.perm.letters()}"
            )
        return "\n".join(lines)
    if not rest:
        return f"pagewalk {command}: give a VA"
    for va in rest:
        result = machine.walk(va)
        data = result.to_json()
        lines.append(
            f"{int(va, 0):#x} -> {data.get('pa') if data.get('pa') is None else hex(data['pa'])}"
        )
        if command == "walk" or result.fault is not None:
            for step in result.steps:
                lines.append(f"  {step.level.name:6} {step.entry_pa:#x} {step.raw:#018x}")
        if result.fault is not None:
            lines.append(f"  fault: {result.fault.reason}")
    return "\n".join(lines)


def _register() -> None:
    import gdb  # type: ignore[import-not-found,import-untyped,unused-ignore]

    class Pagewalk(gdb.Command):  # type: ignore[misc]
        """pagewalk maps | walk VA | translate VA...: page tables of the QEMU guest."""

        def __init__(self) -> None:
            super().__init__("pagewalk", gdb.COMMAND_USER)

        def invoke(self, argument: str, from_tty: bool) -> None:
            gdb.write(run(argument) + "\n")

    Pagewalk()


if "gdb" in sys.modules:
    _add_paths()
    _register()
