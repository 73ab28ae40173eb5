"""Live machines: pagewalk's inspections on a running QEMU, through its gdbstub or QMP.

One idea: a running machine is one more source of physical memory and registers for the same
:class:`~pagewalk.machine.Machine` (``pagewalk.open(gdb="HOST:PORT")``, ``--gdb``/``--qmp``).
:mod:`~pagewalk.live.rsp` frames the GDB remote protocol (GDB manual, "Remote Protocol"),
:mod:`~pagewalk.live.gdb` and :mod:`~pagewalk.live.qmp` are the clients,
:mod:`~pagewalk.live.tdesc` reads target descriptions, :mod:`~pagewalk.live.memory` is the
cached read-only memory, :mod:`~pagewalk.live.machine_regs` turns registers (Intel SDM vol. 3A
§2.5, Arm ARM D19, RISC-V privileged spec satp) into the loader's, and
:mod:`~pagewalk.live.session` opens and closes a machine. ``gdb_commands`` is the file gdb
sources for ``pagewalk maps|walk|translate`` inside a gdb session.
"""
