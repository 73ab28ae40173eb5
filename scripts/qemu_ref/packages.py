"""The guest's Debian packages: the exact kernel and a static busybox, downloaded and
unpacked (never installed), through the host's apt or a private apt configuration.

One idea: everything the guest runs comes from Debian's archive and is cached under
``<cache>/packages/``; the host's apt is changed only by ``apt-get install`` of QEMU itself
(and ``dpkg --add-architecture arm64``). Apt and dpkg only: no manual section applies.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .common import RefError, log, run
from .profiles import Profile


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
