"""``pagewalk translate --from-file/--to-file``: u64 addresses in, u64 PAs out, in chunks.

Each output word must equal the scalar walker's PA (or all ones for a fault), whatever the
chunk size, and bad input must give one error line.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from pagewalk import make_mode
from pagewalk.cli import image_cmds
from pagewalk.cli.main import main
from pagewalk.image import save
from pagewalk.walk import walk
from test_batch import random_space, sample_vas


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.parametrize("name", ["x86_64", "sv32", "aarch64"])
def test_stream_matches_scalar(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mode = make_mode(name)
    rng = random.Random(5)
    mem, space = random_space(mode, rng)
    image = tmp_path / "img"
    save(image, mem, mode, space.roots)
    vas = sample_vas(mode, space, rng)
    np.array(vas, dtype="<u8").tofile(tmp_path / "in")
    monkeypatch.setattr(image_cmds, "STREAM_CHUNK", 64)  # several chunks, one partial
    code = run(["translate", str(image), "--from-file", str(tmp_path / "in"),
                "--to-file", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    assert f"translated {len(vas)} address(es)" in capsys.readouterr().out
    got = np.fromfile(tmp_path / "out", dtype="<u8")
    want = [walk(mem, mode, space.roots, va).pa for va in vas]
    assert got.tolist() == [2**64 - 1 if pa is None else pa for pa in want]


def test_stream_rejects_ragged_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mode = make_mode("x86_64")
    mem, space = random_space(mode, random.Random(1))
    save(tmp_path / "img", mem, mode, space.roots)
    (tmp_path / "in").write_bytes(b"\0" * 12)
    code = run(["translate", str(tmp_path / "img"), "--from-file", str(tmp_path / "in"),
                "--to-file", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "not a whole number" in capsys.readouterr().err


def test_stream_pipes_and_safe_output(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """``-`` reads stdin / writes stdout (reads of any size, whole words only); a failed run
    leaves an existing OUT as it was; OUT may not be ADDRS itself."""
    import subprocess
    import sys

    mode = make_mode("x86_64")
    rng = random.Random(9)
    mem, space = random_space(mode, rng)
    image = tmp_path / "img"
    save(image, mem, mode, space.roots)
    vas = sample_vas(mode, space, rng)
    data = np.array(vas, dtype="<u8").tobytes()
    want = [walk(mem, mode, space.roots, va).pa for va in vas]
    want_words = [2**64 - 1 if pa is None else pa for pa in want]
    cmd = [sys.executable, "-m", "pagewalk", "translate", str(image), "--from-file", "-",
           "--to-file", "-"]  # fmt: skip
    proc = subprocess.run(cmd, input=data, capture_output=True, check=True)
    assert np.frombuffer(proc.stdout, dtype="<u8").tolist() == want_words
    assert f"translated {len(vas)} address(es) to stdout" in proc.stderr.decode()
    ragged = subprocess.run(cmd, input=data + b"\1\2\3", capture_output=True)
    assert ragged.returncode == 2 and b"not a whole number" in ragged.stderr
    (tmp_path / "out").write_bytes(b"old contents")
    (tmp_path / "bad").write_bytes(b"\0" * 13)
    args = ["translate", str(image), "--from-file", str(tmp_path / "bad"), "--to-file"]
    assert run([*args, str(tmp_path / "out"), "--force"]) == 2
    assert (tmp_path / "out").read_bytes() == b"old contents"
    (tmp_path / "in").write_bytes(data)
    same = ["translate", str(image), "--from-file", str(tmp_path / "in"), "--to-file"]
    assert run([*same, str(tmp_path / "in"), "--force"]) == 2
    assert (tmp_path / "in").read_bytes() == data
    assert b"is the input file" in capfdbinary.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "img", "img.json", "in", "out"]


def test_stream_failing_midway_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pagewalk.batch import Translator
    from pagewalk.errors import DumpError

    mode = make_mode("x86_64")
    mem, space = random_space(mode, random.Random(3))
    save(tmp_path / "img", mem, mode, space.roots)
    np.arange(1000, dtype="<u8").tofile(tmp_path / "in")
    (tmp_path / "out").write_bytes(b"old contents")
    calls = []
    real = Translator.translate

    def flaky(self: Translator, vas: object, *, out: object = None) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise DumpError("the disk went away")
        return real(self, vas, out=out)  # type: ignore[arg-type]

    monkeypatch.setattr(image_cmds, "STREAM_CHUNK", 64)
    monkeypatch.setattr(Translator, "translate", flaky)
    code = run(["translate", str(tmp_path / "img"), "--from-file", str(tmp_path / "in"),
                "--to-file", str(tmp_path / "out"), "--force"])  # fmt: skip
    assert code == 2 and len(calls) == 3
    assert (tmp_path / "out").read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "img.json", "in", "out"]
