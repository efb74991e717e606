"""The one clock every timestamp in rtpose is taken on.

Camera exposure, frame arrival, inference, DAQ writes and analog-input samples must be
comparable to the sub-millisecond, across threads and processes on one machine, so all of
them use CLOCK_MONOTONIC (seconds, float). Never use wall-clock time for latency.
"""

import time


def now() -> float:
    """Seconds on the system-wide monotonic clock."""
    return time.monotonic()
