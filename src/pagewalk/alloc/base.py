"""The frame-allocator protocol that page-table builders and kernels allocate through.

A frame allocator hands out runs of 4 KiB physical frames. It owns bookkeeping only: it never
reads or writes the frames it hands out (the caller zeroes table frames), except where a
kernel's design puts the allocator's own bookkeeping in RAM (PowerNex's bitmap at KERNEL_END).
Page-table frames are 4 KiB on every x86 and RISC-V mode (Intel SDM vol. 3A §4.2; RISC-V
privileged spec, Sv32 to Sv57) and one granule on AArch64 (Arm ARM D8.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

FRAME_SIZE = 4096


@dataclass(frozen=True)
class Usage:
    """Frame counts of an allocator: ``free + used == total``."""

    total: int
    free: int
    used: int

    def __post_init__(self) -> None:
        if self.free + self.used != self.total:
            raise ValueError(f"inconsistent usage: {self.free} + {self.used} != {self.total}")


@runtime_checkable
class FrameAllocator(Protocol):
    """Allocates physical frames.

    ``allocate`` returns the PA of the first frame of ``n_frames`` contiguous frames aligned to
    ``align`` bytes (a power of two, at least ``FRAME_SIZE``); it raises
    :class:`~pagewalk.errors.OutOfMemoryError` and changes nothing when it cannot. ``free``
    returns frames; freeing frames that are not allocated raises
    :class:`~pagewalk.errors.AllocatorError` and changes nothing. ``reserve`` takes a PA range
    out of the free pool for good (firmware, the kernel image, the allocator's own bitmap).
    """

    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int: ...

    def free(self, pa: int, n_frames: int = 1) -> None: ...

    def reserve(self, pa: int, size: int) -> None: ...

    def usage(self) -> Usage: ...


@runtime_checkable
class RefCountedFrames(Protocol):
    """A frame allocator that counts users per frame (shared and copy-on-write frames).

    ``share`` adds a user to each allocated frame of the run; ``free`` drops one user and
    returns a frame to the pool only when its last user lets go; ``refcount`` reads the count
    (0 for a free frame).
    """

    def share(self, pa: int, n_frames: int = 1) -> None: ...

    def refcount(self, pa: int) -> int: ...
