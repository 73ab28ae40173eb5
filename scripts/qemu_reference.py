"""Boot real Debian kernels under QEMU TCG and record what QEMU's own MMU says about them.

One idea: the page-table reference for pagewalk's tests comes from a real kernel's real tables,
read by QEMU (``info registers``, ``info mem``, ``info tlb``, ``gva2gpa``, the gdbstub's system
registers) at the instant an ELF core of the guest is written, never from pagewalk's code.

Profiles: x86_64 (4-level, KPTI), x86_64-la57, aarch64, riscv64-sv57/-sv48/-sv39 (Debian 13's
riscv64 kernel) and i386/i386-pae/i386-pae-pti (Debian 12's 686 and 686-pae kernels).

Everything is made from Debian packages (QEMU via ``apt-get install``; the kernel and a static
busybox via ``apt-get download`` and ``dpkg-deb -x``, for riscv64 and i386 through a private apt
configuration that leaves the host's apt alone) and cached outside git, by default in
``$PAGEWALK_CACHE`` or ``~/.cache/pagewalk/qemu-ref/``. A profile whose ``meta.json`` exists is
not booted again unless ``--force`` is given. See docs/qemu-reference.md.

This file is only the command: the code is the package ``qemu_ref`` next to it (Intel SDM vol. 3A
ch. 4, Arm ARM D8 and the RISC-V privileged spec are cited in its modules).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

# The package sits next to this file: importable whatever the cwd, and when run by path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from qemu_ref.cli import main  # noqa: E402

__all__ = ["main"]

if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
