"""Boot real Debian kernels under QEMU TCG and record what QEMU's own MMU says about them.

One idea: the page-table reference for pagewalk's tests comes from a real kernel's real tables,
read by QEMU (``info registers``, ``info mem``, ``info tlb``, ``gva2gpa``, the gdbstub's system
registers) at the instant an ELF core of the guest is written, never from pagewalk's code. The
paging modes are those of Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.

``scripts/qemu_reference.py`` is the command; this package is its body, by function:

* ``cli``: argument parsing and the loop over profiles (``main``);
* ``profiles``: the nine profiles (x86_64, x86_64-la57, aarch64, riscv64-sv57/-sv48/-sv39,
  i386, i386-pae, i386-pae-pti);
* ``packages``: the Debian kernel and busybox, through the host's or a private apt;
* ``guest``: the initramfs and what its init script prints;
* ``make``: one profile from packages to ``meta.json``;
* ``boot``: the QEMU command line, the running VM and its user/kernel stops;
* ``monitor``: QMP, the human monitor and the gdbstub;
* ``capture``: what is recorded at a stop; ``candidates``: the VAs asked about;
* ``parse``: the monitor's text; ``elfcore``: QEMU's ELF core; ``common``: errors and logs.

See docs/qemu-reference.md.
"""
