"""Never lose the user's data: every file pagewalk writes goes through one safe-output path.

``translate --to-file``, ``build --out`` (image + IMAGE.json), ``boot --save`` and
``PhysicalMemory.save`` refuse to write onto an input of the same command, a device, a FIFO, a
socket, a directory, a symlink, or (without ``--force``) an existing file; they write under a
temporary name, check every write, and rename at the end, so a full disk or a signal leaves
neither a partial file nor a temporary one. An image and its register file are one unit: the
register file records the image's identity, and opening a mismatched pair is refused.
See docs/cli.md, "Output files".
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pagewalk import safeio
from pagewalk.errors import OutputError
from pagewalk.image import build, save
from pagewalk.memory.physical import PhysicalMemory

if TYPE_CHECKING:
    from conftest import Cli

SPEC = """
mode = "x86_64"
ram = "{ram}"
[tables]
base = "0x400000"
size = "2M"
[[map]]
va = "{va}"
pa = "0x200000"
size = "0x3000"
perm = "rwu"
"""


def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """``python -m pagewalk ARGS`` through the real entry point."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "pagewalk", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kw,
    )


def refused(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, one error line naming what it must name, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("pagewalk: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def temps(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if "pagewalk-tmp" in p.name)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A built image ``img`` (+ ``img.json``) and an address file ``in`` in ``tmp_path``."""
    (tmp_path / "s.toml").write_text(SPEC.format(ram="8M", va="0x10000"))
    proc = run("build", str(tmp_path / "s.toml"), "--out", str(tmp_path / "img"))
    assert proc.returncode == 0, proc.stderr
    np.array([0x10008, 0x20000, 0x11010], dtype="<u8").tofile(tmp_path / "in")
    return tmp_path


def translate_to(work: Path, out: str | Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("translate", str(work / "img"), "--from-file", str(work / "in"),
               "--to-file", str(out), *extra)  # fmt: skip


def snapshot(where: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in where.iterdir() if p.is_file() and not p.is_symlink()}


# ------------------------------------------------------------------ what may not be written
def test_to_file_refuses_a_device(work: Path) -> None:
    refused(translate_to(work, "/dev/null"), "/dev/null", "device")
    refused(translate_to(work, "/dev/null", "--force"), "/dev/null", "device")


def test_to_file_refuses_a_fifo_without_blocking(work: Path) -> None:
    fifo = work / "fifo"
    os.mkfifo(fifo)
    refused(translate_to(work, fifo, "--force"), str(fifo), "FIFO")
    assert temps(work) == []


def test_to_file_refuses_a_socket_and_a_directory(work: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    path = work / "sock"
    sock.bind(str(path))
    try:
        refused(translate_to(work, path, "--force"), str(path), "socket")
    finally:
        sock.close()
    (work / "dir").mkdir()
    refused(translate_to(work, work / "dir", "--force"), str(work / "dir"), "directory")


def test_to_file_refuses_a_symlink_and_leaves_it(work: Path) -> None:
    target = work / "target"
    target.write_bytes(b"keep me")
    link = work / "link"
    link.symlink_to(target)
    dangling = work / "dangling"
    dangling.symlink_to(work / "nowhere")
    for path in (link, dangling):
        refused(translate_to(work, path, "--force"), str(path), "symbolic link")
        assert path.is_symlink()
    assert target.read_bytes() == b"keep me"
    assert not (work / "nowhere").exists()
    assert temps(work) == []


@pytest.mark.parametrize("victim", ["img", "img.json", "in"])
def test_to_file_refuses_every_input_even_with_force(work: Path, victim: str) -> None:
    before = snapshot(work)
    refused(translate_to(work, work / victim, "--force"), str(work / victim), "input file")
    assert snapshot(work) == before and temps(work) == []


def test_to_file_refuses_a_hard_link_to_an_input(work: Path) -> None:
    os.link(work / "in", work / "alias")
    before = snapshot(work)
    refused(translate_to(work, work / "alias", "--force"), str(work / "alias"), "input")
    assert snapshot(work) == before


def test_to_file_refuses_the_file_behind_stdin(work: Path) -> None:
    before = snapshot(work)
    with open(work / "in", "rb") as stdin:
        proc = run("translate", str(work / "img"), "--from-file", "-", "--to-file",
                   str(work / "in"), "--force", stdin=stdin)  # fmt: skip
    refused(proc, str(work / "in"), "input")
    assert snapshot(work) == before


def test_stdout_appending_to_an_input_is_refused(work: Path) -> None:
    before = snapshot(work)
    with open(work / "img", "ab") as stdout:
        proc = subprocess.run(
            [sys.executable, "-m", "pagewalk", "translate", str(work / "img"), "--from-file",
             str(work / "in"), "--to-file", "-"],
            stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert proc.returncode == 2 and "refusing to write standard output" in proc.stderr
    assert snapshot(work) == before


def test_existing_file_needs_force(work: Path) -> None:
    out = work / "out"
    out.write_bytes(b"old contents")
    refused(translate_to(work, out), str(out), "--force")
    assert out.read_bytes() == b"old contents"
    proc = translate_to(work, out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert np.fromfile(out, dtype="<u8").tolist() == [0x200008, 2**64 - 1, 0x201010]
    assert temps(work) == []


def test_new_output_gets_the_umask_mode(work: Path) -> None:
    proc = translate_to(work, work / "fresh")
    assert proc.returncode == 0, proc.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert (work / "fresh").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (work / "img").stat().st_mode & 0o777 == 0o666 & ~umask


def test_missing_output_directory_is_bad_input(work: Path) -> None:
    refused(translate_to(work, work / "no" / "such" / "out"), str(work / "no" / "such" / "out"))


def test_build_refuses_its_own_spec(work: Path) -> None:
    spec = work / "s.toml"
    before = spec.read_bytes()
    refused(run("build", str(spec), "--out", str(spec), "--force"), str(spec), "input")
    # OUT.json would be the spec
    (work / "t.json").write_bytes(before)
    refused(run("build", str(work / "t.json"), "--out", str(work / "t"), "--force"),
            str(work / "t.json"), "input")  # fmt: skip
    assert spec.read_bytes() == before and (work / "t.json").read_bytes() == before
    assert not (work / "t").exists() and temps(work) == []


def test_build_needs_force_for_an_existing_image_or_sidecar(work: Path) -> None:
    before = snapshot(work)
    refused(run("build", str(work / "s.toml"), "--out", str(work / "img")), "img", "--force")
    assert snapshot(work) == before
    (work / "other.json").write_text("{}")
    refused(run("build", str(work / "s.toml"), "--out", str(work / "other")), "other.json")
    assert not (work / "other").exists()
    proc = run("build", str(work / "s.toml"), "--out", str(work / "img"), "--force")
    assert proc.returncode == 0, proc.stderr
    assert temps(work) == []


def test_boot_save_needs_force_and_refuses_its_memmap(tmp_path: Path) -> None:
    assert run("boot", "--save", str(tmp_path)).returncode == 0
    before = snapshot(tmp_path)
    refused(run("boot", "--save", str(tmp_path)), "memory.img", "--force")
    assert snapshot(tmp_path) == before
    proc = run("boot", "--save", str(tmp_path), "--force")
    assert proc.returncode == 0, proc.stderr
    memmap = tmp_path / "memory.img.json"
    memmap.write_text(json.dumps([{"base": 0, "length": 0x8000000, "type": "usable"}]))
    refused(run("boot", "--save", str(tmp_path), "--memmap", str(memmap), "--force"), "input")
    assert temps(tmp_path) == []


def test_library_save_refuses_links_and_devices(tmp_path: Path) -> None:
    mem = PhysicalMemory(1 << 20)
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OutputError, match="symbolic link"):
        mem.save(tmp_path / "link")
    with pytest.raises(OutputError, match="device"):
        mem.save("/dev/null")
    assert not (tmp_path / "target").exists()


# -------------------------------------------------------------------- failing writes
def full_disk(limit: int) -> Callable[..., int]:
    """An ``os.write``/``os.pwrite`` stand-in: short writes, then ENOSPC after ``limit`` bytes."""
    written = [0]

    def fake(fd: int, data: bytes, *offset: int) -> int:
        room = limit - written[0]
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), room, max(1, len(data) // 2))  # short writes too
        written[0] += n
        real = os.pwrite if offset else os.write
        return real(fd, memoryview(data)[:n], *offset)  # type: ignore[operator,no-any-return]

    return fake


def test_short_writes_are_completed(work: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safeio, "_write", full_disk(1 << 40))
    code, _, err = cli(["translate", str(work / "img"), "--from-file", str(work / "in"),
                        "--to-file", str(work / "out")])  # fmt: skip
    assert code == 0, err
    assert np.fromfile(work / "out", dtype="<u8").tolist() == [0x200008, 2**64 - 1, 0x201010]


def test_full_disk_during_translate(work: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    (work / "out").write_bytes(b"old contents")
    monkeypatch.setattr(safeio, "_write", full_disk(12))
    code, _, err = cli(["translate", str(work / "img"), "--from-file", str(work / "in"),
                        "--to-file", str(work / "out"), "--force"])  # fmt: skip
    assert code == 2
    assert f"cannot write {work / 'out'}" in err and "No space left" in err
    assert (work / "out").read_bytes() == b"old contents"
    assert temps(work) == []


def test_full_disk_during_build(work: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safeio, "_pwrite", full_disk(5000))
    code, _, err = cli(["build", str(work / "s.toml"), "--out", str(work / "new")])
    assert code == 2 and "No space left" in err and str(work / "new") in err
    assert not (work / "new").exists() and not (work / "new.json").exists()
    assert temps(work) == []


def test_full_disk_during_memory_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = PhysicalMemory(4 << 20)
    mem.write(0x1000, b"x" * 10000)
    monkeypatch.setattr(safeio, "_pwrite", full_disk(100))
    with pytest.raises(OutputError, match="No space left"):
        mem.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_a_write_leaves_no_temp(work: Path) -> None:
    """The input is a pipe that stays open, so the run is mid-write when the signal comes."""
    (work / "out").write_bytes(b"old contents")
    cmd = [sys.executable, "-m", "pagewalk", "translate", str(work / "img"), "--from-file", "-",
           "--to-file", str(work / "out"), "--force"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"\0" * 8 * 1000)
        proc.stdin.flush()
        for _ in range(6000):  # up to a minute for the temporary file to appear
            if temps(work):
                break
            try:
                proc.wait(0.01)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"exited early: {proc.returncode} {proc.stderr.read()!r}")  # type: ignore[union-attr]
        assert temps(work), "the run never started writing"
        proc.send_signal(signal.SIGTERM)
        # A signal that lands just before the run blocks reading the pipe is handled when the
        # read returns (CPython runs handlers between bytecodes), so end the input: the run
        # must still die by the signal, not finish.
        proc.stdin.close()
        assert proc.wait(60) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    assert temps(work) == []
    assert (work / "out").read_bytes() == b"old contents"


# -------------------------------------------------------------- image + register file
def build_image(path: Path, va: int, ram: str = "8M") -> None:
    import tomllib

    built = build(tomllib.loads(SPEC.format(ram=ram, va=hex(va))))
    save(path, built.mem, built.mode, built.space.roots)


def test_a_swapped_register_file_is_refused(tmp_path: Path) -> None:
    build_image(tmp_path / "a", 0x10000)
    build_image(tmp_path / "b", 0x7F0000000)  # same size, other tables
    build_image(tmp_path / "c", 0x10000, ram="16M")  # other size
    build_image(tmp_path / "d", 0x20000)  # only one last-level entry differs
    assert run("maps", str(tmp_path / "a")).returncode == 0
    for other in ("b", "c", "d"):
        (tmp_path / "a.json").write_bytes((tmp_path / f"{other}.json").read_bytes())
        for cmd in ("maps", "translate"):
            args = [cmd, str(tmp_path / "a")] + (["0x10000"] if cmd == "translate" else [])
            refused(run(*args), str(tmp_path / "a.json"), "written for a different image")


@pytest.mark.parametrize(
    "bad",
    [[], {"size": "8M"}, {"size": 1, "blocks": [-1], "fingerprint": "x"},
     {"size": 1, "blocks": list(range(5000)), "fingerprint": "x"}],
)  # fmt: skip
def test_a_malformed_identity_is_bad_input(tmp_path: Path, bad: object) -> None:
    build_image(tmp_path / "a", 0x10000)
    side = json.loads((tmp_path / "a.json").read_text())
    side["image"] = bad
    (tmp_path / "a.json").write_text(json.dumps(side))
    refused(run("maps", str(tmp_path / "a")), str(tmp_path / "a.json"), '"image" must be')


@pytest.mark.parametrize("offset", [2**64, 2**63, "size"])
def test_a_block_outside_the_image_is_bad_input(tmp_path: Path, offset: object) -> None:
    """Offsets past the image (or past 64 bits) once overflowed in the fingerprint: exit 70."""
    build_image(tmp_path / "a", 0x10000)
    side = json.loads((tmp_path / "a.json").read_text())
    size = side["image"]["size"]
    side["image"]["blocks"] = [size if offset == "size" else offset]
    (tmp_path / "a.json").write_text(json.dumps(side))
    refused(run("maps", str(tmp_path / "a")), str(tmp_path / "a.json"), "outside the image")


def test_old_register_files_without_identity_still_open(tmp_path: Path) -> None:
    build_image(tmp_path / "a", 0x10000)
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["image"]["size"] == (tmp_path / "a").stat().st_size
    del side["image"]
    (tmp_path / "a.json").write_text(json.dumps(side))
    proc = run("translate", str(tmp_path / "a"), "0x10008", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["pa"] == 0x200008


def test_a_kill_between_the_renames_is_caught_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The register file is renamed first, so a half-done pair is new registers + old image."""
    build_image(tmp_path / "a", 0x10000)
    calls = []
    real = os.replace

    def dies_after_one(src: str, dst: str) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for the power going out
        real(src, dst)

    monkeypatch.setattr(safeio, "_replace", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        build_image(tmp_path / "a", 0x7F0000000)
    assert calls == [str(tmp_path / "a.json"), str(tmp_path / "a")]
    refused(run("maps", str(tmp_path / "a")), "written for a different image")


def test_boot_save_writes_a_consistent_pair(tmp_path: Path) -> None:
    proc = run("boot", "--save", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    side = json.loads((tmp_path / "memory.img.json").read_text())
    assert side["profile"] == "powernex" and len(side["processes"]) >= 2
    assert side["image"]["size"] == (tmp_path / "memory.img").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.img", "memory.img.json"]
    assert run("maps", str(tmp_path / "memory.img")).returncode == 0
