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
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
import json
import lzma
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER = "PAGEWALK-READY"
# Symbols the guest prints from /proc/kallsyms: labels, and a test for "kernel tables active".
KSYMS = (
    "init_top_pgt|swapper_pg_dir|tramp_pg_dir|reserved_pg_dir|_text|_stext|_etext|_edata"
    "|page_offset_base|vmalloc_base|vmemmap_base|init_task|jiffies"
)
PROBE_SYMS = ("init_top_pgt", "swapper_pg_dir", "init_task", "jiffies", "_stext")
LAYOUT_VARS = ("page_offset_base", "vmalloc_base", "vmemmap_base")
USER_MARKER = "PAGEWALK-USER-MARKER-5f3c9a1e"


class RefError(RuntimeError):
    """A failure with a message meant for the person running the script."""


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    arch: str  # "x86_64", "aarch64", "riscv64" or "i386"
    deb_arch: str  # Debian architecture of the guest packages
    qemu_binary: str
    qemu_package: str
    kernel_meta: str  # Debian meta-package whose dependency names the exact kernel
    machine: list[str]
    cpu: str
    append: str
    note: str
    # Debian suite the guest packages come from through a private apt configuration (its own
    # sources, lists and cache under <cache>/apt/), so that the host's apt is not changed:
    # no `dpkg --add-architecture`, no new source. None: the host's own apt, as for amd64/arm64.
    suite: str | None = None
    store: str | None = None  # folder under <cache>/packages/ (default: deb_arch)
    vmcoreinfo_device: bool = True  # -device vmcoreinfo (QEMU 7.2's riscv virt cannot have it)

    @property
    def store_name(self) -> str:
        return self.store or self.deb_arch


PROFILES: dict[str, Profile] = {
    "x86_64": Profile(
        name="x86_64",
        arch="x86_64",
        deb_arch="amd64",
        qemu_binary="qemu-system-x86_64",
        qemu_package="qemu-system-x86",
        kernel_meta="linux-image-cloud-amd64",
        machine=[],
        cpu="max",
        append="console=ttyS0 panic=-1 no5lvl pti=on",
        note="4-level paging (no5lvl) with KPTI forced on (pti=on); KASLR left on",
    ),
    "x86_64-la57": Profile(
        name="x86_64-la57",
        arch="x86_64",
        deb_arch="amd64",
        qemu_binary="qemu-system-x86_64",
        qemu_package="qemu-system-x86",
        kernel_meta="linux-image-cloud-amd64",
        machine=[],
        cpu="max",
        append="console=ttyS0 panic=-1 pti=off",
        note="5-level paging (CPU 'max' has LA57, kernel has X86_5LEVEL), no KPTI; KASLR on",
    ),
    "aarch64": Profile(
        name="aarch64",
        arch="aarch64",
        deb_arch="arm64",
        qemu_binary="qemu-system-aarch64",
        qemu_package="qemu-system-arm",
        kernel_meta="linux-image-arm64",
        machine=["-machine", "virt"],
        cpu="cortex-a57",
        append="console=ttyAMA0 panic=-1",
        note="4K granule, 48-bit VA, 4 levels; KASLR on, which forces KPTI on a Cortex-A57",
    ),
}


def _riscv64(name: str, extra: str, note: str) -> Profile:
    return Profile(
        name=name,
        arch="riscv64",
        deb_arch="riscv64",
        qemu_binary="qemu-system-riscv64",
        qemu_package="qemu-system-misc",
        kernel_meta="linux-image-riscv64",
        machine=["-machine", "virt", "-bios", "default"],
        cpu="rv64",
        append="console=ttyS0 panic=-1" + extra,
        note=note + "; OpenSBI is QEMU's own (-bios default); no KASLR (not built in)",
        suite="trixie",
        store="riscv64",
        vmcoreinfo_device=False,
    )


def _i386(name: str, meta: str, extra: str, note: str) -> Profile:
    return Profile(
        name=name,
        arch="i386",
        deb_arch="i386",
        qemu_binary="qemu-system-i386",
        qemu_package="qemu-system-x86",
        kernel_meta=meta,
        machine=[],
        cpu="max",
        append="console=ttyS0 panic=-1" + extra,
        note=note + "; KASLR on",
        suite="bookworm",
        store=f"i386-{meta.removeprefix('linux-image-')}",
    )


PROFILES.update(
    {
        "riscv64-sv57": _riscv64(
            "riscv64-sv57",
            "",
            "Sv57: QEMU 7.2's rv64 offers Sv39/48/57 and Linux takes the largest",
        ),
        "riscv64-sv48": _riscv64("riscv64-sv48", " no5lvl", "Sv48 (kernel no5lvl)"),
        "riscv64-sv39": _riscv64("riscv64-sv39", " no4lvl", "Sv39 (kernel no4lvl)"),
        "i386": _i386(
            "i386",
            "linux-image-686",
            "",
            "32-bit 2-level paging (no PAE), 4 MiB PSE pages; no PTI (Linux needs PAE for it)",
        ),
        "i386-pae": _i386(
            "i386-pae", "linux-image-686-pae", " pti=off", "PAE 3-level paging, PTI off (pti=off)"
        ),
        "i386-pae-pti": _i386(
            "i386-pae-pti",
            "linux-image-686-pae",
            " pti=on",
            "PAE 3-level paging, PTI forced on (pti=on): kernel/user PGD pair",
        ),
    }
)
DEFAULT_PROFILES = list(PROFILES)  # all nine: 3.5 min on 2 cores with nothing cached
# In the default set, a failure of one of these is reported, not fatal: aarch64 needs a
# foreign architecture on the host, the others a second suite (trixie) or i386's lists.
OPTIONAL_PROFILES = {"aarch64", *(n for n, p in PROFILES.items() if p.suite is not None)}
NEW_ARCHES = ("riscv64", "i386")  # read VMCOREINFO from guest RAM and check every mapped page


def log(msg: str) -> None:
    print(f"[qemu-ref {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, check=False, **kw)


def default_cache_dir() -> Path:
    env = os.environ.get("PAGEWALK_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/pagewalk/qemu-ref").expanduser()


# ---------------------------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------------------------


class Apt:
    """apt-get and dpkg, run once each where possible."""

    def __init__(self, allow_install: bool) -> None:
        self.allow_install = allow_install
        self.updated = False
        self.env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def _need_root(self, what: str) -> None:
        if not self.allow_install:
            raise RefError(f"{what} is needed but --no-install was given")
        if shutil.which("apt-get") is None:
            raise RefError(f"{what} is needed and this machine has no apt-get (Debian only)")
        if os.geteuid() != 0:
            raise RefError(f"{what} is needed: run this script as root (apt-get needs it)")

    def update(self) -> None:
        if self.updated:
            return
        self._need_root("apt-get update")
        log("apt-get update")
        r = run(["apt-get", "update"], env=self.env)
        if r.returncode != 0:
            raise RefError(
                "apt-get update failed (no network to the Debian mirror?):\n" + r.stderr[-2000:]
            )
        self.updated = True

    @staticmethod
    def installed_version(pkg: str) -> str | None:
        r = run(["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg])
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            return None
        return r.stdout.split("\t", 1)[1]

    def ensure_installed(self, pkgs: list[str]) -> dict[str, str]:
        missing = [p for p in pkgs if self.installed_version(p) is None]
        if missing:
            self._need_root("apt-get install " + " ".join(missing))
            self.update()
            log("apt-get install " + " ".join(missing))
            r = run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=self.env)
            if r.returncode != 0:
                raise RefError("apt-get install failed:\n" + (r.stdout + r.stderr)[-3000:])
        out = {}
        for p in pkgs:
            v = self.installed_version(p)
            if v is None:
                raise RefError(f"{p} is still not installed after apt-get install")
            out[p] = v
        return out

    def ensure_arch(self, deb_arch: str) -> None:
        native = run(["dpkg", "--print-architecture"]).stdout.strip()
        if deb_arch == native:
            return
        foreign = run(["dpkg", "--print-foreign-architectures"]).stdout.split()
        if deb_arch in foreign:
            return
        self._need_root(f"dpkg --add-architecture {deb_arch}")
        log(f"dpkg --add-architecture {deb_arch}")
        r = run(["dpkg", "--add-architecture", deb_arch])
        if r.returncode != 0:
            raise RefError(f"dpkg --add-architecture {deb_arch} failed:\n{r.stderr}")
        self.updated = False  # the new architecture's lists are needed

    def resolve(self, pkg: str) -> str:
        """The concrete package a meta-package depends on (linux-image-X.Y.Z-N-flavour)."""

        def lookup() -> str | None:
            r = run(["apt-cache", "depends", pkg])
            for line in r.stdout.splitlines():
                m = re.match(r"\s*Depends:\s*(linux-image-\S+?)(:\w+)?$", line)
                if m:
                    return m.group(1)
            return None

        name = lookup()
        if name is None:
            self.update()
            name = lookup()
        if name is None:
            raise RefError(f"apt-cache does not know {pkg}: is the Debian mirror reachable?")
        return name

    def download_unpack(self, pkg: str, deb_arch: str, dest: Path) -> str:
        """apt-get download PKG:ARCH and unpack it into dest; returns the package version."""
        return _download_unpack([], f"{pkg}:{deb_arch}", dest, self.update)


def _download_unpack(opts: list[str], spec: str, dest: Path, update: Any) -> str:
    """apt-get OPTS download SPEC and unpack it into dest; returns the package version."""
    with tempfile.TemporaryDirectory(prefix="pagewalk-deb-") as tmp:
        os.chmod(tmp, 0o777)  # lets apt's _apt user write there (no sandbox warning)
        r = run(["apt-get", *opts, "download", spec], cwd=tmp)
        if r.returncode != 0:
            update()
            r = run(["apt-get", *opts, "download", spec], cwd=tmp)
        if r.returncode != 0:
            raise RefError(f"apt-get download {spec} failed:\n{r.stderr[-2000:]}")
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise RefError(f"apt-get download {spec} left {len(debs)} .deb files")
        version = run(["dpkg-deb", "-f", str(debs[0]), "Version"]).stdout.strip()
        unpacked = Path(tmp) / "x"
        r = run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)])
        if r.returncode != 0:
            raise RefError(f"dpkg-deb -x {debs[0].name} failed:\n{r.stderr}")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(unpacked), str(dest))
    return version


class PrivateApt:
    """apt-get and apt-cache for one Debian suite and architecture, with their own sources.list,
    lists, cache and an empty dpkg status under `root`. The host's apt is left as it is: no
    `dpkg --add-architecture` (adding i386 to the host can break its next `apt-get update`
    while a security suite is mid-sync), no new source, no change to its package lists.
    Only the suite's main archive is used (not -security/-updates), for the same reason."""

    MIRROR = "http://deb.debian.org/debian"
    KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

    def __init__(self, root: Path, suite: str, deb_arch: str, allow_install: bool) -> None:
        self.root = root
        self.suite = suite
        self.deb_arch = deb_arch
        self.allow_install = allow_install
        self.updated = False
        self.opts = [
            f"-oDir::Etc::sourcelist={root / 'sources.list'}",
            f"-oDir::Etc::sourceparts={root / 'sources.list.d'}",
            f"-oDir::Etc::preferences={root / 'preferences'}",
            f"-oDir::Etc::preferencesparts={root / 'preferences.d'}",
            f"-oDir::State::Lists={root / 'lists'}",
            f"-oDir::State::status={root / 'status'}",
            f"-oDir::Cache={root / 'cache'}",
            f"-oAPT::Architecture={deb_arch}",
            f"-oAPT::Architectures::={deb_arch}",
            "-oAPT::Sandbox::User=root",  # the cache may be in root's 0700 home
            "-oAcquire::Languages=none",
        ]

    def update(self) -> None:
        if self.updated:
            return
        if not self.allow_install:
            raise RefError(f"apt-get update ({self.suite} {self.deb_arch}) needs the network")
        if shutil.which("apt-get") is None:
            raise RefError("apt-get is needed (Debian only)")
        if os.geteuid() != 0:
            raise RefError("apt-get download is needed: run this script as root")
        for d in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        (self.root / "sources.list").write_text(
            f"deb [arch={self.deb_arch} signed-by={self.KEYRING}] {self.MIRROR} {self.suite} main\n"
        )
        log(f"apt-get update (private: {self.suite} {self.deb_arch}, in {self.root})")
        r = run(["apt-get", *self.opts, "update"], env=dict(os.environ, LC_ALL="C"))
        if r.returncode != 0 or "\nE: " in "\n" + r.stderr:
            raise RefError(
                f"apt-get update for {self.suite} {self.deb_arch} failed:\n"
                + (r.stdout + r.stderr)[-2000:]
            )
        self.updated = True

    def resolve(self, pkg: str) -> str:
        """The concrete package a meta-package depends on (linux-image-X.Y.Z-N-flavour)."""
        self.update()  # the private lists may be old: always refresh them once per run
        r = run(["apt-cache", *self.opts, "depends", pkg])
        for line in r.stdout.splitlines():
            m = re.match(r"\s*Depends:\s*(linux-image-\S+?)(:\w+)?$", line)
            if m:
                return m.group(1)
        raise RefError(f"{pkg} is not in Debian {self.suite} for {self.deb_arch}")

    def download_unpack(self, pkg: str, dest: Path) -> str:
        return _download_unpack(self.opts, pkg, dest, self.update)


@dataclasses.dataclass
class GuestFiles:
    kernel_pkg: str
    kernel_version: str  # Debian package version
    kernel_release: str  # uname -r
    vmlinuz: Path
    config: Path
    fw_cfg_ko: Path | None
    busybox: Path
    busybox_version: str


def prepare_guest(apt: Apt, prof: Profile, cache: Path) -> GuestFiles:
    """Fetch (once) the kernel and busybox packages for a profile; keep only what is used."""
    store = cache / "packages" / prof.store_name
    stamp = store / "packages.json"
    if stamp.exists():
        d = json.loads(stamp.read_text())
        files = GuestFiles(
            kernel_pkg=d["kernel_pkg"],
            kernel_version=d["kernel_version"],
            kernel_release=d["kernel_release"],
            vmlinuz=store / d["vmlinuz"],
            config=store / d["config"],
            fw_cfg_ko=store / d["fw_cfg_ko"] if d["fw_cfg_ko"] else None,
            busybox=store / "busybox",
            busybox_version=d["busybox_version"],
        )
        if files.vmlinuz.exists() and files.busybox.exists():
            return files
    if not apt.allow_install:
        raise RefError(
            f"{prof.store_name} guest packages are not in {store} and --no-install was given"
        )
    store.mkdir(parents=True, exist_ok=True)
    extra: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pagewalk-unpack-") as tmp:
        kdir = Path(tmp) / "kernel"
        bdir = Path(tmp) / "busybox"
        if prof.suite is None:
            apt.ensure_arch(prof.deb_arch)
            kernel_pkg = apt.resolve(f"{prof.kernel_meta}:{prof.deb_arch}")
            log(f"downloading {kernel_pkg}:{prof.deb_arch} and busybox-static:{prof.deb_arch}")
            kver = apt.download_unpack(kernel_pkg, prof.deb_arch, kdir)
            bver = apt.download_unpack("busybox-static", prof.deb_arch, bdir)
        else:
            papt = PrivateApt(
                cache / "apt" / f"{prof.suite}-{prof.deb_arch}",
                prof.suite,
                prof.deb_arch,
                apt.allow_install,
            )
            kernel_pkg = papt.resolve(prof.kernel_meta)
            log(f"downloading {kernel_pkg} and busybox-static from {prof.suite} {prof.deb_arch}")
            kver = papt.download_unpack(kernel_pkg, kdir)
            bver = papt.download_unpack("busybox-static", bdir)
            extra = {"suite": prof.suite, "mirror": PrivateApt.MIRROR}
        # amd64/arm64/i386 ship boot/vmlinuz-*, riscv64 boot/vmlinux-* (a PE/EFI Image)
        vmlinuz = sorted(kdir.glob("boot/vmlinu[xz]-*"))
        config = sorted(kdir.glob("boot/config-*"))
        if not vmlinuz or not config:
            raise RefError(f"{kernel_pkg} has no /boot/vmlinu[xz]-* or /boot/config-*")
        release = vmlinuz[0].name.split("-", 1)[1]
        shutil.copy2(vmlinuz[0], store / vmlinuz[0].name)
        shutil.copy2(config[0], store / config[0].name)
        ko = [
            k
            for top in ("lib", "usr/lib")  # trixie has merged /usr
            for k in sorted(kdir.glob(f"{top}/modules/*/kernel/drivers/firmware/qemu_fw_cfg.ko*"))
        ]
        if ko and ko[0].name.endswith(".xz"):  # trixie compresses modules: unpack here
            (store / "qemu_fw_cfg.ko").write_bytes(lzma.decompress(ko[0].read_bytes()))
        elif ko and ko[0].name.endswith(".ko"):
            shutil.copy2(ko[0], store / "qemu_fw_cfg.ko")
        else:
            ko = []
        bb = next((p for p in (bdir / "bin/busybox", bdir / "usr/bin/busybox") if p.exists()), None)
        if bb is None:
            raise RefError("busybox-static has no /bin/busybox or /usr/bin/busybox")
        shutil.copy2(bb, store / "busybox")
    stamp.write_text(
        json.dumps(
            {
                "kernel_pkg": kernel_pkg,
                "kernel_version": kver,
                "kernel_release": release,
                "vmlinuz": vmlinuz[0].name,
                "config": config[0].name,
                "fw_cfg_ko": "qemu_fw_cfg.ko" if ko else None,
                "busybox_version": bver,
                **extra,
            },
            indent=1,
        )
    )
    return prepare_guest(apt, prof, cache)


# ---------------------------------------------------------------------------------------------
# initramfs (newc cpio written here, so no cpio binary is needed and the archive is stable)
# ---------------------------------------------------------------------------------------------


def init_script(extra_ksyms: str = "") -> str:
    ksyms = KSYMS + (f"|{extra_ksyms}" if extra_ksyms else "")
    return f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
if [ -f /qemu_fw_cfg.ko ] && insmod /qemu_fw_cfg.ko; then echo "PAGEWALK fw_cfg loaded"; fi
sh -c 'M={USER_MARKER}; while :; do i=0; while [ $i -lt 1000 ]; do i=$((i+1)); done; done' &
PID=$!
echo "PAGEWALK uname $(uname -r) $(uname -m)"
echo "PAGEWALK user-pid $PID"
sleep 1
sed "s/^/PAGEWALK maps /" /proc/$PID/maps
echo "PAGEWALK vmcoreinfo $(cat /sys/kernel/vmcoreinfo 2>/dev/null)"
grep -E ' ({ksyms})$' /proc/kallsyms | sed "s/^/PAGEWALK ksym /"
echo "{MARKER}"
exec sleep 100000000
"""


INIT_SCRIPT = init_script()
# Page-table symbols worth having from a riscv64 kernel (it has KALLSYMS_ALL)
EXTRA_KSYMS = {"riscv64": "trampoline_pg_dir|early_pg_dir|init_mm|kernel_map|phys_ram_base"}


def _newc_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    nb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = hdr + nb
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def build_initramfs(busybox: Path, fw_cfg_ko: Path | None, script: str = INIT_SCRIPT) -> bytes:
    entries: list[tuple[str, int, bytes]] = [
        ("bin", 0o040755, b""),
        ("dev", 0o040755, b""),
        ("proc", 0o040755, b""),
        ("sys", 0o040755, b""),
        ("bin/busybox", 0o100755, busybox.read_bytes()),
        ("init", 0o100755, script.encode()),
    ]
    if fw_cfg_ko is not None:
        entries.append(("qemu_fw_cfg.ko", 0o100644, fw_cfg_ko.read_bytes()))
    raw = b"".join(_newc_entry(n, m, d, i + 1) for i, (n, m, d) in enumerate(entries))
    raw += _newc_entry("TRAILER!!!", 0, b"", 0)
    raw += b"\0" * (-len(raw) % 512)
    return gzip.compress(raw, compresslevel=6, mtime=0)


# ---------------------------------------------------------------------------------------------
# QMP and the gdbstub
# ---------------------------------------------------------------------------------------------


def connect_unix(path: Path, deadline: float, proc: subprocess.Popen[bytes]) -> socket.socket:
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if proc.poll() is not None:
                raise RefError(f"QEMU exited (code {proc.returncode}) before {path.name}") from None
            if time.monotonic() > deadline:
                raise RefError(f"timed out connecting to {path}") from None
            time.sleep(0.05)


class QMP:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(300)
        self.buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise RefError(f"unexpected QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RefError("QMP connection closed (QEMU died?)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        msg: dict[str, Any] = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                raise RefError(f"QMP {cmd} failed: {r['error']}")
            return r.get("return")

    def hmp(self, line: str) -> str:
        out = self.execute("human-monitor-command", {"command-line": line})
        return str(out).replace("\r\n", "\n")


class GdbStub:
    """Just enough of the GDB remote protocol to read registers while the VM is stopped."""

    def __init__(self, sock: socket.socket, arch: str = "aarch64") -> None:
        self.sock = sock
        self.sock.settimeout(60)
        self.buf = b""
        self.transact(f"qSupported:xmlRegisters={'riscv' if arch == 'riscv64' else arch}")
        self.transact("?")
        self.feature: dict[str, str] = {}  # register name -> the XML annex that defines it
        self.regs = self._register_map()

    def _packet(self) -> str:
        while True:
            m = re.search(rb"\$([^#]*)#[0-9a-fA-F]{2}", self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                self.sock.sendall(b"+")
                return m.group(1).decode()
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RefError("gdbstub connection closed")
            self.buf += chunk

    def transact(self, payload: str, skip_stop_replies: bool = False) -> str:
        csum = sum(payload.encode()) & 0xFF
        self.sock.sendall(b"$" + payload.encode() + b"#%02x" % csum)
        while True:
            reply = self._packet()
            # A stop made through QMP is also announced to gdb as a 'T05...' packet.
            if skip_stop_replies and reply[:1] in ("T", "S"):
                continue
            return reply

    def _xfer(self, annex: str) -> str:
        out, off = "", 0
        while True:
            r = self.transact(f"qXfer:features:read:{annex}:{off:x},fff", True)
            if not r or r[0] not in "lm":
                raise RefError(f"gdbstub cannot read {annex}: {r}")
            out += r[1:]
            off += len(r) - 1
            if r[0] == "l":
                return out

    def _register_map(self) -> dict[str, int]:
        """Register numbers as GDB assigns them: a <reg> without regnum is one more than the
        register before it, across the features in target.xml order (riscv's `priv` needs it)."""
        target = self._xfer("target.xml")
        regs: dict[str, int] = {}
        nxt = 0
        for annex in re.findall(r'href="([^"]+)"', target):
            doc = self._xfer(annex)
            for tag in re.findall(r"<reg\b[^>]*>", doc):
                name = re.search(r'name="([^"]+)"', tag)
                num = re.search(r'regnum="(\d+)"', tag)
                n = int(num.group(1)) if num else nxt
                nxt = n + 1
                if name:
                    regs[name.group(1)] = n
                    self.feature[name.group(1)] = annex
        return regs

    def read(self, name: str) -> int | None:
        r = self.transact(f"p{self.regs[name]:x}", True)
        if not r or r.startswith("E") or "x" in r:
            return None
        return int.from_bytes(bytes.fromhex(r), "little")

    def system_registers(self) -> dict[str, int]:
        skip = re.compile(r"^(x\d+|[vqd]\d+|sp|pc|cpsr|fpsr|fpcr)$", re.IGNORECASE)
        out = {}
        for name in sorted(self.regs, key=self.regs.__getitem__):
            if skip.match(name):
                continue
            v = self.read(name)
            if v is not None:
                out[name] = v
        return out

    def riscv_csrs(self) -> dict[str, int]:
        """`priv` (0 U, 1 S, 3 M) and every CSR the gdbstub's riscv-csr.xml lists."""
        out = {}
        for name in sorted(self.regs, key=self.regs.__getitem__):
            if name == "priv" or "csr" in self.feature.get(name, ""):
                v = self.read(name)
                if v is not None:
                    out[name] = v
        return out


# ---------------------------------------------------------------------------------------------
# Parsing monitor output and the ELF core
# ---------------------------------------------------------------------------------------------


def parse_x86_registers(text: str) -> dict[str, int]:
    regs: dict[str, int] = {}
    for key in ("CR0", "CR2", "CR3", "CR4", "EFER", "RIP", "RSP", "EIP", "ESP"):
        m = re.search(rf"\b{key}=([0-9a-fA-F]+)", text)
        if m:
            regs[key] = int(m.group(1), 16)
    m = re.search(r"\bCPL=(\d)", text)
    if m:
        regs["CPL"] = int(m.group(1))
    for seg in ("CS", "SS", "FS", "GS", "TR", "GDT", "IDT"):
        m = re.search(rf"^{seg}\s*=\s*(?:([0-9a-f]{{4}}) )?([0-9a-f]+)", text, re.MULTILINE)
        if m:
            if m.group(1) is not None:
                regs[f"{seg}_SEL"] = int(m.group(1), 16)
            regs[f"{seg}_BASE"] = int(m.group(2), 16)
    return regs


def parse_arm_registers(text: str) -> dict[str, int]:
    regs: dict[str, int] = {}
    for r in re.finditer(r"\b(PC|SP|X\d\d)=([0-9a-f]{16})", text):
        regs[r.group(1)] = int(r.group(2), 16)
    m = re.search(r"PSTATE=([0-9a-f]+) \S+ EL(\d)", text)
    if m:
        regs["PSTATE"] = int(m.group(1), 16)
        regs["EL"] = int(m.group(2))
    return regs


@dataclasses.dataclass
class TlbEntry:
    va: int
    pa: int
    flags: str

    @property
    def large(self) -> bool:
        return self.flags[2] == "P"


def parse_info_tlb(text: str) -> list[TlbEntry]:
    out = []
    for m in re.finditer(r"^([0-9a-f]{16}): ([0-9a-f]{16}) ([-XGPDACTUW]{9})$", text, re.M):
        out.append(TlbEntry(int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    return out


def parse_riscv_registers(text: str) -> dict[str, int]:
    """`info registers` on riscv: ` pc  …`, CSR lines (` satp     a000…`), ` x2/sp    …`."""
    regs: dict[str, int] = {}
    for m in re.finditer(r"^ ([a-z][a-z0-9]*)\s+([0-9a-f]{16})\s*$", text, re.M):
        regs[m.group(1)] = int(m.group(2), 16)
    for m in re.finditer(r"\bx(\d+)/(\w+)\s+([0-9a-f]{16})", text):
        regs[m.group(2)] = int(m.group(3), 16)
    return regs


SATP_MODES = {0: ("Bare", 0), 8: ("Sv39", 39), 9: ("Sv48", 48), 10: ("Sv57", 57)}


def decode_satp(satp: int) -> dict[str, Any]:
    """RV64 satp: MODE bits 63:60, ASID bits 59:44, PPN bits 43:0."""
    mode = satp >> 60
    name, bits = SATP_MODES.get(mode, (f"reserved {mode}", 0))
    ppn = satp & ((1 << 44) - 1)
    return {
        "satp": satp,
        "mode": mode,
        "mode_name": name,
        "va_bits": bits,
        "asid": (satp >> 44) & 0xFFFF,
        "ppn": ppn,
        "root_pa": ppn << 12,
    }


@dataclasses.dataclass
class MemRange:
    """A line of riscv `info mem`: VAs va..va+size map to pa.. with attributes attr."""

    va: int
    pa: int
    size: int
    attr: str


def parse_riscv_info_mem(text: str) -> list[MemRange]:
    out = []
    for m in re.finditer(
        r"^([0-9a-f]{16}) ([0-9a-f]{16}) ([0-9a-f]{16}) ([-rwxugad]{7})$", text, re.M
    ):
        out.append(MemRange(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), m[4]))
    return out


EM_NAMES = {3: "EM_386", 62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV"}
PT_NAMES = {1: "PT_LOAD", 4: "PT_NOTE"}


@dataclasses.dataclass
class ElfCore:
    elf_class: int  # 1 ELF32 (QEMU writes one for a 32-bit x86 guest), 2 ELF64
    e_type: int
    e_machine: int
    phdrs: list[tuple[int, int, int, int, int, int]]  # type, offset, vaddr, paddr, filesz, memsz


def elf_core(path: Path) -> ElfCore:
    """ELF header and program headers of a little-endian ELF32 or ELF64 core."""
    with path.open("rb") as f:
        eh = f.read(64)
        if eh[:4] != b"\x7fELF" or eh[4] not in (1, 2) or eh[5] != 1:
            raise RefError(f"{path} is not a little-endian ELF file")
        e_type, e_machine = struct.unpack_from("<HH", eh, 16)
        if eh[4] == 2:
            phoff = struct.unpack_from("<Q", eh, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        else:
            phoff = struct.unpack_from("<I", eh, 28)[0]
            phentsize, phnum = struct.unpack_from("<HH", eh, 42)
        f.seek(phoff)
        raw = f.read(phentsize * phnum)
    phdrs = []
    for i in range(phnum):
        if eh[4] == 2:
            p_type, _fl, off, va, pa, filesz, memsz = struct.unpack_from(
                "<IIQQQQQ", raw, i * phentsize
            )
        else:
            p_type, off, va, pa, filesz, memsz = struct.unpack_from("<IIIIII", raw, i * phentsize)
        phdrs.append((p_type, off, va, pa, filesz, memsz))
    return ElfCore(eh[4], e_type, e_machine, phdrs)


def elf_notes(path: Path) -> list[tuple[str, int, bytes]]:
    """(name, type, desc) of every note in a little-endian ELF core's PT_NOTE segments."""
    out = []
    core = elf_core(path)
    with path.open("rb") as f:
        for p_type, p_offset, _va, _pa, p_filesz, _memsz in core.phdrs:
            if p_type != 4:  # PT_NOTE
                continue
            f.seek(p_offset)
            blob = f.read(p_filesz)
            out += parse_notes(blob)
    return out


def parse_notes(blob: bytes) -> list[tuple[str, int, bytes]]:
    out = []
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
        pos += 12
        name = blob[pos : pos + namesz].rstrip(b"\0").decode(errors="replace")
        pos += (namesz + 3) & ~3
        desc = blob[pos : pos + descsz]
        pos += (descsz + 3) & ~3
        if namesz == 0 and descsz == 0:
            break
        out.append((name, ntype, desc))
    return out


def summarize_core(path: Path, arch: str) -> dict[str, Any]:
    notes = elf_notes(path)
    summary: dict[str, Any] = {
        "notes": [{"name": n, "type": t, "descsz": len(d)} for n, t, d in notes],
    }
    if arch in NEW_ARCHES:
        core = elf_core(path)
        summary["elf"] = {
            "class": f"ELF{32 * core.elf_class}",
            "e_type": core.e_type,
            "e_machine": core.e_machine,
            "e_machine_name": EM_NAMES.get(core.e_machine, "?"),
            "program_headers": [
                {
                    "type": PT_NAMES.get(t, str(t)),
                    "offset": off,
                    "vaddr": va,
                    "paddr": pa,
                    "filesz": fsz,
                    "memsz": msz,
                }
                for t, off, va, pa, fsz, msz in core.phdrs
            ],
        }
    for name, ntype, desc in notes:
        if name == "QEMU" and ntype == 0 and arch in ("x86_64", "i386") and len(desc) >= 432:
            version, size = struct.unpack_from("<II", desc, 0)
            cr = struct.unpack_from("<5Q", desc, 392)
            summary["qemu_cpu_state"] = {
                "version": version,
                "size": size,
                "rip": struct.unpack_from("<Q", desc, 136)[0],
                "cr0": cr[0],
                "cr2": cr[2],
                "cr3": cr[3],
                "cr4": cr[4],
            }
        if name == "CORE" and ntype == 1:  # NT_PRSTATUS
            if arch == "x86_64":
                rip, cs = struct.unpack_from("<QQ", desc, 112 + 16 * 8)
                summary["prstatus"] = {"rip": rip, "cs": cs}
            elif arch == "i386":  # 32-bit elf_prstatus: pr_reg (17 u32) at 72, eip is #12
                eip, cs = struct.unpack_from("<II", desc, 72 + 12 * 4)
                esp = struct.unpack_from("<I", desc, 72 + 15 * 4)[0]
                summary["prstatus"] = {"eip": eip, "cs": cs & 0xFFFF, "esp": esp}
            elif arch == "riscv64":  # pr_reg at 112: pc, then x1..x31
                pc, ra, sp = struct.unpack_from("<QQQ", desc, 112)
                summary["prstatus"] = {"pc": pc, "ra": ra, "sp": sp}
            else:
                sp, pc, pstate = struct.unpack_from("<QQQ", desc, 112 + 31 * 8)
                summary["prstatus"] = {"sp": sp, "pc": pc, "pstate": pstate}
        if name == "VMCOREINFO":
            summary["vmcoreinfo"] = desc.decode(errors="replace")
    return summary


def vmcoreinfo_values(text: str) -> dict[str, int]:
    """SYMBOL(x)=hex, NUMBER(x)=dec, KERNELOFFSET=hex as integers."""
    vals: dict[str, int] = {}
    for line in text.splitlines():
        key, _, val = line.partition("=")
        with contextlib.suppress(ValueError):
            if key.startswith("SYMBOL(") or key == "KERNELOFFSET":
                vals[key] = int(val, 16)
            elif key.startswith(("NUMBER(", "SIZE(", "OFFSET(")):
                vals[key] = int(val, 0)
    return vals


# ---------------------------------------------------------------------------------------------
# Choosing addresses to ask gva2gpa about
# ---------------------------------------------------------------------------------------------


def _canonical(va: int, bits: int) -> bool:
    top = va >> (bits - 1)
    return top in (0, (1 << (65 - bits)) - 1)


def x86_candidates(
    tlb: list[TlbEntry],
    regs: dict[str, int],
    vmci: dict[str, int],
    la57: bool,
    layout: dict[str, int],
) -> list[tuple[int, str]]:
    bits = 57 if la57 else 48
    user_top = 1 << (bits - 1)
    # The direct map is the kernel-half delta VA-PA that maps the most bytes.
    deltas: dict[int, int] = {}
    for e in tlb:
        if e.va >= user_top and e.va < 0xFFFFFFFF80000000:
            size = 0x200000 if e.large else 0x1000
            deltas[e.va - e.pa] = deltas.get(e.va - e.pa, 0) + size
    direct = max(deltas, key=deltas.__getitem__) if deltas else None

    def label(e: TlbEntry) -> str:
        if e.va < user_top:
            return "user"
        if e.va >= 0xFFFFFFFF80000000:
            return "kernel-image" if e.va < 0xFFFFFFFFC0000000 else "modules-or-fixmap"
        if e.va >= 0xFFFFFE0000000000:
            return "cpu-entry-area"
        below = [(b, n) for n, b in layout.items() if b <= e.va]
        if below:
            return max(below)[1].replace("_base", "").replace("page_offset", "direct-map")
        if direct is not None and e.va - e.pa == direct:
            return "direct-map"
        return "vmalloc-or-vmemmap"

    # Runs of entries contiguous in VA and PA with the same flags and size.
    runs: list[list[TlbEntry]] = []
    for e in tlb:
        if runs:
            last = runs[-1][-1]
            step = 0x200000 if last.large else 0x1000
            if (
                e.va == last.va + step
                and e.pa == last.pa + step
                and e.flags == last.flags
                and e.large == last.large
            ):
                runs[-1].append(e)
                continue
        runs.append([e])

    by_label: dict[str, list[list[TlbEntry]]] = {}
    for r in runs:
        by_label.setdefault(label(r[0]), []).append(r)

    picks: list[tuple[int, str]] = []
    rng = random.Random(1234)
    for lab, lruns in sorted(by_label.items()):
        chosen = (
            lruns if len(lruns) <= 12 else [*lruns[:4], *rng.sample(lruns[4:-4], 4), *lruns[-4:]]
        )
        for r in chosen:
            for e in {id(x): x for x in (r[0], r[len(r) // 2], r[-1])}.values():
                picks.append((e.va, lab))
                picks.append((e.va + 0xABC, lab))
                if e.large:
                    picks.append((e.va + 0x1FF123, lab + " (inside large page)"))
            step = 0x200000 if r[-1].large else 0x1000
            picks.append((r[-1].va + step, lab + " (just past a run)"))
            picks.append((r[0].va - 0x1000, lab + " (just before a run)"))

    for key, lab in (
        ("RIP", "RIP"),
        ("RSP", "RSP"),
        ("GS_BASE", "GS base"),
        ("TR_BASE", "TR base"),
        ("GDT_BASE", "GDT base"),
        ("IDT_BASE", "IDT base"),
        ("CR2", "CR2"),
    ):
        if key in regs:
            picks.append((regs[key], lab))
    for key, val in sorted(vmci.items()):
        if key.startswith("SYMBOL("):
            picks.append((val, key if "kallsyms" in key else f"vmcoreinfo {key}"))
    direct = layout.get("page_offset_base", direct)
    if direct is not None:
        picks.append((direct, "direct map base (PA 0)"))
        picks.append((direct + 0x7FFF000, "direct map, last page of 128 MiB"))
        picks.append((direct + 0x10000000, "direct map, beyond RAM"))
    picks += [
        (0x0, "null page"),
        (0x1000, "low user page"),
        (user_top - 0x1000, "top of user half"),
        (user_top, "first non-canonical"),
        (0xDEAD000000000000, "non-canonical"),
        (0xFFFFFFFFFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: va < (1 << 64) and va >= 0)


def arm_candidates(
    regs: dict[str, int], sysregs: dict[str, int], vmci: dict[str, int], user_maps: list[int]
) -> list[tuple[int, str]]:
    picks: list[tuple[int, str]] = []
    for key, val in sorted(regs.items()):
        if key in ("PC", "SP") or (key.startswith("X") and (val >> 48) in (0, 0xFFFF) and val):
            picks.append((val, key))
            picks.append(((val & ~0xFFF) + 0xABC, key + " (same page)"))
    for key in ("VBAR", "VBAR_EL1", "SP_EL0", "SP_EL1", "ELR_EL1", "FAR_EL1", "TPIDR_EL1"):
        if sysregs.get(key):
            picks.append((sysregs[key], key))
    for key, val in sorted(vmci.items()):
        if key.startswith("SYMBOL("):
            picks.append((val, key if "kallsyms" in key else f"vmcoreinfo {key}"))
    phys_offset = vmci.get("NUMBER(PHYS_OFFSET)")
    va_bits = vmci.get("NUMBER(VA_BITS)", 48)
    if phys_offset is not None:
        page_offset = (-(1 << va_bits)) & ((1 << 64) - 1)
        for mib in range(0, 136, 4):  # RAM is 128 MiB at PA 0x40000000 on -machine virt
            pa = 0x40000000 + mib * 0x100000 + 0x123
            va = ((pa - phys_offset) | page_offset) & ((1 << 64) - 1)
            picks.append((va, f"linear map, PA {pa:#x}"))
    for va in user_maps:
        picks.append((va, "user mapping from /proc/PID/maps"))
        picks.append((va + 0x1ABC, "user mapping from /proc/PID/maps (+0x1abc)"))
    picks += [
        (0x0, "null page"),
        (0x1000, "low user page"),
        (0x0000FFFFFFFFF000, "top of 48-bit TTBR0 range"),
        (0x0001000000000000, "between TTBR0 and TTBR1 ranges"),
        (0x8000000000000000, "between TTBR0 and TTBR1 ranges"),
        (0xFFFF000000000000, "bottom of TTBR1 range"),
        (0xFFFFFFFFFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: 0 <= va < (1 << 64))


def _run_picks(runs: dict[str, list[tuple[int, int, int]]]) -> list[tuple[int, str]]:
    """VAs to ask about for runs (start, end, large-page size or 0) grouped by label: first,
    middle and last page (also at +0xABC), a point near the end of a large page, and the
    pages just past and just before the run; at most 12 runs per label (first 4, 4 at
    random, last 4)."""
    picks: list[tuple[int, str]] = []
    rng = random.Random(1234)
    for lab, lruns in sorted(runs.items()):
        chosen = (
            lruns if len(lruns) <= 12 else [*lruns[:4], *rng.sample(lruns[4:-4], 4), *lruns[-4:]]
        )
        for start, end, large in chosen:
            mid = start + ((end - start) // 2 & ~0xFFF)
            for va in dict.fromkeys((start, mid, end - 0x1000)):
                picks.append((va, lab))
                picks.append((va + 0xABC, lab))
            if large:
                picks.append((start + large - 0xEDD, lab + " (inside large page)"))
            picks.append((end, lab + " (just past a run)"))
            picks.append((start - 0x1000, lab + " (just before a run)"))
    return picks


def _symbol_picks(vmci: dict[str, int]) -> list[tuple[int, str]]:
    return [
        (val, key if "kallsyms" in key else f"vmcoreinfo {key}")
        for key, val in sorted(vmci.items())
        if key.startswith("SYMBOL(")
    ]


I386_PAGE_OFFSET = 0xC0000000  # CONFIG_VMSPLIT_3G in both Debian i386 kernels
I386_PAE_PA_MASK = (1 << 52) - 1


def i386_candidates(
    tlb: list[TlbEntry], regs: dict[str, int], vmci: dict[str, int], large: int
) -> list[tuple[int, str]]:
    """As x86_candidates, for a 32-bit guest (large pages are 4 MiB without PAE, 2 MiB with)."""

    def label(e: TlbEntry) -> str:
        if e.va < I386_PAGE_OFFSET:
            return "user"
        if e.va - e.pa == I386_PAGE_OFFSET:
            return "lowmem (direct map, kernel image)"
        if e.va >= 0xFF000000:
            return "fixmap-or-cpu-entry-area"
        return "vmalloc-or-pkmap"

    seq: list[list[TlbEntry]] = []  # entries contiguous in VA and PA with the same flags
    for e in tlb:
        if seq:
            last = seq[-1][-1]
            step = large if last.large else 0x1000
            if e.va == last.va + step and e.pa == last.pa + step and e.flags == last.flags:
                seq[-1].append(e)
                continue
        seq.append([e])
    runs: dict[str, list[tuple[int, int, int]]] = {}
    for r in seq:
        size = large if r[0].large else 0x1000
        runs.setdefault(label(r[0]), []).append(
            (r[0].va, r[-1].va + size, size if size > 0x1000 else 0)
        )
    picks = _run_picks(runs)
    for key, lab in (
        ("EIP", "EIP"),
        ("ESP", "ESP"),
        ("GS_BASE", "GS base"),
        ("FS_BASE", "FS base"),
        ("TR_BASE", "TR base"),
        ("GDT_BASE", "GDT base"),
        ("IDT_BASE", "IDT base"),
        ("CR2", "CR2"),
    ):
        if key in regs:
            picks.append((regs[key], lab))
    picks += _symbol_picks(vmci)
    picks += [
        (I386_PAGE_OFFSET, "direct map base (PA 0)"),
        (I386_PAGE_OFFSET + 0x7FFF000, "direct map, last page of 128 MiB"),
        (I386_PAGE_OFFSET + 0x8000000, "direct map, just beyond RAM"),
        (0x0, "null page"),
        (0x1000, "low user page"),
        (I386_PAGE_OFFSET - 0x1000, "top of user half"),
        (0xFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: 0 <= va < (1 << 32))


def riscv_regions(vmci: dict[str, int]) -> list[tuple[int, int, str]]:
    """Kernel VA regions from riscv VMCOREINFO numbers (read from guest RAM)."""
    n = {k[7:-1]: v for k, v in vmci.items() if k.startswith("NUMBER(")}
    out = []
    for lo, hi, lab in (
        ("VMEMMAP_START", "VMEMMAP_END", "vmemmap"),
        ("VMALLOC_START", "VMALLOC_END", "vmalloc"),
        ("MODULES_VADDR", "MODULES_END", "modules"),
    ):
        if lo in n and hi in n:
            out.append((n[lo], n[hi], lab))
    if "KERNEL_LINK_ADDR" in n:
        out.append((n["KERNEL_LINK_ADDR"], 1 << 64, "kernel-image"))
    return out


def riscv_candidates(
    ranges: list[MemRange],
    regs: dict[str, int],
    vmci: dict[str, int],
    va_bits: int,
    user_maps: list[int],
) -> list[tuple[int, str]]:
    half = 1 << (va_bits - 1)
    regions = riscv_regions(vmci)
    page_offset = vmci.get("NUMBER(PAGE_OFFSET)")
    ram_base = vmci.get("NUMBER(phys_ram_base)", 0x80000000)

    def label(r: MemRange) -> str:
        if r.va < half:
            return "user"
        if page_offset is not None and r.va - r.pa == page_offset - ram_base:
            return "linear-map"
        for lo, hi, lab in regions:
            if lo <= r.va < hi:
                return lab
        return "other-kernel (fixmap, PCI I/O)"

    runs: dict[str, list[tuple[int, int, int]]] = {}
    for r in ranges:
        big = 0x200000 if r.size >= 0x200000 and not (r.va | r.pa) & 0x1FFFFF else 0
        runs.setdefault(label(r), []).append((r.va, r.va + r.size, big))
    picks = _run_picks(runs)
    for key in ("pc", "sp", "gp", "tp", "ra", "stvec", "sepc", "sscratch", "stval", "mepc"):
        if regs.get(key):
            picks.append((regs[key], key))
    picks += _symbol_picks(vmci)
    if page_offset is not None:
        for mib in range(0, 136, 4):  # RAM is 128 MiB at phys_ram_base on -machine virt
            pa = ram_base + mib * 0x100000 + 0x123
            picks.append((page_offset + pa - ram_base, f"linear map, PA {pa:#x}"))
    for va in user_maps:
        picks.append((va, "user mapping from /proc/PID/maps"))
        picks.append((va + 0x1ABC, "user mapping from /proc/PID/maps (+0x1abc)"))
    picks += [
        (0x0, "null page"),
        (0x1000, "low user page"),
        (half - 0x1000, "top of user half"),
        (half, "first non-canonical"),
        (-half, "bottom of kernel half"),
        (1 << 47, "bit 47 (non-canonical below Sv57)"),
        (1 << 38, "bit 38 (non-canonical in Sv39)"),
        (0xDEAD000000000000, "non-canonical"),
        (0xFFFFFFFFFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: 0 <= va < (1 << 64))


def mem_lookup(ranges: list[MemRange], va: int, u_mode: bool = False) -> int | None:
    """What riscv `info mem` implies gva2gpa answers for va. In U-mode QEMU 7.2's debug
    translation refuses pages without the U bit ("Unmapped"); in S-mode it translates U
    pages even with sstatus.SUM clear."""
    for r in ranges:
        if r.va <= va < r.va + r.size:
            if u_mode and "u" not in r.attr:
                return None
            return r.pa + (va - r.va)
    return None


PAGE_CHECK_TARGET = 4000  # pages per stop; gva2gpa costs about 1 ms each through QMP


def check_pages(
    qmp: QMP, runs: list[tuple[int, int, int | None]], every_page: bool
) -> dict[str, Any]:
    """gva2gpa against what QEMU's own listing (`info tlb` / riscv `info mem`) implies, for
    runs (va, pages, expected pa of the first page or None): every page with every_page,
    else the first and last page of each run and every stride-th page (about
    PAGE_CHECK_TARGET in all). What disagrees is listed (the first 20)."""
    t0 = time.monotonic()
    total = sum(n for _, n, _ in runs)
    stride = 1 if every_page else max(1, -(-total // PAGE_CHECK_TARGET))
    checked = 0
    bad = []
    for va, n, pa in runs:
        for i in sorted({*range(0, n, stride), n - 1}):
            checked += 1
            exp = None if pa is None else pa + i * 0x1000
            got = gva2gpa(qmp, va + i * 0x1000)
            if got != exp:
                bad.append({"va": va + i * 0x1000, "expected": exp, "gva2gpa": got})
    return {
        "pages_listed": total,
        "stride": stride,
        "pages_checked": checked,
        "mismatches": len(bad),
        "first_mismatches": bad[:20],
        "seconds": round(time.monotonic() - t0, 1),
    }


def _dedupe(picks: list[tuple[int, str]], ok: Any) -> list[tuple[int, str]]:
    seen: set[int] = set()
    out = []
    for va, lab in picks:
        va &= (1 << 64) - 1
        if va in seen or not ok(va):
            continue
        seen.add(va)
        out.append((va, lab))
    return out


def tlb_lookup(tlb: list[TlbEntry], va: int, large: int = 0x200000) -> int | None:
    """What `info tlb` implies for va (4K entries exactly; large entries as 2 MiB, or 4 MiB
    for 32-bit paging without PAE)."""
    for e in tlb:
        size = large if e.large else 0x1000
        if e.va <= va < e.va + size:
            return e.pa + (va - e.va)
    return None


def gva2gpa(qmp: QMP, va: int) -> int | None:
    out = qmp.hmp(f"gva2gpa {va:#x}").strip()
    m = re.match(r"gpa: (0x[0-9a-f]+|0)$", out)  # printf("%#x", 0) prints a bare "0"
    if m:
        return int(m.group(1), 16)
    if "Unmapped" in out:
        return None
    raise RefError(f"unexpected gva2gpa answer for {va:#x}: {out!r}")


# ---------------------------------------------------------------------------------------------
# One boot
# ---------------------------------------------------------------------------------------------


class Boot:
    def __init__(self, prof: Profile, files: GuestFiles, workdir: Path, timeout: float) -> None:
        self.prof = prof
        self.files = files
        self.dir = workdir
        self.deadline = time.monotonic() + timeout
        self.sockdir = Path(tempfile.mkdtemp(prefix="pw-q-"))  # short path: sun_path limit
        self.console = workdir / "console.log"
        self.initrd = workdir / "initramfs.cpio.gz"
        self.initrd.write_bytes(
            build_initramfs(
                files.busybox,
                files.fw_cfg_ko if prof.vmcoreinfo_device else None,
                init_script(EXTRA_KSYMS.get(prof.arch, "")),
            )
        )
        self.cmd = [
            prof.qemu_binary,
            *prof.machine,
            "-accel",
            "tcg",
            "-cpu",
            prof.cpu,
            "-m",
            "128M",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-kernel",
            str(files.vmlinuz),
            "-initrd",
            str(self.initrd),
            "-append",
            prof.append,
            *(["-device", "vmcoreinfo"] if prof.vmcoreinfo_device else []),
            "-serial",
            f"file:{self.console}",
            "-monitor",
            "none",
            "-qmp",
            f"unix:{self.sockdir / 'qmp'},server=on,wait=off",
        ]
        if prof.arch in ("aarch64", "riscv64"):  # system registers / riscv privilege level
            self.cmd += ["-gdb", f"unix:{self.sockdir / 'gdb'},server=on,wait=off"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.gdb: GdbStub | None = None
        self.vmci_ram: dict[str, int] = {}  # NEW_ARCHES: VMCOREINFO read from guest RAM
        self.every_page = False  # NEW_ARCHES: gva2gpa for every listed page, not a sample

    def left(self) -> float:
        return self.deadline - time.monotonic()

    @contextlib.contextmanager
    def running(self) -> Iterator[QMP]:
        qlog = (self.dir / "qemu.log").open("wb")
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT
        )
        try:
            qmp = QMP(connect_unix(self.sockdir / "qmp", self.deadline, self.proc))
            yield qmp
            with contextlib.suppress(Exception):
                qmp.execute("quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            qlog.close()
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def wait_marker(self) -> str:
        assert self.proc is not None
        while True:
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            if MARKER in text:
                return text
            if self.proc.poll() is not None:
                raise RefError(
                    f"QEMU exited (code {self.proc.returncode}) before the marker; "
                    f"see {self.console} and {self.dir / 'qemu.log'}"
                )
            if re.search(r"Kernel panic", text):
                raise RefError(f"guest kernel panicked; see {self.console}")
            if self.left() < 0:
                raise RefError(f"timed out waiting for {MARKER!r} on {self.console}")
            time.sleep(0.2)

    def catch(
        self, qmp: QMP, want_user: bool, probe: int | None, tries: int = 2000
    ) -> tuple[str, int]:
        """Stop the VM when the CPU is in user (or kernel) mode; the VM is left stopped.

        A kernel-mode stop also needs the VA `probe` (a kernel data symbol) to be mapped: with
        KPTI the CPU runs the first instructions of every kernel entry on the user tables.
        """
        for n in range(1, tries + 1):
            qmp.execute("stop")
            text = qmp.hmp("info registers")
            if self.prof.arch in ("x86_64", "i386"):
                level = parse_x86_registers(text).get("CPL", -1)
                user = level == 3
                kernel = not user
            elif self.prof.arch == "riscv64":
                # `info registers` has no privilege level; the gdbstub's virtual `priv` does.
                assert self.gdb is not None
                priv = self.gdb.read("priv")
                level = -1 if priv is None else priv
                user = level == 0
                kernel = level == 1  # S-mode, not OpenSBI's M-mode (no translation there)
            else:
                level = parse_arm_registers(text).get("EL", -1)
                user = level == 0
                kernel = not user
            if (user if want_user else kernel) and (
                user or probe is None or gva2gpa(qmp, probe) is not None
            ):
                return text, n
            qmp.execute("cont")
            if self.left() < 0:
                break
            time.sleep(random.uniform(0.002, 0.05))
        raise RefError(f"could not catch the CPU in {'user' if want_user else 'kernel'} mode")


def read_layout(qmp: QMP, ksyms: dict[str, int]) -> dict[str, int]:
    """Values of the x86 KASLR region bases, read through the current (kernel) tables."""
    out = {}
    for name in LAYOUT_VARS:
        if name in ksyms:
            m = re.search(r": (0x[0-9a-f]+)", qmp.hmp(f"x /1gx {ksyms[name]:#x}"))
            if m:
                out[name] = int(m.group(1), 16)
    return out


def capture(
    boot: Boot,
    qmp: QMP,
    regs_text: str,
    out: Path,
    mode: str,
    user_maps: list[tuple[int, int, str]],
    ksyms: dict[str, int],
    layout: dict[str, int],
) -> dict[str, Any]:
    """Record everything about the current stop into out/ (the VM must be stopped)."""
    out.mkdir(parents=True, exist_ok=True)
    prof = boot.prof
    (out / "registers.txt").write_text(regs_text)
    t0 = time.monotonic()
    core = out / "vmcore.elf"
    qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{core}"})
    t_dump = time.monotonic() - t0
    core.chmod(0o644)  # QEMU creates it 0400
    core_info = summarize_core(core, prof.arch)
    vmci = vmcoreinfo_values(core_info.get("vmcoreinfo", ""))
    info: dict[str, Any] = {"mode": mode, "dump_seconds": round(t_dump, 2)}
    large = 0x200000
    ranges: list[MemRange] = []
    if prof.arch in NEW_ARCHES:
        info["elf"] = core_info["elf"]
        vmci = {**boot.vmci_ram, **vmci}
    if prof.arch == "i386":
        regs = parse_x86_registers(regs_text)
        pae = bool(regs["CR4"] & (1 << 5))
        large = 0x200000 if pae else 0x400000
        (out / "info_mem.txt").write_text(qmp.hmp("info mem"))
        tlb_text = qmp.hmp("info tlb")
        (out / "info_tlb.txt").write_text(tlb_text)
        # With PAE, QEMU's `info tlb` prints `pte & ~0xfff` (2M: `& ~0xfffff`), so the PA
        # column keeps bit 63 (XD) and the other high bits; the PA is bits 51:12.
        raw_tlb = parse_info_tlb(tlb_text)
        tlb = [TlbEntry(e.va, e.pa & I386_PAE_PA_MASK, e.flags) for e in raw_tlb]
        cands = i386_candidates(tlb, regs, {**vmci, **_ksym_keys(ksyms)}, large)
        ident = {"cr3": regs["CR3"]}
        info.update(
            cr0=regs["CR0"],
            cr3=regs["CR3"],
            cr4=regs["CR4"],
            efer=regs.get("EFER"),
            cpl=regs["CPL"],
            cs=regs.get("CS_SEL"),
            pae=pae,
            pse=bool(regs["CR4"] & (1 << 4)),
            cr3_page_aligned=regs["CR3"] & 0xFFF == 0,
            info_tlb_entries=len(tlb),
            info_tlb_pa_column_with_bit63=sum(e.pa >> 63 for e in raw_tlb),
        )
        if pae:
            info["pdptes"] = pae_pdptes(qmp, core, regs["CR3"])
        qs = core_info.get("qemu_cpu_state", {})
        info["elf_note_cr3_matches"] = qs.get("cr3") == regs["CR3"]
        info["elf_note_eip_matches"] = core_info.get("prstatus", {}).get("eip") == regs.get("EIP")
    elif prof.arch == "riscv64":
        regs = parse_riscv_registers(regs_text)
        assert boot.gdb is not None
        csrs = boot.gdb.riscv_csrs()
        (out / "sysregs.json").write_text(
            json.dumps({k: f"{v:#018x}" for k, v in csrs.items()}, indent=1) + "\n"
        )
        satp = decode_satp(regs["satp"])
        mem_text = qmp.hmp("info mem")
        (out / "info_mem.txt").write_text(mem_text)
        ranges = parse_riscv_info_mem(mem_text)
        tlb = []
        cands = riscv_candidates(
            ranges,
            {**regs, **csrs},
            {**vmci, **_ksym_keys(ksyms)},
            satp["va_bits"],
            [start for start, _, _ in user_maps] if mode == "user" else [],
        )
        ident = {"satp": regs["satp"]}
        info.update(
            priv=csrs.get("priv"),
            pc=regs.get("pc"),
            satp=regs["satp"],
            satp_decoded=satp,
            satp_gdb_matches=csrs.get("satp") == regs["satp"],
            sstatus=csrs.get("sstatus"),
            info_mem_lines=len(ranges),
            info_mem_bytes=sum(r.size for r in ranges),
        )
        pr = core_info.get("prstatus", {})
        info["elf_note_pc_matches"] = pr.get("pc") == regs.get("pc")
    elif prof.arch == "x86_64":
        regs = parse_x86_registers(regs_text)
        la57 = bool(regs["CR4"] & (1 << 12))
        (out / "info_mem.txt").write_text(qmp.hmp("info mem"))
        tlb_text = qmp.hmp("info tlb")
        (out / "info_tlb.txt").write_text(tlb_text)
        tlb = parse_info_tlb(tlb_text)
        cands = x86_candidates(tlb, regs, {**vmci, **_ksym_keys(ksyms)}, la57, layout)
        ident = {"cr3": regs["CR3"]}
        info.update(
            cr0=regs["CR0"],
            cr3=regs["CR3"],
            cr4=regs["CR4"],
            efer=regs.get("EFER"),
            cpl=regs["CPL"],
            cs=regs.get("CS_SEL"),
            la57=la57,
            info_tlb_entries=len(tlb),
        )
        qs = core_info.get("qemu_cpu_state", {})
        info["elf_note_cr3_matches"] = qs.get("cr3") == regs["CR3"]
    else:
        regs = parse_arm_registers(regs_text)
        assert boot.gdb is not None
        sysregs = boot.gdb.system_registers()
        (out / "sysregs.json").write_text(
            json.dumps({k: f"{v:#018x}" for k, v in sysregs.items()}, indent=1) + "\n"
        )
        cands = arm_candidates(
            regs,
            sysregs,
            {**vmci, **_ksym_keys(ksyms)},
            [start for start, _, _ in user_maps] if mode == "user" else [],
        )
        ident = {k.lower(): sysregs[k] for k in ("TTBR0_EL1", "TTBR1_EL1") if k in sysregs}
        info.update(
            el=regs.get("EL"),
            pc=regs.get("PC"),
            ttbr0_el1=sysregs.get("TTBR0_EL1"),
            ttbr1_el1=sysregs.get("TTBR1_EL1"),
            tcr_el1=sysregs.get("TCR_EL1"),
            mair_el1=sysregs.get("MAIR_EL1"),
            sctlr_el1=sysregs.get("SCTLR"),
        )
        pr = core_info.get("prstatus", {})
        info["elf_note_pc_matches"] = pr.get("pc") == regs.get("PC")
        tlb = []
    answers = []
    mismatches = 0
    for va, lab in cands:
        pa = gva2gpa(qmp, va)
        answers.append({**ident, "va": va, "pa": pa, "label": lab})
        if tlb:
            exp = tlb_lookup(tlb, va, large)
            if exp != pa and not (exp is None and "inside large page" in lab):
                mismatches += 1
        elif ranges and mem_lookup(ranges, va, mode == "user") != pa:
            mismatches += 1
    if prof.arch == "riscv64":
        info["gva2gpa_vs_info_mem_mismatches"] = mismatches
    if prof.arch in NEW_ARCHES:
        # The pages QEMU's own listing says are mapped, through QEMU's real MMU code.
        if prof.arch == "i386":
            runs: list[tuple[int, int, int | None]] = [
                (e.va, (large if e.large else 0x1000) >> 12, e.pa) for e in tlb
            ]
        else:
            runs = [
                (r.va, r.size >> 12, None if mode == "user" and "u" not in r.attr else r.pa)
                for r in ranges
            ]
        info["gva2gpa_page_check"] = check_pages(qmp, runs, boot.every_page)
    if mode == "user":
        found = find_user_marker(qmp, core, user_maps)
        info["user_marker_pages"] = [{"va": va, "pa": pa} for va, pa in found]
        seen = {a["va"] for a in answers}
        for va, pa in found:
            if va not in seen:
                answers.append({**ident, "va": va, "pa": pa, "label": "page holding USER_MARKER"})
    (out / "gva2gpa.json").write_text(json.dumps(answers, indent=1) + "\n")
    info["gva2gpa_count"] = len(answers)
    info["gva2gpa_mapped"] = sum(a["pa"] is not None for a in answers)
    if tlb:
        info["gva2gpa_vs_info_tlb_mismatches"] = mismatches
    info["core"] = {
        "file": "vmcore.elf",
        "bytes": core.stat().st_size,
        "sha256": sha256(core),
        "notes": core_info["notes"],
    }
    if "vmcoreinfo" in core_info:
        (out / "vmcoreinfo.txt").write_text(core_info["vmcoreinfo"])
    return info


PAE_PDPTE_RESERVED = 0x1E6  # bits 2:1 and 8:5 (SDM "Format of a PAE PDPTE"); 5 is A elsewhere


def pae_pdptes(qmp: QMP, core: Path, cr3: int) -> list[dict[str, Any]]:
    """The 4 PDPTEs at CR3 (bits 31:5), as QEMU's `xp` and the core's bytes show them."""
    base = cr3 & 0xFFFFFFE0
    xp = [int(v, 16) for v in re.findall(r"0x([0-9a-f]{16})", qmp.hmp(f"xp /4gx {base:#x}"))]
    raw = read_phys(core, base, 32)
    out = []
    for i in range(4):
        v = struct.unpack_from("<Q", raw, 8 * i)[0] if raw is not None else None
        out.append(
            {
                "index": i,
                "pa": base + 8 * i,
                "core": v,
                "xp": xp[i] if i < len(xp) else None,
                "present": None if v is None else bool(v & 1),
                "accessed_bit5": None if v is None else bool(v & 0x20),
                "reserved_low_bits": None if v is None else v & PAE_PDPTE_RESERVED,
                "bits_above_35": None if v is None else v >> 36,
                "table_pa": None if v is None else v & 0xFFFFFFFFF000,
            }
        )
    return out


def read_vmcoreinfo_ram(qmp: QMP, console: str, tmpdir: Path) -> str | None:
    """The guest's VMCOREINFO note, read from guest RAM with QEMU's `pmemsave` at the physical
    address /sys/kernel/vmcoreinfo gives ("PA SIZE", both hex). It is there whether or not the
    machine has -device vmcoreinfo (QEMU 7.2's riscv virt machine cannot have it)."""
    m = re.search(r"PAGEWALK vmcoreinfo (?:0x)?([0-9a-f]+) ([0-9a-f]+)", console)
    if not m:
        return None
    pa, size = int(m.group(1), 16), int(m.group(2), 16)
    dest = tmpdir / "vmcoreinfo.bin"
    qmp.execute("pmemsave", {"val": pa, "size": size, "filename": str(dest)})
    if not dest.exists():
        return None
    for name, _t, desc in parse_notes(dest.read_bytes()):
        if name == "VMCOREINFO":
            return desc.rstrip(b"\0").decode(errors="replace")
    return None


def read_phys(core: Path, pa: int, size: int) -> bytes | None:
    """Bytes at a guest-physical address, from the PT_LOAD segments of a QEMU ELF core."""
    for p_type, off, _va, p_pa, filesz, _memsz in elf_core(core).phdrs:
        if p_type == 1 and p_pa <= pa and pa + size <= p_pa + filesz:
            with core.open("rb") as f:
                f.seek(off + pa - p_pa)
                return f.read(size)
    return None


def find_user_marker(
    qmp: QMP, core: Path, user_maps: list[tuple[int, int, str]]
) -> list[tuple[int, int]]:
    """(va, pa) of the pages in the user process's writable mappings that hold USER_MARKER.

    The VA comes from /proc/PID/maps, the PA from gva2gpa, the bytes from the core: a test
    can walk to the same PA and check that the marker really is there.
    """
    found = []
    for start, end, perms in user_maps:
        if "w" not in perms or end - start > 0x100000:
            continue
        for va in range(start, end, 0x1000):
            pa = gva2gpa(qmp, va)
            page = read_phys(core, pa, 0x1000) if pa is not None else None
            if pa is not None and page is not None and USER_MARKER.encode() in page:
                found.append((va, pa))
    return found


def _ksym_keys(ksyms: dict[str, int]) -> dict[str, int]:
    return {f"SYMBOL({k}) from kallsyms": v for k, v in ksyms.items()}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def first_line(cmd: list[str]) -> str:
    r = run(cmd)
    return (r.stdout or r.stderr).splitlines()[0] if (r.stdout or r.stderr) else ""


def make_profile(
    prof: Profile, cache: Path, apt: Apt, timeout: float, every_page: bool = False
) -> dict[str, Any]:
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = apt.ensure_installed([prof.qemu_package])
    if shutil.which(prof.qemu_binary) is None:
        raise RefError(f"{prof.qemu_binary} not found after installing {prof.qemu_package}")
    files = prepare_guest(apt, prof, cache)
    t_install = time.monotonic() - t_start

    final = cache / prof.name
    work = cache / f"{prof.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    boot = Boot(prof, files, work, timeout)
    boot.every_page = every_page
    log(f"{prof.name}: booting {files.kernel_pkg} ({prof.note})")
    log("  " + " ".join(boot.cmd))
    meta: dict[str, Any] = {}
    with boot.running() as qmp:
        t0 = time.monotonic()
        console = boot.wait_marker()
        t_boot = time.monotonic() - t0
        log(f"{prof.name}: marker after {t_boot:.1f} s; letting the user loop run")
        time.sleep(3)
        maps = re.findall(r"PAGEWALK maps (.*)", console)
        (work / "proc_maps.txt").write_text("".join(m.rstrip("\r") + "\n" for m in maps))
        user_maps = [
            (int(m.group(1), 16), int(m.group(2), 16), m.group(3))
            for m in (re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", x) for x in maps)
            if m
        ]
        if prof.arch in ("aarch64", "riscv64"):
            qmp.execute("stop")
            assert boot.proc is not None
            boot.gdb = GdbStub(
                connect_unix(boot.sockdir / "gdb", boot.deadline, boot.proc), prof.arch
            )
            qmp.execute("cont")
        vmci_ram_text = None
        if prof.arch in NEW_ARCHES:
            vmci_ram_text = read_vmcoreinfo_ram(qmp, console, boot.sockdir)
            if vmci_ram_text is not None:
                (work / "vmcoreinfo_ram.txt").write_text(vmci_ram_text)
                boot.vmci_ram = vmcoreinfo_values(vmci_ram_text)
        ksyms = {
            m.group(3): int(m.group(1), 16)
            for m in re.finditer(r"PAGEWALK ksym ([0-9a-f]+) (\w) (\w+)", console)
        }
        # A kernel symbol that the KPTI user tables do not map (arm64 has no KALLSYMS_ALL, so
        # only text symbols are listed there; its trampoline tables do not map _stext).
        probe = next((ksyms[k] for k in PROBE_SYMS if ksyms.get(k)), None)
        if prof.arch in NEW_ARCHES:
            # i386 has no KALLSYMS_ALL either, and its PTI user tables may map text: take a
            # data symbol from VMCOREINFO first.
            probe = next(
                (
                    v
                    for v in (
                        *(ksyms.get(k) for k in PROBE_SYMS[:4]),
                        boot.vmci_ram.get("SYMBOL(swapper_pg_dir)"),
                        ksyms.get("_stext"),
                    )
                    if v
                ),
                None,
            )
        t1 = time.monotonic()
        k_text, k_tries = boot.catch(qmp, want_user=False, probe=probe)
        layout = read_layout(qmp, ksyms) if prof.arch == "x86_64" else {}
        kernel = capture(boot, qmp, k_text, work, "kernel", user_maps, ksyms, layout)
        kernel["stops_needed"] = k_tries
        log(f"{prof.name}: kernel-mode stop after {k_tries} tries")
        qmp.execute("cont")
        time.sleep(0.5)
        user: dict[str, Any] | None
        try:
            u_text, u_tries = boot.catch(qmp, want_user=True, probe=None)
            user = capture(boot, qmp, u_text, work / "user", "user", user_maps, ksyms, layout)
            user["stops_needed"] = u_tries
            log(f"{prof.name}: user-mode stop after {u_tries} tries")
        except RefError as e:
            user = None
            log(f"{prof.name}: no user-mode stop: {e}")
        t_capture = time.monotonic() - t1
        uname = re.search(r"PAGEWALK uname (\S+) (\S+)", console)
        user_pid = re.search(r"PAGEWALK user-pid (\d+)", console)
        meta = {
            "profile": prof.name,
            "arch": prof.arch,
            "choices": prof.note,
            "kernel_package": files.kernel_pkg,
            "kernel_package_version": files.kernel_version,
            "kernel_release": uname.group(1) if uname else files.kernel_release,
            "busybox_static_version": files.busybox_version,
            "qemu_package": prof.qemu_package,
            "qemu_package_version": host[prof.qemu_package],
            "qemu_version": first_line([prof.qemu_binary, "--version"]),
            "qemu_command": boot.cmd,
            "kernel_append": prof.append,
            "cpu": prof.cpu,
            "memory_mib": 128,
            "user_process_pid": int(user_pid.group(1)) if user_pid else None,
            "user_marker": USER_MARKER,
            "kallsyms": {k: f"{v:#018x}" for k, v in sorted(ksyms.items())},
            "kernel_layout": {k: f"{v:#018x}" for k, v in layout.items()},
            "fw_cfg_vmcoreinfo": "PAGEWALK fw_cfg loaded" in console,
            "kernel": kernel,
            "user": user,
            "user_cr3_caught": user is not None,
            "started_utc": started,
            "seconds": {
                "install_and_fetch": round(t_install, 1),
                "boot_to_marker": round(t_boot, 1),
                "captures": round(t_capture, 1),
            },
        }
        if prof.arch in ("x86_64", "i386") and user is not None:
            meta["user_cr3_equals_kernel_cr3"] = user["cr3"] == kernel["cr3"]
            meta["user_cr3_is_kernel_cr3_with_bit12"] = user["cr3"] == kernel["cr3"] | 0x1000
        if prof.arch in NEW_ARCHES:
            meta["vmcoreinfo_in_core"] = any(
                n["name"] == "VMCOREINFO" for n in kernel["core"]["notes"]
            )
            meta["vmcoreinfo_in_ram"] = vmci_ram_text is not None
            meta["debian_suite"] = prof.suite
            m = re.search(r"PAGEWALK vmcoreinfo (?:0x)?([0-9a-f]+) ([0-9a-f]+)", console)
            if m:
                meta["vmcoreinfo_note_pa"] = int(m.group(1), 16)
                meta["vmcoreinfo_note_size"] = int(m.group(2), 16)
            meta["vmcoreinfo_ram_values"] = {
                k: f"{v:#x}"
                for k, v in boot.vmci_ram.items()
                if k.startswith(("SYMBOL(", "NUMBER(", "KERNELOFFSET"))
            }
            fw = re.search(r"OpenSBI v[\d.]+", console)
            if fw:
                meta["firmware"] = fw.group(0)
        if prof.arch == "riscv64" and user is not None:
            meta["user_satp_equals_kernel_satp"] = user["satp"] == kernel["satp"]
    if prof.arch == "aarch64" and meta["user"] is not None:
        k1, u1 = meta["kernel"]["ttbr1_el1"], meta["user"]["ttbr1_el1"]
        mask = (1 << 48) - 2  # BADDR, CnP bit 0 left out
        meta["ttbr1_kernel_minus_user_baddr"] = (k1 & mask) - (u1 & mask)
        meta["ttbr1_asid_kernel_user"] = [k1 >> 48, u1 >> 48]
    meta["seconds"]["total"] = round(time.monotonic() - t_start, 1)
    # Paths as they are after the rename below, so the command can be re-run by hand.
    meta["qemu_command"] = [a.replace(str(work), str(final)) for a in meta["qemu_command"]]
    (work / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    return meta


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
