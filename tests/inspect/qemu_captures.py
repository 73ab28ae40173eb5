"""Where the QEMU reference captures live, and how a test finds one or skips.

The captures come from ``scripts/qemu_reference.py`` (see docs/qemu-reference.md): each profile
directory holds ``vmcore.elf`` and QEMU's own ``info mem``/``info tlb``/``gva2gpa`` at a kernel
stop, and the same under ``user/`` for a user stop.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: profiles whose capture must exist once their QEMU is installed (the script fails without)
REQUIRED = {"x86_64", "x86_64-la57"}


def cache_dir() -> Path:
    env = os.environ.get("PAGEWALK_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/pagewalk/qemu-ref").expanduser()


def capture(profile: str, sub: str, binary: str) -> Path:
    """One capture's directory: skip without ``binary``, or when an optional profile is absent.

    A required profile's missing capture fails: the script that makes it had to succeed.
    """
    path = cache_dir() / profile / sub
    if not (path / "vmcore.elf").exists():
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed")
        if profile in REQUIRED and not sub:
            pytest.fail(f"no capture at {path}: run `python scripts/qemu_reference.py` first")
        pytest.skip(f"no {profile}/{sub} capture (optional; see scripts/qemu_reference.py)")
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()
