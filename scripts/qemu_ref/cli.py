"""The command line of ``scripts/qemu_reference.py``: which profiles, the cache, and exit
codes (0 all asked-for profiles made or cached; 1 a required one failed).

One idea: argument parsing and the loop over profiles; no paging, no manual section.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from pathlib import Path

from .capture import PAGE_CHECK_TARGET
from .common import RefError, default_cache_dir, log
from .make import make_profile
from .packages import Apt
from .profiles import DEFAULT_PROFILES, OPTIONAL_PROFILES, PROFILES

#: The first line of the script's docstring, which `--help` has always shown.
DESCRIPTION = (
    "Boot real Debian kernels under QEMU TCG and record what QEMU's own MMU says about them."
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument("--force", action="store_true", help="boot again even if cached")
    ap.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per boot, boot to last capture"
    )
    ap.add_argument(
        "--profile",
        action="append",
        choices=list(PROFILES),
        help=f"profile(s) to make (default: {', '.join(DEFAULT_PROFILES)}; in the default "
        f"set {', '.join(sorted(OPTIONAL_PROFILES))} are optional: their failure is reported "
        "but not fatal; a profile named here is required)",
    )
    ap.add_argument(
        "--all",
        action="store_true",
        help=f"every profile: {', '.join(PROFILES)} (each one asked for is required)",
    )
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument(
        "--every-page",
        action="store_true",
        help="riscv64/i386: check gva2gpa for every page QEMU lists as mapped (about 1 ms a "
        f"page: minutes per stop), not about {PAGE_CHECK_TARGET} of them",
    )
    args = ap.parse_args(argv)
    names = list(PROFILES) if args.all else (args.profile or DEFAULT_PROFILES)
    optional = OPTIONAL_PROFILES if not (args.profile or args.all) else set()
    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    apt = Apt(allow_install=not args.no_install)
    failed = []
    for name in names:
        prof = PROFILES[name]
        final = cache / name
        if (final / "meta.json").exists() and not args.force:
            log(f"{name}: cached in {final} (use --force to boot again)")
            continue
        try:
            meta = make_profile(prof, cache, apt, args.timeout, args.every_page)
        except (RefError, OSError, subprocess.SubprocessError) as e:
            msg = f"{name}: FAILED: {e}"
            log(msg)
            (cache / f"{name}.FAILED.txt").write_text(msg + "\n")
            if name not in optional:
                failed.append(name)
            continue
        with contextlib.suppress(FileNotFoundError):
            (cache / f"{name}.FAILED.txt").unlink()
        k, u = meta["kernel"], meta["user"]
        key = {"x86_64": "cr3", "i386": "cr3", "riscv64": "satp"}.get(prof.arch, "ttbr1_el1")
        log(
            f"{name}: done in {meta['seconds']['total']} s -> {final}; kernel {key}="
            f"{k[key]:#x}; user stop: "
            + (f"{u[key]:#x}" if u else "not caught")
            + (f" (ttbr0={u['ttbr0_el1']:#x})" if u and prof.arch == "aarch64" else "")
        )
    if failed:
        print(f"qemu_reference: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
