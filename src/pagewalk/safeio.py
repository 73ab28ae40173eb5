"""Safe output files: nothing pagewalk writes can destroy what the user already had.

Every file pagewalk writes goes through :func:`replacing`. It refuses a target that is an input
of the same command (same device and inode, so a hard link or a path through a symlink counts
too), a device, a FIFO, a socket, a directory or a symbolic link (it neither writes through a
link nor replaces it), and an existing file unless the caller allows it (``--force``). Each
target is written under a temporary name in its own directory, ``.NAME.pagewalk-tmp-XXXXXXXX``,
with every write checked (a short write is continued, a failed one raises :class:`OutputError`
naming the target), flushed to disk, and renamed over its target (POSIX ``rename(2)``, atomic)
only once every target is complete. The renames run with SIGTERM, SIGINT and SIGHUP blocked, so
a set of files (an image and its register file) is replaced together. A SIGTERM or SIGHUP while
writing removes the temporary files, then takes its usual effect; Ctrl-C does the same through
KeyboardInterrupt. (CPython runs signal handlers in the main thread between bytecodes, so a
signal that lands just as the main thread blocks reading a pipe takes effect when the read
returns.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from pagewalk.errors import OutputError

#: what names a file: a path, or an open descriptor (standard input)
Source = str | os.PathLike[str] | int
#: marks every temporary file pagewalk writes
TEMP_MARK = ".pagewalk-tmp-"
#: signals that remove the temporary files before they take effect
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# indirections so tests can play a full disk or a kill between renames
_write = os.write
_pwrite = os.pwrite
_replace = os.replace


def _refused_kind(mode: int) -> str | None:
    """Why a file of this type may not be written over, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link (pagewalk neither writes through links nor replaces them)"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _identity(source: Source) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of an input, or None when it does not exist (or is no file)."""
    try:
        st = os.fstat(source) if isinstance(source, int) else os.stat(source)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _input_name(source: Source, path: str | os.PathLike[str]) -> str:
    if isinstance(source, int):
        return "the input file behind standard input" if source == 0 else f"input fd {source}"
    if os.fspath(source) == os.fspath(path):
        return "the input file itself"
    return f"the input file {source} (the same file)"


def check_target(path: str | os.PathLike[str], *, inputs: Iterable[Source] = (),
                 force: bool = False) -> None:  # fmt: skip
    """Raise :class:`OutputError` unless ``path`` may be written (see the module's rules).

    Args:
        inputs: the files the same command reads (paths, or descriptors such as 0 for stdin).
        force: allow replacing an existing regular file that is no input.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = Path(path).parent
        if not parent.is_dir():
            raise OutputError(f"cannot write {path}: directory {parent} does not exist") from None
        return
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    kind = _refused_kind(st.st_mode)
    if kind is not None:
        raise OutputError(f"refusing to write {path}: it is {kind}")
    for source in inputs:
        if _identity(source) == (st.st_dev, st.st_ino):
            raise OutputError(
                f"refusing to write {path}: it is {_input_name(source, path)}, "
                "and writing it would destroy it"
            )
    if not force:
        raise OutputError(f"{path} already exists; give --force to replace it")


def check_stream(fd: int, name: str, inputs: Iterable[Source]) -> None:
    """Raise :class:`OutputError` if the open descriptor ``fd`` (standard output, named
    ``name``) is one of ``inputs``, as with ``>> IMAGE``."""
    here = _identity(fd)
    for source in inputs:
        if here is not None and _identity(source) == here:
            raise OutputError(
                f"refusing to write {name}: it is {_input_name(source, name)}, "
                "and writing it would destroy it"
            )


class Output:
    """One temporary file, renamed over ``target`` when every output of the set is complete."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = target.parent / f".{target.name[:200]}{TEMP_MARK}{secrets.token_hex(4)}"
        self.fd: int | None = None
        self.renamed = False

    def open(self) -> None:
        """Create the temporary file (mode 0666 less the umask, as ``open()`` would).

        The name is chosen before the file exists, so a signal at any point of the creation
        leaves a path :meth:`discard` can remove.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):
            try:
                self.fd = os.open(self.tmp, flags, 0o666)
                return
            except FileExistsError:
                self.tmp = self.tmp.with_name(self.tmp.name[:-8] + secrets.token_hex(4))
            except OSError as exc:
                raise self._error(exc) from None
        raise OutputError(f"cannot write {self.target}: no free temporary name")

    def _error(self, exc: OSError) -> OutputError:
        return OutputError(f"cannot write {self.target}: {exc.strerror or exc}")

    def _fd(self) -> int:
        if self.fd is None:
            raise OutputError(f"{self.target} is already closed")
        return self.fd

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append all of ``data`` (any contiguous buffer); returns its length in bytes."""
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            try:
                n = _write(self._fd(), view)
            except OSError as exc:
                raise self._error(exc) from None
            if n <= 0:
                raise OutputError(f"cannot write {self.target}: the write made no progress")
            view = view[n:]
        return total

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (the file position does not move)."""
        view = memoryview(data).cast("B")
        while view:
            try:
                n = _pwrite(self._fd(), view, offset)
            except OSError as exc:
                raise self._error(exc) from None
            if n <= 0:
                raise OutputError(f"cannot write {self.target}: the write made no progress")
            view, offset = view[n:], offset + n

    def truncate(self, size: int) -> None:
        """Set the file's size (a sparse file: the new bytes are holes)."""
        try:
            os.ftruncate(self._fd(), size)
        except OSError as exc:
            raise self._error(exc) from None

    def finish(self) -> None:
        """Flush to disk and close (before the rename, so a crash cannot rename a torn file)."""
        fd = self._fd()
        self.fd = None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise self._error(exc) from None
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Rename the finished temporary file over the target."""
        try:
            _replace(self.tmp, self.target)
        except OSError as exc:
            raise self._error(exc) from None
        self.renamed = True

    def discard(self) -> None:
        """Close and remove the temporary file, unless it was renamed into place."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if not self.renamed:
            self.tmp.unlink(missing_ok=True)


class _Signalled(BaseException):
    """Raised by the temporary signal handler so that ``finally`` blocks run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_clean_up() -> Iterator[None]:
    """While inside, SIGTERM/SIGHUP (and SIGINT if at its default) raise, unwinding the stack;
    on the way out the handlers are restored and the signal is raised again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not caught:  # a second signal must not interrupt the clean-up
            caught.append(signum)
            raise _Signalled(signum)

    old = {}
    for sig in SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    except _Signalled:
        pass
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
    if caught:
        signal.raise_signal(caught[0])  # the default action: the process ends by the signal
        raise KeyboardInterrupt  # pragma: no cover - only if the default did not end us


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _sync_dirs(paths: Iterable[Path]) -> None:
    """Make the renames durable (best effort: not every file system syncs directories)."""
    for where in {p.parent for p in paths}:
        with contextlib.suppress(OSError):
            fd = os.open(where, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextlib.contextmanager
def replacing(
    targets: Sequence[str | os.PathLike[str]],
    *,
    inputs: Iterable[Source] = (),
    force: bool = False,
) -> Iterator[list[Output]]:
    """Write ``targets`` as one unit: yields an :class:`Output` per target, in order.

    When the block ends normally, every output is flushed and the targets are renamed into
    place in the order given (signals blocked); when it raises, or a signal arrives, the
    temporary files are removed and the targets are left as they were.

    Raises:
        OutputError: a target that may not be written (checked before anything is created,
            and again just before the renames), or a write that fails.
    """
    paths = [Path(t) for t in targets]
    sources = list(inputs)
    if len({os.path.abspath(p) for p in paths}) != len(paths):
        raise OutputError(f"the outputs {', '.join(map(str, paths))} name the same file twice")
    for path in paths:
        check_target(path, inputs=sources, force=force)
    outputs: list[Output] = []
    with _signals_clean_up():
        try:
            for path in paths:
                outputs.append(Output(path))
                outputs[-1].open()
            yield outputs
            for out in outputs:
                out.finish()
            with _signals_blocked():
                for path in paths:
                    check_target(path, inputs=sources, force=force)
                for out in outputs:
                    out.commit()
            _sync_dirs(paths)
        except BaseException:
            for out in outputs:
                out.discard()
            raise
