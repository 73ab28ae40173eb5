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
