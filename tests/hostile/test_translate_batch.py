"""``translate --from-file/--to-file`` says what it does: no option is silently ignored.

The batch walker translates; it does not check permissions, so ``--access``/``--user`` with
``--from-file`` are refused rather than ignored (an OUT full of PAs for accesses that fault
would be a lie), and ``--json`` with ``--to-file`` is refused (OUT is binary). A fault is
``0xFFFFFFFFFFFFFFFF`` in OUT, and the summary counts the faults. See docs/cli.md.
"""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagewalk import make_mode
from pagewalk.image import save
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.space import AddressSpace
from pagewalk.walk import walk
from test_batch import random_space, sample_vas

NO_PA = 2**64 - 1
MODE = make_mode("x86_64")


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pagewalk", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        check=False,
    )


@dataclass
class Image:
    path: Path
    mem: PhysicalMemory
    space: AddressSpace
    candidates: list[int]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Image:
    where = tmp_path_factory.mktemp("img")
    rng = random.Random(7)
    mem, space = random_space(MODE, rng)
    save(where / "img", mem, MODE, space.roots)
    return Image(where / "img", mem, space, sample_vas(MODE, space, rng))


@pytest.fixture
def image(built: Image) -> Path:
    return built.path


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--access", "write"], "--access"),
        (["--user"], "--user"),
        (["--access", "exec", "--user"], "--access"),
        (["--json"], "--json"),
    ],
)
def test_batch_refuses_options_it_cannot_honour(
    image: Path, tmp_path: Path, extra: list[str], needle: str
) -> None:
    np.array([0x1000], dtype="<u8").tofile(tmp_path / "in")
    proc = run("translate", str(image), "--from-file", str(tmp_path / "in"),
               "--to-file", str(tmp_path / "out"), *extra)  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.startswith("pagewalk: error: ") and needle in err and "--to-file" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_batch_to_stdout_refuses_json_too(image: Path) -> None:
    proc = run("translate", str(image), "--from-file", "-", "--to-file", "-", "--json",
               stdin=b"\0" * 8)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == b""
    assert b"--json" in proc.stderr


@settings(deadline=None, max_examples=8)
@given(data=st.data())
def test_faults_are_all_ones_and_counted(built: Image, data: st.DataObject) -> None:
    """Random addresses (most fault) mixed with ones near mappings: OUT word i is VA i's PA or
    all ones, and the summary line (stderr, as OUT is stdout) counts exactly the faults."""
    anywhere = st.integers(0, 2**64 - 1)
    vas = data.draw(st.lists(anywhere | st.sampled_from(built.candidates), min_size=1, max_size=80))
    proc = run("translate", str(built.path), "--from-file", "-", "--to-file", "-",
               stdin=np.array(vas, dtype="<u8").tobytes())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = [walk(built.mem, MODE, built.space.roots, va).pa for va in vas]
    assert np.frombuffer(proc.stdout, dtype="<u8").tolist() == [
        NO_PA if pa is None else pa for pa in want
    ]
    faults = sum(pa is None for pa in want)
    line = f"translated {len(vas)} address(es) to stdout: {faults} fault(s)"
    assert line in proc.stderr.decode()
