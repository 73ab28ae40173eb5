"""Frame allocators and the virtual-range allocator, behind small protocols.

See :mod:`pagewalk.alloc.base` for the protocol.
"""

from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator, RefCountedFrames, Usage
from pagewalk.alloc.simple import SimpleFrameAllocator

__all__ = ["FRAME_SIZE", "FrameAllocator", "RefCountedFrames", "SimpleFrameAllocator", "Usage"]
