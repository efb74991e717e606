"""What the live loop hands to the publisher and the recorder, and how it keeps its figures.

The loop builds one ``FrameRecord`` per processed frame from objects it already has
(no copies, no conversions) and lets the publisher and recorder threads turn it into
bytes, so that the time between a frame's arrival and the DAQ write stays tiny.
Latency figures are kept in fixed-size histograms, so an experiment of hours keeps
constant memory.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from rtpose.poses import Poses


@attrs.define(slots=True)
class FrameRecord:
    """One processed frame: where it came from, when each stage happened, what was decided.

    Times are ``rtpose.clock`` seconds: ``exposure`` (the camera's), ``arrival`` (our code
    got the pixels), ``ready`` (the loop was free to take a frame; before ``arrival`` when
    it was waiting, after when the frame waited for the previous one), ``infer_start``,
    ``infer_end``, ``decision`` (the ``t`` passed to the rules) and ``output`` (right
    after the DAQ took the last changed value, or after the decision when none changed).
    """

    frame: int  # index in the source (video frame number, camera frame ID)
    seq: int  # exposures since the camera opened; strictly increasing over processed frames
    exposure: float
    arrival: float
    ready: float
    infer_start: float
    infer_end: float
    decision: float
    output: float
    poses: Poses
    features: dict[str, float]
    rules: dict[str, bool]
    volts: dict[str, float]  # by output name
    written: dict[str, float]  # by DAQ channel, only what this frame changed

    @property
    def inference_s(self) -> float:
        return self.infer_end - self.infer_start

    @property
    def overhead_s(self) -> float:
        """Arrival -> output written, minus inference, minus waiting behind the previous frame.

        What is left is the loop's own cost: the slot hand-off, features, rules and the
        DAQ write. A frame that arrived while the engine was busy with the previous one
        waited ``ready - arrival`` for it; that wait is reported as ``slot_wait``, since it
        is the camera outpacing the engine, not overhead.
        """
        return self.output - max(self.arrival, self.ready) - self.inference_s

    @property
    def slot_wait_s(self) -> float:
        return max(0.0, self.ready - self.arrival)


@attrs.define(slots=True)
class DropRecord:
    """Frames acquired but never processed, and why.

    ``reason``: ``camera`` (the camera or its driver dropped ``count`` exposures from
    ``seq`` on because the reader was late; no images), ``replaced`` (a newer frame took
    its place in the slot), ``shutdown`` (in the slot when the run stopped), ``error``
    (its processing raised), ``lost`` (its pixels could not be had: a replayed frame that
    did not decode or lay past the real end of its stream).
    """

    reason: str
    seq: int
    count: int = 1
    frame: int | None = None
    arrival: float | None = None


@attrs.define(slots=True)
class OutputEvent:
    """DAQ writes that no frame made: a pulse's off edge at its deadline, or 0 V at shutdown."""

    t: float
    written: dict[str, float]
    reason: str  # "deadline" or "shutdown"
    deadline: float | None = None


class LatencyHistogram:
    """Percentiles of durations within 1% in constant memory (log-spaced bins, 1 us to 1000 s)."""

    _LOW, _HIGH, _STEP = 1e-6, 1e3, 1.01

    def __init__(self) -> None:
        self._n_bins = int(math.ceil(math.log(self._HIGH / self._LOW) / math.log(self._STEP))) + 2
        self._counts = np.zeros(self._n_bins, np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf
        self._log_step = math.log(self._STEP)

    def add(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            return
        if seconds <= self._LOW:
            index = 0
        else:
            index = min(self._n_bins - 1, 1 + int(math.log(seconds / self._LOW) / self._log_step))
        self._counts[index] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.min = min(self.min, seconds)

    def percentile(self, q: float) -> float:
        """Seconds; the upper edge of the bin holding the q-th percentile (clipped to the max seen)."""
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100.0 * self.count))
        index = int(np.searchsorted(np.cumsum(self._counts), rank))
        upper = self._LOW * self._STEP ** index
        return min(max(upper, self.min), self.max)

    def summary_ms(self) -> dict[str, float | int | None]:
        """p50, p90, p99, mean, max in milliseconds, and the count (None where no data)."""

        def ms(value: float) -> float | None:
            return None if not math.isfinite(value) else round(value * 1000.0, 4)

        return {
            "p50": ms(self.percentile(50)),
            "p90": ms(self.percentile(90)),
            "p99": ms(self.percentile(99)),
            "mean": ms(self.total / self.count) if self.count else None,
            "max": ms(self.max) if self.count else None,
            "count": self.count,
        }
