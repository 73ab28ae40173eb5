"""Print the path of the gdb command file: ``gdb -ex "source $(python -m pagewalk.live.gdb_path)"``.

One idea: the shell finds the file gdb sources (:mod:`pagewalk.live.gdb_commands`), wherever
pagewalk is installed. The protocol behind it is QEMU's gdbstub (GDB manual, "Remote Protocol").
"""

from __future__ import annotations

from pathlib import Path

PATH = Path(__file__).with_name("gdb_commands.py")

if __name__ == "__main__":
    print(PATH)
