"""The GDB remote serial protocol's framing: packets, checksums, escapes and run-length runs.

One idea: bytes on the wire <-> packet payloads, nothing about what a packet means. A packet is
``$payload#cc`` where ``cc`` is the modulo-256 sum of the payload bytes as sent, in two hex
digits (GDB manual, "Remote Protocol", §E.1 "Overview"). In a payload, ``}`` escapes the next
byte, which is XORed with 0x20 (``#``, ``$``, ``}`` and ``*`` are always escaped when sent),
and ``X*n`` repeats ``X`` ``ord(n) - 29`` more times (run-length encoding, which stubs may use in
replies). Outside packets the peer sends ``+``/``-`` acknowledgements (until QStartNoAckMode)
and, after an interrupt, ``%`` notifications, which :class:`PacketReader` skips.

:class:`PacketReader` reads packets from a socket with a deadline on every read, refuses a
packet longer than its limit (a hostile or broken peer must not cost unbounded memory), a bad
checksum (answered with ``-`` while acks are on, so the peer resends) and bytes that are no
packet, each with a :class:`~pagewalk.errors.LiveError` naming the peer.
"""

from __future__ import annotations

import socket
import time

from pagewalk.errors import LiveError

#: bytes that must be escaped inside a payload we send
_SPECIAL = frozenset(b"#$}*")
#: the most bytes a payload may take on the wire before it is refused (QEMU's is 4 KiB)
MAX_PACKET = 1 << 20
#: acks, and the byte an interrupt sends
ACK, NAK, INTERRUPT = b"+", b"-", b"\x03"


def checksum(data: bytes) -> int:
    """The modulo-256 sum of ``data`` (the payload as sent)."""
    return sum(data) & 0xFF


def escape(payload: bytes) -> bytes:
    """``payload`` with ``# $ } *`` escaped as ``}`` and the byte XOR 0x20."""
    if not any(b in _SPECIAL for b in payload):
        return payload
    out = bytearray()
    for b in payload:
        if b in _SPECIAL:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """The packet that carries ``payload``: ``$`` escaped payload ``#`` checksum."""
    body = escape(payload)
    return b"$" + body + b"#%02x" % checksum(body)


def decode(body: bytes, where: str = "peer") -> bytes:
    """A payload as received (escapes and run-length runs) -> its bytes.

    Raises:
        LiveError: a dangling escape, a run with nothing to repeat or a bad run length.
    """
    if b"}" not in body and b"*" not in body:
        return body
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        b = body[i]
        if b == 0x7D:
            if i + 1 >= n:
                raise LiveError(f"{where}: packet ends inside an escape")
            out.append(body[i + 1] ^ 0x20)
            i += 2
        elif b == 0x2A:  # '*': the byte before, repeated
            if not out or i + 1 >= n:
                raise LiveError(f"{where}: run-length '*' with nothing to repeat")
            count = body[i + 1] - 29
            if count < 3 or count > 97:  # printable counts only (GDB manual §E.1)
                raise LiveError(f"{where}: bad run length {body[i + 1]!r} in a packet")
            if len(out) + count > MAX_PACKET:
                raise LiveError(f"{where}: run-length packet expands past {MAX_PACKET} bytes")
            out += bytes((out[-1],)) * count
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


class PacketReader:
    """Packets from a stream socket, each read against a deadline.

    Args:
        sock: the connected socket.
        where: the peer as messages name it (``gdbstub 127.0.0.1:1234``).
        timeout: seconds any one packet may take to arrive.
        limit: the most wire bytes one packet may take.
    """

    def __init__(
        self, sock: socket.socket, where: str, timeout: float, limit: int = MAX_PACKET
    ) -> None:
        self.sock, self.where, self.timeout, self.limit = sock, where, timeout, limit
        self.buf = bytearray()
        self.acks = True  # send '+' for each good packet (and '-' for a bad one)
        self.bytes_in = 0

    def _fill(self, deadline: float, what: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LiveError(f"{self.where}: timed out after {self.timeout:g} s waiting for {what}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            raise LiveError(
                f"{self.where}: timed out after {self.timeout:g} s waiting for {what}"
            ) from None
        except OSError as exc:
            raise LiveError(f"{self.where}: connection lost ({exc.strerror or exc})") from None
        if not chunk:
            raise LiveError(f"{self.where}: connection closed while waiting for {what}")
        self.bytes_in += len(chunk)
        self.buf += chunk

    def packet(self, what: str = "a reply", timeout: float | None = None) -> bytes:
        """The next packet's payload, decoded; acks and notifications before it are skipped.

        Raises:
            LiveError: a timeout, a closed connection, garbage between packets, a packet
                longer than the limit or (with acks off) a bad checksum.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            self._skip_noise()
            if self.buf[:1] == b"$":
                end = self.buf.find(b"#")
                if end >= 0 and len(self.buf) >= end + 3:
                    body = bytes(self.buf[1:end])
                    tail = bytes(self.buf[end + 1 : end + 3])
                    del self.buf[: end + 3]
                    if self._good(body, tail):
                        return decode(body, self.where)
                    continue
                if (end if end >= 0 else len(self.buf)) > self.limit:
                    raise LiveError(
                        f"{self.where}: packet longer than {self.limit} bytes (hostile or "
                        "broken peer)"
                    )
            self._fill(deadline, what)

    def _skip_noise(self) -> None:
        """Drop acks and ``%`` notifications; refuse other bytes between packets."""
        while self.buf:
            c = self.buf[0]
            if c in b"+-":
                del self.buf[0]
            elif c == 0x25:  # '%' notification: framed like a packet, not acknowledged
                end = self.buf.find(b"#")
                if end < 0 or len(self.buf) < end + 3:
                    if len(self.buf) > self.limit:
                        raise LiveError(f"{self.where}: notification longer than {self.limit}")
                    return
                del self.buf[: end + 3]
            elif c == 0x24:  # '$'
                return
            else:
                bad = bytes(self.buf[:16])
                raise LiveError(f"{self.where}: garbage {bad!r} where a packet should start")

    def _good(self, body: bytes, tail: bytes) -> bool:
        try:
            ok = int(tail, 16) == checksum(body)
        except ValueError:
            ok = False
        if self.acks:
            self.sock.sendall(ACK if ok else NAK)
            return ok
        if not ok:
            raise LiveError(f"{self.where}: packet with a bad checksum {tail!r}")
        return True
