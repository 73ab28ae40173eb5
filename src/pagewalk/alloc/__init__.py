"""Frame allocators and the virtual-range allocator, behind small protocols.

See :mod:`pagewalk.alloc.base` for the protocol, :mod:`pagewalk.alloc.conformance` for the suite
every frame allocator passes, and docs/allocators.md for the designs.
"""

from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator, RefCountedFrames, Usage
from pagewalk.alloc.bitmap import BitmapFrameAllocator, powernex_bitmap_bytes
from pagewalk.alloc.buddy import BuddyFrameAllocator
from pagewalk.alloc.bytemap import ATOS_ZONES, ByteMapFrameAllocator, PageState
from pagewalk.alloc.recycle import BumpAllocator, RecycleAllocator, redox_allocator
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.alloc.virtual import VirtualRangeAllocator

__all__ = [
    "ATOS_ZONES",
    "FRAME_SIZE",
    "BitmapFrameAllocator",
    "BuddyFrameAllocator",
    "BumpAllocator",
    "ByteMapFrameAllocator",
    "FrameAllocator",
    "PageState",
    "RecycleAllocator",
    "RefCountedFrames",
    "SimpleFrameAllocator",
    "Usage",
    "VirtualRangeAllocator",
    "powernex_bitmap_bytes",
    "redox_allocator",
]
