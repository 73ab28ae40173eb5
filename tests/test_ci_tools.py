"""CI has every program the marked suites drive, so none of them can pass by skipping.

``.ci/run`` installs them (``scripts/install_test_tools.sh``) before any test runs; under
``CI=true`` a missing one fails here, in the default suite, instead of letting a QEMU, gdb or
browser test skip unseen. On a developer's machine the check is informational only.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: the programs the live, qemu_stub, qemu and browser suites start
TOOLS = ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-system-riscv64", "gdb", "chromium")


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI must have every tool")
def test_ci_has_every_tool_the_suites_drive() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"CI lacks {missing}: .ci/run must run scripts/install_test_tools.sh"
