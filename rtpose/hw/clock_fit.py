"""Mapping a device's own counter onto the host's monotonic clock.

A camera stamps frames in its own nanoseconds and a DAQ counts samples on its own
timebase; both oscillators run a few tens of ppm off the host's, which is milliseconds
per minute, far more than the latencies we measure. So the mapping is a straight line
``host = offset + ticks * (1 + drift) / ticks_per_s`` fitted to the recent past.

Observations only ever bound the host time of a counter value:

- a bracket (camera ``TimestampLatch``): the latch happened between two host readings;
  its midpoint is the estimate, half its width the error;
- an upper bound (DAQ reads): sample k had been taken before the read that returned it,
  so ``host(k) <= t_after``; the tightest bound (the read that waited least) is the
  estimate, and the mapping is late by that read's transfer latency (it never reads early).

Per ``bin_s`` of host time only the tightest observation is kept; a least-squares line
through the last ``window_bins`` such points follows slow drift without chasing noise.
"""

from __future__ import annotations

import collections
import threading

import numpy as np


class DeviceClock:
    """A device counter -> host ``rtpose.clock`` seconds, refitted as observations arrive; thread-safe.

    Args:
        ticks_per_s: The counter's nominal rate (1e9 for a camera's nanosecond timestamp,
            the sample rate for a DAQ's sample number).
        bin_s: Host seconds per bin; one observation (the tightest) is kept per bin.
        window_bins: Bins in the least-squares fit: the fit follows drift over about
            ``bin_s * window_bins`` seconds.

    Raises:
        ValueError: ``ticks_per_s`` is not positive.
    """

    def __init__(self, ticks_per_s: float, bin_s: float = 1.0, window_bins: int = 60):
        if ticks_per_s <= 0:
            raise ValueError("ticks_per_s must be > 0")
        self.ticks_per_s = float(ticks_per_s)
        self.bin_s = bin_s
        # bin number -> (ticks since reference, host estimate, badness); smaller badness is tighter
        self._bins: collections.OrderedDict[int, tuple[int, float, float]] = collections.OrderedDict()
        self._window_bins = window_bins
        self._reference: int | None = None
        self._fit: tuple[float, float] | None = None  # offset at reference (s), drift (fraction)
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether any observation has been made, so that ``to_host`` and ``to_ticks`` can answer."""
        return self._fit is not None

    def observe_bracket(self, ticks: int, host_before: float, host_after: float) -> None:
        """The counter read ``ticks`` somewhere between two host clock readings."""
        self._observe(int(ticks), 0.5 * (host_before + host_after), host_after - host_before)

    def observe_upper_bound(self, ticks: int, host_after: float) -> None:
        """Tick ``ticks`` had happened by ``host_after``."""
        self._observe(int(ticks), host_after, None)

    def _observe(self, ticks: int, host: float, width: float | None) -> None:
        with self._lock:
            if self._reference is None:
                self._reference = ticks
            relative = ticks - self._reference
            # Brackets: narrower is better. Upper bounds: the one closest to the line is better.
            badness = width if width is not None else host - relative / self.ticks_per_s
            key = int(host // self.bin_s)
            kept = self._bins.get(key)
            if kept is None or badness < kept[2]:
                self._bins[key] = (relative, host, badness)
            while len(self._bins) > self._window_bins:
                self._bins.popitem(last=False)
            self._refit()

    def _refit(self) -> None:
        points = np.array([(rel, host) for rel, host, _ in self._bins.values()], dtype=np.float64)
        seconds = points[:, 0] / self.ticks_per_s
        offsets = points[:, 1] - seconds
        if len(points) >= 3 and seconds[-1] - seconds[0] >= 2 * self.bin_s:
            drift, offset = np.polyfit(seconds - seconds[0], offsets, 1)
            offset -= drift * seconds[0]
        else:
            # Too short a baseline to tell drift from noise: the tightest single point.
            best = int(np.argmin([b for _, _, b in self._bins.values()]))
            drift, offset = 0.0, offsets[best]
        self._fit = (float(offset), float(drift))

    def to_host(self, ticks):
        """Host monotonic seconds of counter value(s).

        Args:
            ticks: An int, or an integer array of any shape.

        Returns:
            A float for an int, else a float64 array of ``ticks``'s shape.

        Raises:
            RuntimeError: No observation yet (see ``ready``).
        """
        with self._lock:
            if self._fit is None or self._reference is None:
                raise RuntimeError("no clock observations yet")
            offset, drift = self._fit
            reference = self._reference
        seconds = (np.asarray(ticks, dtype=np.int64) - reference) / self.ticks_per_s
        host = offset + seconds * (1.0 + drift)
        return float(host) if np.ndim(host) == 0 else host

    def to_ticks(self, host: float) -> float:
        """The (fractional) counter value at host time ``host``: the inverse of ``to_host``."""
        with self._lock:
            if self._fit is None or self._reference is None:
                raise RuntimeError("no clock observations yet")
            offset, drift = self._fit
            reference = self._reference
        return reference + (host - offset) / (1.0 + drift) * self.ticks_per_s

    @property
    def drift_ppm(self) -> float:
        """How fast the device's counter runs against the host clock, in parts per million (0 before a fit)."""
        return 0.0 if self._fit is None else self._fit[1] * 1e6
