"""An in-process gdbstub for tests: a thread on 127.0.0.1 that answers packets from a script.

It speaks the wire format independently of :mod:`pagewalk.live.rsp` (its own framing, so a bug
there cannot cancel out), and can misbehave on purpose: bad checksums, endless packets,
silence, garbage (GDB manual, "Remote Protocol" §E.1).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable

#: a reply: bytes to send raw, or a str payload to frame
Reply = bytes | str | None

X86_TARGET = (
    '<?xml version="1.0"?><target><architecture>i386:x86-64</architecture>'
    '<xi:include href="core.xml"/></target>'
)
X86_CORE = (
    '<feature name="org.gnu.gdb.i386.core"><reg name="rax" bitsize="64" regnum="0"/>'
    '<!-- <reg name="ghost" bitsize="64"/> -->'
    '<reg name="cr0" bitsize="64"/><reg name="cr3" bitsize="64"/>'
    '<reg name="cr4" bitsize="64"/><reg name="efer" bitsize="64"/></feature>'
)


def framed(payload: str) -> bytes:
    body = payload.encode()
    return b"$" + body + b"#" + f"{sum(body) % 256:02x}".encode()


class FakeStub:
    """Serves one connection; ``answer(payload) -> Reply`` decides each reply."""

    def __init__(
        self, answer: Callable[[str], Reply], greeting: bytes = b"", unix: str | None = None
    ) -> None:
        self.answer = answer
        self.greeting = greeting
        self.received: list[str] = []
        if unix is not None:  # a Unix socket at that path (QEMU's -gdb unix:PATH,server=on)
            self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.server.bind(unix)
            self.address = f"unix:{unix}"
        else:
            self.server = socket.socket()
            self.server.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        buf = b""
        with conn:
            if self.greeting:
                conn.sendall(self.greeting)
            while True:
                try:
                    chunk = conn.recv(1 << 16)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while True:
                    buf = buf.lstrip(b"+-")
                    if buf[:1] == b"\x03":
                        buf = buf[1:]
                        self._reply(conn, "\x03")
                        continue
                    m = re.match(rb"\$([^#]*)#[0-9a-f]{2}", buf)
                    if not m:
                        break
                    buf = buf[m.end() :]
                    conn.sendall(b"+")
                    self._reply(conn, m.group(1).decode())

    def _reply(self, conn: socket.socket, payload: str) -> None:
        self.received.append(payload)
        out = self.answer(payload)
        if out is None:
            return
        with contextlib.suppress(OSError):
            conn.sendall(out if isinstance(out, bytes) else framed(out))

    def close(self) -> None:
        self.server.close()


def qemu_like(memory: bytes, regs: dict[str, int]) -> Callable[[str], Reply]:
    """Answers like QEMU's stub: qSupported, no-ack, '?', PhyMemMode, target XML, p, m, qRcmd."""
    numbers = {"rax": 0, "cr0": 1, "cr3": 2, "cr4": 3, "efer": 4}
    docs = {"target.xml": X86_TARGET, "core.xml": X86_CORE}
    mtree = (
        'FlatView #0\n AS "memory", root: system\n'
        f"  0000000000000000-{len(memory) - 1:016x} (prio 0, ram): pc.ram\n"
    )

    def answer(p: str) -> Reply:
        if p.startswith("qSupported"):
            return "PacketSize=1000;qXfer:features:read+;QStartNoAckMode+"
        if p in ("QStartNoAckMode", "Qqemu.PhyMemMode:1", "Qqemu.PhyMemMode:0", "D"):
            return "OK"
        if p == "?":
            return "T05thread:01;"
        if p == "qqemu.PhyMemMode":
            return "0"
        if p.startswith("qXfer:features:read:"):
            annex, span = p.split(":")[3:5]
            off, n = (int(x, 16) for x in span.split(","))
            doc = docs[annex]
            part = doc[off : off + n]
            return ("l" if off + n >= len(doc) else "m") + part
        if p.startswith("p"):
            num = int(p[1:], 16)
            name = next(k for k, v in numbers.items() if v == num)
            return regs.get(name, 0).to_bytes(8, "little").hex()
        if p.startswith("m"):
            addr, n = (int(x, 16) for x in p[1:].split(","))
            return memory[addr : addr + n].hex()
        if p.startswith("qRcmd,"):
            text = bytes.fromhex(p[6:]).decode()
            if text == "info mtree -f":
                return framed("O" + mtree.encode().hex()) + framed("OK")
            return "OK"
        return ""

    return answer
