"""A client of a GDB remote stub (QEMU's gdbstub): registers and physical memory, read only.

One idea: what pagewalk needs from a stopped target, asked in the remote protocol's own packets
(GDB manual, "Remote Protocol": §E.2 "Packets", §E.4 "General Query Packets", §E.10 "Interrupts",
§E.11 "Notification Packets"). The handshake is ``qSupported`` (for ``PacketSize``),
``QStartNoAckMode`` when offered, then ``?``; registers come from the target description
(``qXfer:features:read``, :mod:`pagewalk.live.tdesc`) and are read with ``p`` (or one ``g``);
memory with ``m``, in pieces that fit ``PacketSize``, several pieces in flight at once.
``Qqemu.PhyMemMode:1`` (QEMU's gdbstub) makes ``m`` read guest-physical addresses; the previous
mode is put back on :meth:`GdbClient.close`. ``qRcmd`` runs a monitor command (QEMU: the human
monitor) and collects its ``O`` output.

Running or stopped: QEMU stops the VM when a client connects and then sends a ``T02`` stop
notification (the VM was running); a client that saw one detaches with ``D`` on close, which
resumes it; otherwise it only closes the socket, so a VM that was paused stays paused. A stub
that reports no stop (``?`` answers ``OK``) is interrupted with ``\\x03`` and resumed on close.
Nothing here writes guest memory or registers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from pagewalk.errors import LiveError, hx
from pagewalk.live.rsp import INTERRUPT, PacketReader, frame
from pagewalk.live.tdesc import Description, Register, parse

#: seconds to connect, and for any one reply
TIMEOUT = 10.0
#: ``m`` requests sent before the first reply is read
WINDOW = 32


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, ``PORT``; ``[v6]:PORT``) -> ``(host, port)``.

    Raises:
        LiveError: no port, or a port outside 1..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port, 10)
    except ValueError:
        number = -1
    if not 0 < number < 1 << 16:
        raise LiveError(f"--gdb {text!r}: give HOST:PORT with a port in 1..65535")
    return host, number


def connect(address: str, timeout: float) -> tuple[socket.socket, str]:
    """A connected socket to ``HOST:PORT`` (TCP) or ``unix:PATH`` (QEMU's ``-gdb unix:PATH,
    server=on``), and the stub as messages name it.

    Raises:
        LiveError: a bad address, or a refused or timed-out connection.
    """
    if address.startswith("unix:"):
        where = f"gdbstub {address}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address[5:])
        except OSError as exc:
            sock.close()
            raise LiveError(f"{where}: cannot connect ({exc.strerror or exc})") from None
        return sock, where
    host, port = parse_address(address)
    where = f"gdbstub {host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise LiveError(f"{where}: cannot connect ({exc.strerror or exc})") from None
    # small request/reply packets: without NODELAY each waits out a delayed ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, where


class GdbClient:
    """A connection to a gdbstub (see the module docstring).

    Args:
        address: ``HOST:PORT``, or ``unix:PATH`` for a Unix socket.
        timeout: seconds to connect and for every reply.
        physical: switch ``m`` to physical addresses (QEMU's PhyMemMode).

    Raises:
        LiveError: a refused or timed-out connection, garbage, or a stub without the
            features asked for; the message names ``HOST:PORT``.
    """

    def __init__(self, address: str, timeout: float = TIMEOUT, physical: bool = True) -> None:
        self.sock, self.where = connect(address, timeout)
        self.reader = PacketReader(self.sock, self.where, timeout)
        self.packets = 0
        self.bytes_read = 0
        self.was_running = False
        self._old_phys: str | None = None
        self._closed = False
        try:
            self._handshake(physical)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol
    def send(self, payload: bytes) -> None:
        """Send one packet (its ack, while acks are on, is skipped by the reader)."""
        self.packets += 1
        try:
            self.sock.sendall(frame(payload))
        except OSError as exc:
            raise LiveError(f"{self.where}: connection lost ({exc.strerror or exc})") from None

    def reply(self, what: str) -> bytes:
        """The next reply, skipping stop notifications (noting that the target was running)."""
        while True:
            data = self.reader.packet(what)
            if data[:1] in (b"T", b"S") and what != "?":
                self.was_running = self.was_running or data[1:3] == b"02"
                continue
            return data

    def ask(self, payload: str | bytes, what: str | None = None) -> bytes:
        """Send a packet and return its reply; ``E nn`` replies become errors.

        Raises:
            LiveError: naming the packet and the error number.
        """
        raw = payload.encode() if isinstance(payload, str) else payload
        label = what or raw[:24].decode(errors="replace")
        self.send(raw)
        data = self.reply(label)
        if _is_error(data):
            raise LiveError(f"{self.where}: {label} failed ({data.decode(errors='replace')})")
        return data

    def _handshake(self, physical: bool) -> None:
        features = self.ask("qSupported:xmlRegisters=i386,arm,riscv", "qSupported")
        self.supported = _features(features)
        self.packet_size = _packet_size(self.supported.get("PacketSize"), self.where)
        if self.supported.get("QStartNoAckMode") == "+" and self.ask("QStartNoAckMode") == b"OK":
            self.reader.acks = False
        self.send(b"?")
        stop = self.reader.packet("?")
        if stop == b"OK" or not stop:  # no stop reported: the target runs (non-stop stubs)
            self.interrupt()
        self.description: Description | None = None
        if physical:
            self._physical_mode()

    def interrupt(self) -> None:
        """Stop a running target (``\\x03``) and wait for its stop reply."""
        try:
            self.sock.sendall(INTERRUPT)
        except OSError as exc:
            raise LiveError(f"{self.where}: connection lost ({exc.strerror or exc})") from None
        self.was_running = True
        reply = self.reader.packet("the stop after an interrupt")
        if reply[:1] not in (b"T", b"S"):
            raise LiveError(f"{self.where}: interrupt answered {reply[:32]!r}, not a stop")

    def _physical_mode(self) -> None:
        self.send(b"qqemu.PhyMemMode")
        old = self.reply("qqemu.PhyMemMode")
        if old not in (b"0", b"1"):
            raise LiveError(
                f"{self.where}: the stub cannot read physical memory (no Qqemu.PhyMemMode; "
                "pagewalk needs QEMU's gdbstub)"
            )
        self._old_phys = old.decode()
        if old != b"1":
            self.ask("Qqemu.PhyMemMode:1")

    # ------------------------------------------------------------------ reads
    def target(self) -> Description:
        """The target description (read once)."""
        if self.description is None:
            if self.supported.get("qXfer:features:read") != "+":
                raise LiveError(f"{self.where}: the stub serves no target description")
            self.description = parse(self._xfer, self.where)
        return self.description

    def _xfer(self, annex: str) -> bytes:
        out = bytearray()
        step = max(self.packet_size - 8, 64)
        while True:
            data = self.ask(f"qXfer:features:read:{annex}:{len(out):x},{step:x}", f"read {annex}")
            if data[:1] not in (b"l", b"m"):
                raise LiveError(f"{self.where}: bad answer reading {annex}: {data[:32]!r}")
            out += data[1:]
            if len(out) > 1 << 22:
                raise LiveError(f"{self.where}: target description {annex} is over 4 MiB")
            if data[:1] == b"l":
                return bytes(out)
            if len(data) == 1:
                raise LiveError(f"{self.where}: empty 'm' chunk reading {annex}")

    def register(self, name: str) -> int:
        """The value of register ``name`` (``p``), little-endian as the stub sends it.

        Raises:
            LiveError: the target has no such register, or the stub cannot read it.
        """
        reg = self.target().find(name)
        if reg is None:
            raise LiveError(f"{self.where}: the target has no register {name}")
        data = self.ask(f"p{reg.number:x}", f"read of register {reg.name}")
        if b"x" in data.lower():
            raise LiveError(f"{self.where}: register {reg.name} is unavailable")
        return self._value(reg, data)

    def try_register(self, name: str) -> int | None:
        """Register ``name``, or None when the target has none or the stub answers ``E nn``
        or ``xx`` (unavailable); other failures (timeouts, garbage) still raise."""
        reg = self.target().find(name)
        if reg is None:
            return None
        self.send(b"p%x" % reg.number)
        data = self.reply(f"read of register {reg.name}")
        if _is_error(data) or b"x" in data.lower():
            return None
        return self._value(reg, data)

    def _value(self, reg: Register, data: bytes) -> int:
        try:
            raw = bytes.fromhex(data.decode())
        except ValueError:
            raw = b""
        width = (reg.bits + 7) // 8
        if len(raw) < width:
            raise LiveError(f"{self.where}: register {reg.name} read as {data[:40]!r}")
        # the description's width wins: QEMU 7.2 sends CR4 and EFER with 2 stray bytes
        return int.from_bytes(raw[:width], "little")

    def read_memory(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr`` (physical, in PhyMemMode), in pipelined ``m`` pieces.

        Raises:
            LiveError: an error reply or a short or malformed answer, naming the address.
        """
        piece = self.max_read
        spans = [(a, min(piece, addr + size - a)) for a in range(addr, addr + size, piece)]
        out = bytearray()
        for i in range(0, len(spans), WINDOW):
            group = spans[i : i + WINDOW]
            for a, n in group:
                self.send(b"m%x,%x" % (a, n))
            for a, n in group:
                out += self._memory_reply(a, n)
        self.bytes_read += size
        return bytes(out)

    def _memory_reply(self, addr: int, n: int) -> bytes:
        data = self.reply(f"memory at {hx(addr)}")
        if _is_error(data):
            raise LiveError(f"{self.where}: read of {n} bytes at PA {hx(addr)} failed ({data!r})")
        try:
            raw = bytes.fromhex(data.decode())
        except ValueError:
            raise LiveError(f"{self.where}: read at PA {hx(addr)} answered {data[:32]!r}") from None
        if len(raw) != n:
            raise LiveError(f"{self.where}: read at PA {hx(addr)} gave {len(raw)} of {n} bytes")
        return raw

    @property
    def max_read(self) -> int:
        """The largest power-of-two ``m`` read whose hex digits fit ``PacketSize`` (as GDB
        sizes its own reads; QEMU answers up to half its 4 KiB buffer)."""
        return max(16, 1 << ((self.packet_size // 2).bit_length() - 1))

    def monitor(self, command: str) -> str:
        """Run a monitor command (``qRcmd``) and return what it printed."""
        self.send(b"qRcmd," + command.encode().hex().encode())
        out = bytearray()
        for data in self._console(command):
            out += data
        return out.decode(errors="replace").replace("\r\n", "\n")

    def _console(self, command: str) -> Iterator[bytes]:
        for _ in range(1 << 16):
            data = self.reply(f"monitor {command}")
            if data == b"OK":
                return
            if data[:1] == b"O" and len(data) > 1:
                try:
                    yield bytes.fromhex(data[1:].decode())
                except ValueError:
                    raise LiveError(f"{self.where}: monitor output {data[:32]!r}") from None
                continue
            if not data:
                raise LiveError(f"{self.where}: the stub has no monitor ({command!r})")
            if _is_error(data):
                raise LiveError(f"{self.where}: monitor {command!r} failed ({data!r})")
            yield data  # a stub that answers with hex text only
            return
        raise LiveError(f"{self.where}: monitor {command!r} printed without end")

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Restore the memory mode, resume the target if it was running, and disconnect."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._old_phys is not None and self._old_phys != "1":
                self.ask(f"Qqemu.PhyMemMode:{self._old_phys}")
            if self.was_running:
                self.send(b"D")  # detach: QEMU resumes the VM
                self.reply("D")
        except LiveError:
            pass  # the connection is gone: nothing more to put back
        finally:
            self.sock.close()

    def __enter__(self) -> GdbClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_error(data: bytes) -> bool:
    """``Enn`` (two hex digits), or ``E.text`` (GDB manual §E.1)."""
    if data[:2] == b"E.":
        return True
    return (
        len(data) == 3
        and data[:1] == b"E"
        and all(c in b"0123456789abcdefABCDEF" for c in data[1:])
    )


def _features(reply: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in reply.decode(errors="replace").split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key] = value
        elif item[-1:] in "+-?" and item:
            out[item[:-1]] = item[-1]
    return out


def _packet_size(text: str | None, where: str) -> int:
    if text is None:
        return 400  # the protocol's conservative default
    try:
        size = int(text, 16)
    except ValueError:
        raise LiveError(f"{where}: bad PacketSize {text!r} in qSupported") from None
    if size < 64:
        raise LiveError(f"{where}: PacketSize {size} is too small to read memory")
    return min(size, 1 << 20)
