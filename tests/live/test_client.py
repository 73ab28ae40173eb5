"""The gdbstub client and the live machine against an in-process fake stub (fake_stub.py):
the handshake, registers from the target description, memory, and hostile peers."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from fake_stub import FakeStub, Reply, framed, qemu_like

import pagewalk
from pagewalk.errors import LiveError, PagingError
from pagewalk.inspect.stats import stats
from pagewalk.live.gdb import GdbClient

REGS = {"cr0": 0x80010011, "cr3": 0x6000, "cr4": 0x20, "efer": 0xD00}


@pytest.fixture
def image_bytes(tmp_path: Path) -> tuple[bytes, Path]:
    """A small x86-64 image built by pagewalk, its tables at 0x6000 (the oracle is the dump)."""
    spec = tmp_path / "s.toml"
    spec.write_text(
        'mode = "x86_64"\nram = "64K"\n[tables]\nbase = "0x6000"\nsize = "32K"\n'
        '[[map]]\nva = "0x400000"\npa = "0x1000"\nsize = "16K"\nperm = "rxu"\n'
        '[[map]]\nva = "0xffff888000000000"\npa = "0x0"\nsize = "8K"\nperm = "rwg"\n'
    )
    out = tmp_path / "img"
    subprocess.run(["pagewalk", "build", str(spec), "--out", str(out)], check=True, timeout=60)
    return out.read_bytes(), out


def _stub(memory: bytes, **changes: Reply) -> FakeStub:
    base = qemu_like(memory, REGS)

    def answer(p: str) -> Reply:
        for prefix, reply in changes.items():
            if p.startswith(prefix.replace("_", ":")):
                return reply
        return base(p)

    return FakeStub(answer)


def test_handshake_registers_and_memory() -> None:
    mem = bytes(range(256)) * 256
    stub = _stub(mem)
    with GdbClient(stub.address) as client:
        assert client.packet_size == 0x1000 and client.max_read == 2048
        assert client.register("cr3") == 0x6000
        assert client.register("EFER") == 0xD00  # numbered past the commented-out register
        assert client.read_memory(0x1F00, 0x1000) == mem[0x1F00:0x2F00]
        assert "pc.ram" in client.monitor("info mtree -f")
    assert "Qqemu.PhyMemMode:1" in stub.received
    assert stub.received[-1] == "Qqemu.PhyMemMode:0"  # the old mode put back
    assert "D" not in stub.received  # it was not running: not resumed


def test_unix_socket_and_optional_registers(tmp_path: Path) -> None:
    """``unix:PATH`` reaches a stub on a Unix socket; ``try_register`` is None for a register
    the target lacks or the stub refuses, where ``register`` raises."""
    base = qemu_like(bytes(4096), REGS)
    stub = FakeStub(lambda p: "E01" if p == "p1" else base(p), unix=str(tmp_path / "gdb"))
    with GdbClient(stub.address) as client:
        assert client.where == f"gdbstub unix:{tmp_path / 'gdb'}"
        assert client.try_register("cr3") == 0x6000
        assert client.try_register("cr0") is None and client.try_register("nosuch") is None
        with pytest.raises(LiveError, match=r"read of register cr0 failed"):
            client.register("cr0")
    with pytest.raises(LiveError, match=r"gdbstub unix:/nonexistent/gdb: cannot connect"):
        GdbClient("unix:/nonexistent/gdb", timeout=1)


def test_running_target_is_resumed_on_close() -> None:
    stub = FakeStub(qemu_like(bytes(4096), REGS), greeting=framed("T02thread:01;"))
    with GdbClient(stub.address) as client:
        assert client.was_running
    assert stub.received[-1] == "D"


def test_machine_through_the_stub_matches_the_image(image_bytes: tuple[bytes, Path]) -> None:
    data, path = image_bytes
    stub = _stub(data)
    with pagewalk.open(gdb=stub.address) as live:
        got = [m.to_json() for m in live.maps()]
        walked = live.walk(0x400000).to_json()
        assert live.live is not None
        read = live.live.mem.stats
    dump = pagewalk.open(path, root=0x6000, efer=0xD00)
    tables = stats(dump.mem, dump.mode, dump.roots).to_json()["table_bytes"]
    # every table once, in 4 KiB chunks, and nothing else
    assert read.bytes == tables == read.chunks << 12 and read.hits > 0
    assert got == [m.to_json() for m in dump.maps()]
    assert walked == dump.walk(0x400000).to_json()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"p": "E01"}, r"read of register cr0 failed \(E01\)"),
        ({"m": "E14"}, r"at PA 0x6000 failed"),  # the root table, CR3
        ({"m": "zz"}, "answered"),
        ({"qSupported": "PacketSize=zz"}, "bad PacketSize"),
        ({"qqemu.PhyMemMode": ""}, "cannot read physical memory"),
    ],
)
def test_error_replies_become_live_errors(change: dict[str, Reply], message: str) -> None:
    stub = _stub(bytes(0x10000), **change)
    with pytest.raises(LiveError, match=message) as info, pagewalk.open(gdb=stub.address) as m:
        list(m.maps())
    assert stub.address in str(info.value)


def test_stalled_stub_times_out() -> None:
    stub = FakeStub(lambda p: None)
    with pytest.raises(LiveError, match="timed out"):
        GdbClient(stub.address, timeout=0.3)


def test_endless_reply_is_refused() -> None:
    stub = FakeStub(lambda p: b"$" + b"A" * (2 << 20))
    with pytest.raises(LiveError, match="longer than"):
        GdbClient(stub.address, timeout=5)


def test_refused_connection_names_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(PagingError, match=f"127.0.0.1:{port}: cannot connect"):
            pagewalk.open(gdb=f"127.0.0.1:{port}")


@pytest.mark.parametrize("bad", ["host:", "host:0", "host:99999", "x"])
def test_bad_address(bad: str) -> None:
    with pytest.raises(LiveError, match="HOST:PORT"):
        GdbClient(bad)


def test_paging_off_is_reported() -> None:
    stub = FakeStub(qemu_like(bytes(0x10000), {**REGS, "cr0": 0x11}))
    with pytest.raises(LiveError, match="paging is off"):
        pagewalk.open(gdb=stub.address)
