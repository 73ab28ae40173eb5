"""The nine boot profiles: which Debian kernel, QEMU binary, CPU and kernel command line
make each paging mode.

One idea: a profile chooses the paging mode through the machine and the kernel's own
parameters (``no5lvl``, ``no4lvl``, ``pti=``), never through pagewalk. The modes are those of
Intel SDM vol. 3A ch. 4 (4.3 32-bit, 4.4 PAE, 4.5 4-level and 5-level paging), Arm ARM D8
(VMSAv8-64, 4K granule, 48-bit VA) and the RISC-V privileged spec (Sv39, Sv48, Sv57).
"""

from __future__ import annotations

import dataclasses


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
