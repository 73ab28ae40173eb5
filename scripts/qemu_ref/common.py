"""What every part of the QEMU reference script shares: its error, log line, subprocess
runner and cache directory.

One idea: plumbing with no paging in it, so no manual section applies.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any


class RefError(RuntimeError):
    """A failure with a message meant for the person running the script."""


def log(msg: str) -> None:
    print(f"[qemu-ref {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, check=False, **kw)


def default_cache_dir() -> Path:
    env = os.environ.get("PAGEWALK_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/pagewalk/qemu-ref").expanduser()
