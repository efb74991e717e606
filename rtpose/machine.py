"""What a figure was measured on: every benchmark and report says which machine."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The flags that decide how ONNX Runtime runs int8 and fp32 convolutions on x86-64,
# spelt as in /proc/cpuinfo, and numpy's names for them (numpy asks the CPU itself, by
# CPUID, so an emulated CPU reports its own flags, not the host's).
SIMD_FLAGS = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512bw": "AVX512BW", "avx512_vnni": "AVX512VNNI",
              "avx512_bf16": "AVX512BF16", "avx_vnni": None, "amx_int8": None}


def _proc_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_flags() -> list[str]:
    """Which of ``SIMD_FLAGS`` this CPU has: by CPUID through numpy; ``avx_vnni`` and
    ``amx_int8``, which numpy does not report, from ``/proc/cpuinfo`` where it describes
    the same CPU (it does not under an emulator that hides AVX-512)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # another numpy layout: trust /proc/cpuinfo
        features = None
    proc = _proc_flags()
    if features is None:
        return [f for f in SIMD_FLAGS if f in proc]
    have = [f for f, np_name in SIMD_FLAGS.items() if np_name and features.get(np_name)]
    if ("avx512f" in proc) == bool(features.get("AVX512F")) and ("avx2" in proc) == bool(features.get("AVX2")):
        have += [f for f, np_name in SIMD_FLAGS.items() if np_name is None and f in proc]
    return have


def describe() -> dict[str, Any]:
    """CPU, core count, load at the time, and the versions that shape the timings."""
    info: dict[str, Any] = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "hostname": platform.node()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    return info


def _busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``: every state but idle
    and iowait, steal included); None where there is no ``/proc/stat``."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is counted in user already


class OtherLoad:
    """How many cores other processes kept busy while this one measured something.

    A timing taken while other work ran is slower than the machine: benchmarks report
    this beside their figures. Busy time of the whole machine (``/proc/stat``) minus this
    process's own CPU time (``os.times``), over the wall time between ``__enter__`` and
    ``__exit__``; ``cores`` is None where ``/proc/stat`` does not exist (not Linux).

    Example::

        with OtherLoad() as other:
            run_the_timing()
        if other.cores is not None and other.cores > 0.25: ...
    """

    def __init__(self) -> None:
        self.cores: float | None = None

    def __enter__(self) -> "OtherLoad":
        self._start = (time.monotonic(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall0, busy0, own0 = self._start
        busy1 = _busy_seconds()
        wall = time.monotonic() - wall0
        if busy0 is None or busy1 is None or wall <= 0:
            return
        self.cores = max(0.0, ((busy1 - busy0) - (_own_seconds() - own0)) / wall)


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system
