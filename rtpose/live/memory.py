"""Keeping a run of hours at constant memory.

glibc's malloc gives each thread that allocates its own arena. In the live loop, 1-3 MB
frame buffers are decoded in the camera's threads and freed in others, and ONNX Runtime
allocates in its pool threads; the arenas fragment and the process's resident memory
creeps up for as long as the run lasts (measured on the fly clip at 150 FPS: +25 MB per
40 s, still rising). With one arena it stays flat (bench/soak_replay.py). The few large
allocations per frame do not contend measurably on the one arena's lock, and Python's
own small objects use pymalloc, not these arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas from now on; False where that is not glibc.

    Threads started afterwards share them, so call it before the engine and the camera
    start their threads. Threads that already have an arena keep it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, int(arenas)))
