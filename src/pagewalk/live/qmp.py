"""A client of QEMU's machine protocol (QMP): monitor commands and physical-memory snapshots.

One idea: the few QMP commands pagewalk needs, synchronously, each answer read against a
deadline (QEMU QMP reference: the greeting, ``qmp_capabilities``, ``query-status``, ``stop`` and
``cont``, ``query-target``, ``human-monitor-command`` and ``pmemsave``). Messages are JSON
objects, one per line; asynchronous events between them are skipped. Memory is read with
``pmemsave`` into a private temporary directory (mode 0700), one file per read, removed at once:
QEMU writes the file itself, so it must run on this machine as a user who can write there.

The small client is written here, not on the ``qemu.qmp`` package (PyPI ``qemu-qmp``): that
library is asyncio-first and its synchronous wrapper is its ``legacy`` module, while pagewalk
needs only blocking request/reply with a timeout on each read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from typing import Any

from pagewalk.errors import LiveError, hx

#: seconds to connect, and for any one answer
TIMEOUT = 10.0
#: the longest line QEMU may send before it is refused
MAX_LINE = 64 << 20


class QmpClient:
    """A QMP connection over a Unix socket (see the module docstring).

    Raises:
        LiveError: a refused or timed-out connection or a peer that is not QMP; the
            message names the socket.
    """

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.where = f"QMP socket {path}"
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise LiveError(f"{self.where}: cannot connect ({exc.strerror or exc})") from None
        self.buf = bytearray()
        self.commands = 0
        self.bytes_read = 0
        self._tmp: str | None = None
        self.was_running = False
        try:
            greeting = self._message("the QMP greeting")
            if "QMP" not in greeting:
                raise LiveError(f"{self.where}: the peer is not QMP (greeting {greeting!r:.80})")
            self.execute("qmp_capabilities")
        except BaseException:
            self.sock.close()
            raise

    def _message(self, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise LiveError(f"{self.where}: answer longer than {MAX_LINE} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise LiveError(f"{self.where}: timed out after {self.timeout:g} s on {what}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                raise LiveError(
                    f"{self.where}: timed out after {self.timeout:g} s on {what}"
                ) from None
            except OSError as exc:
                raise LiveError(f"{self.where}: connection lost ({exc.strerror or exc})") from None
            if not chunk:
                raise LiveError(f"{self.where}: connection closed during {what}")
            self.buf += chunk
        end = self.buf.index(b"\n")
        line = bytes(self.buf[:end])
        del self.buf[: end + 1]
        try:
            msg = json.loads(line)
        except ValueError:
            raise LiveError(f"{self.where}: garbage {line[:40]!r} during {what}") from None
        if not isinstance(msg, dict):
            raise LiveError(f"{self.where}: {what} answered {line[:40]!r}, not an object")
        return msg

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one QMP command and return its ``return`` value.

        Raises:
            LiveError: the command failed (QEMU's error text), or the connection did.
        """
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.commands += 1
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as exc:
            raise LiveError(f"{self.where}: connection lost ({exc.strerror or exc})") from None
        while True:
            reply = self._message(command)
            if "event" in reply:
                continue
            if "error" in reply:
                err = reply["error"]
                desc = err.get("desc", err) if isinstance(err, dict) else err
                raise LiveError(f"{self.where}: {command} failed: {desc}")
            if "return" not in reply:
                raise LiveError(f"{self.where}: {command} answered {reply!r:.80}")
            return reply["return"]

    def hmp(self, line: str) -> str:
        """A human-monitor command's output."""
        out = self.execute("human-monitor-command", {"command-line": line})
        return str(out).replace("\r\n", "\n")

    def pause(self) -> None:
        """Stop the VM if it runs (it is resumed by :meth:`close`)."""
        status = self.execute("query-status")
        if isinstance(status, dict) and status.get("running"):
            self.execute("stop")
            self.was_running = True

    def read_memory(self, addr: int, size: int) -> bytes:
        """``size`` bytes of guest-physical memory at ``addr`` (``pmemsave``)."""
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="pagewalk-qmp-")
        path = os.path.join(self._tmp, "chunk")
        try:
            self.execute("pmemsave", {"val": addr, "size": size, "filename": path})
            with open(path, "rb") as f:
                data = f.read(size + 1)
        except OSError as exc:
            raise LiveError(
                f"{self.where}: pmemsave of {size} bytes at PA {hx(addr)} left no readable "
                f"file ({exc.strerror or exc}); QEMU must run on this machine"
            ) from None
        finally:
            if os.path.exists(path):
                os.unlink(path)
        if len(data) != size:
            raise LiveError(f"{self.where}: pmemsave at PA {hx(addr)} gave {len(data)} bytes")
        self.bytes_read += size
        return data

    def close(self) -> None:
        """Resume the VM if :meth:`pause` stopped it; remove the temporary directory."""
        try:
            if self.was_running:
                self.was_running = False
                self.execute("cont")
        except LiveError:
            pass
        finally:
            self.sock.close()
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
