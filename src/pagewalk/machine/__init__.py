"""Open a dump or a saved image as a machine: memory, paging mode and root registers.

``pagewalk.open(path, ...)`` (:func:`~pagewalk.machine.machine.open`) is what every ``pagewalk``
command that reads an image does first, with the same register options; the CLI adds only
option parsing and output. The pieces: :mod:`~pagewalk.machine.files` opens the file and reads
``IMAGE.json`` or the core's notes, :mod:`~pagewalk.machine.registers` turns options and saved
registers into a mode and roots by per-architecture rules (Intel SDM vol. 3A §2.5 and ch. 4, Arm
ARM D19, RISC-V privileged spec satp), and :mod:`~pagewalk.machine.machine` holds the
:class:`Machine` and its listings and walks (Intel SDM vol. 3A ch. 4, Arm ARM D8).
"""

from pagewalk.machine.files import (
    REGISTER_BITS,
    Opened,
    open_image,
    parse_int,
    read_sidecar,
    sidecar_path,
)
from pagewalk.machine.machine import (
    OPTIONS,
    Machine,
    check_window,
    load_live,
    load_machine,
    open,
)

__all__ = [
    "OPTIONS",
    "REGISTER_BITS",
    "Machine",
    "Opened",
    "check_window",
    "load_live",
    "load_machine",
    "open",
    "open_image",
    "parse_int",
    "read_sidecar",
    "sidecar_path",
]
