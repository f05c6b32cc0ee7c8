"""Memory policy for frame-sized buffers: freed pixels go back to the system.

glibc's malloc serves a request of 128 KiB or more with its own ``mmap`` (returned to the
system on ``free``) only until the first such block is freed; from then on its threshold
follows the largest block freed (up to 32 MiB), so frame-sized buffers (a 1080p RGB frame is
6.2 MB, its decoded YUV 3.1 MB) are carved out of the per-thread arenas instead. Frames are
allocated in one thread (the decoder, the stage that converts them) and freed in another (the
sink), and the arenas keep what they once held: on the default chain over a 1080p clip about
200 MB of arena memory sat free but resident at the peak (``mallinfo2().fordblks``).

``release_frame_buffers()`` fixes the threshold at ``MMAP_THRESHOLD`` (1 MiB) once per
process, so every block of a megabyte or more is its own mapping and leaves with its frame;
smaller blocks (tiles, crops, detector inputs) stay in the arenas. It also caps the arenas at
``ARENA_MAX`` (2): glibc makes up to 8 per core, one per thread that allocates, and the
stages, the model pools and the decoder are a dozen threads each keeping its own free
memory (rally, default chain: peak 804 MB with the default arenas, 748 MB with 2; one run
each, /tmp/h16a/probe.py, load 8.4-8.9). Each setting is left alone where the environment
sets it (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``: the user's choice wins), and all
is a no-op where the C library has no ``mallopt`` (musl, macOS). The sources call it when
they are made, before the plugins' threads exist.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 1 << 20  # bytes: blocks this large or larger are mapped on their own
ARENA_MAX = 2  # malloc arenas shared by all threads
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
_M_ARENA_MAX = -8
_lock = threading.Lock()
_state: dict[str, bool] = {}


def release_frame_buffers() -> bool:
    """Make frame-sized blocks their own mappings (once); whether the policy is in force."""
    with _lock:
        if "applied" in _state:
            return _state["applied"]
        applied = False
        try:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        except (AttributeError, OSError):  # not glibc
            mallopt = None
        if mallopt is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            applied = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        if mallopt is not None and "MALLOC_ARENA_MAX" not in os.environ:
            mallopt(_M_ARENA_MAX, ARENA_MAX)
        log.debug("frame buffers as their own mappings: %s", applied)
        _state["applied"] = applied
        return applied
