"""Views of a large frame's memory for a transport to read into, which do not hold that memory.

uvloop keeps the view :meth:`Peer.get_buffer <ipfi.aio.peer.Peer.get_buffer>` returned until the
peer has handled the read. A view of the frame's own ``bytes`` (in its ``io.BytesIO``) would then
still be exported when the frame completes, and the binary would be copied out of it: 1 MiB per
1 MiB message. A view made with ``PyMemoryView_FromMemory`` exports nothing: the transport writes
through it only during the read, while the core holds the frame, and lets go of it right after.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

_WRITABLE = 0x200  # PyBUF_WRITE


@functools.cache
def _view_maker() -> Callable[[memoryview], memoryview] | None:
    try:
        import ctypes  # (here: only once a large frame arrives, not 4 ms at every import)
    except ImportError:  # (a Python built without it: views that hold their memory, and a copy)
        return None
    # A prototype of our own: setting restype on ctypes.pythonapi's would change it for everyone.
    prototype = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)
    from_memory = prototype(("PyMemoryView_FromMemory", ctypes.pythonapi))
    address_of, first_byte = ctypes.addressof, ctypes.c_char.from_buffer

    def unowned(view: memoryview) -> memoryview:
        return from_memory(address_of(first_byte(view)), len(view), _WRITABLE)  # type: ignore[no-any-return]

    return unowned


def unowned_view(view: memoryview) -> memoryview:
    """A writable view of the same bytes as ``view`` (one-dimensional, of bytes, not empty) that
    does not hold the object they belong to. Valid only while that object is kept and not resized."""
    unowned = _view_maker()
    return view if unowned is None else unowned(view)
