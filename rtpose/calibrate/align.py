"""One latency per segment: the lag that best aligns the analog input with the offline trace.

Both traces are step signals on the analog input's sample grid: the offline one changes
at each processed frame's exposure, the online one when that frame's value came back
through the cable. Each 1 s segment of the offline trace is slid over the online trace
within ``[min_lag_ms, max_lag_ms]``; the lag of the highest Pearson correlation, refined
between samples with a parabola through the peak and its neighbours, is the segment's
latency.

Why both traces are smoothed first (a Gaussian of ``smoothing_ms``): the latency differs
from frame to frame. The correlation of two raw staircases has a kink at every edge's
own lag, and its peak lands on the (weighted) *median* of the per-frame latencies. Once
the kernel is wider than that spread and than the frame interval, the peak is smooth
and sits at their weighted *mean*, which is what ``system = software + DAQ`` compares
with. Smoothing both traces with one linear filter moves no edge, so a constant delay
is recovered exactly.

Segments are rejected, with the reason kept, when the feature barely moved (its swing
below ``min_swing_volts``: noise and pose jitter would decide the lag), when the best
correlation is weak (below ``min_correlation``: the two traces do not look alike, e.g. a
cable on the wrong input), or when the peak is at either end of the lag range (the true
latency may lie outside it).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import correlate

FLAT = "flat"
WEAK = "weak correlation"
AT_LAG_BOUND = "peak at lag bound"


@attrs.frozen
class AlignmentSettings:
    """How segments are cut, aligned and judged. Changeable with ``--set calibration.KEY=VALUE``."""

    segment_s: float = 1.0  # the paper's segment length; segments never overlap
    min_lag_ms: float = 0.0
    max_lag_ms: float = 250.0  # the paper's round trip was 71 +- 17 ms
    smoothing_ms: float = 10.0  # Gaussian sd applied to both traces (see the module docstring)
    min_swing_volts: float = 0.05  # max - min of the offline trace within a segment
    min_correlation: float = 0.9
    min_segments: int = 5  # fewer usable segments than this: no latency is reported

    def __attrs_post_init__(self) -> None:
        checks = [
            (self.segment_s > 0, "segment_s must be > 0"),
            (0 <= self.min_lag_ms < self.max_lag_ms, "need 0 <= min_lag_ms < max_lag_ms"),
            (self.smoothing_ms >= 0, "smoothing_ms must be >= 0"),
            (self.min_swing_volts >= 0, "min_swing_volts must be >= 0"),
            (-1 <= self.min_correlation <= 1, "min_correlation must be within [-1, 1]"),
            (self.min_segments >= 1, "min_segments must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class SegmentAlignment:
    """The outcome for one segment; ``latency_s`` is NaN when no peak inside the range was found."""

    latency_s: float
    correlation: float
    swing_volts: float
    rejected: str | None  # None: used; else FLAT, WEAK or AT_LAG_BOUND
    detail: str = ""  # the numbers behind a rejection, in words

    @property
    def used(self) -> bool:
        return self.rejected is None


def correlation_by_lag(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``reference`` with ``window[k:k + len(reference)]`` for every k.

    A flat stretch of either gives NaN there rather than a division by zero.
    """
    reference = np.asarray(reference, np.float64)
    window = np.asarray(window, np.float64)
    n = len(reference)
    if n < 2 or len(window) < n:
        raise ValueError(f"need a reference of >= 2 samples and a window at least as long ({n}, {len(window)})")
    centred = reference - reference.mean()
    reference_norm = math.sqrt(float(centred @ centred))
    window = window - window.mean()  # the running sums below then stay small
    products = correlate(window, centred, mode="valid")
    sums = np.concatenate([[0.0], np.cumsum(window)])
    squares = np.concatenate([[0.0], np.cumsum(window * window)])
    window_sum = sums[n:] - sums[:-n]
    window_deviation = np.maximum(squares[n:] - squares[:-n] - window_sum * window_sum / n, 0.0)
    denominator = reference_norm * np.sqrt(window_deviation)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 1e-12 * max(n, 1), products / denominator, np.nan)


def parabolic_peak(values: np.ndarray, index: int) -> float:
    """Offset in (-0.5, 0.5) samples of the vertex of the parabola through ``index`` and its neighbours."""
    left, centre, right = values[index - 1], values[index], values[index + 1]
    curvature = left - 2.0 * centre + right
    if not curvature < 0:  # not a strict maximum (flat or NaN): no refinement
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def smooth(trace: np.ndarray, rate_hz: float, smoothing_ms: float) -> np.ndarray:
    """The trace through a Gaussian of sd ``smoothing_ms`` (unchanged for 0)."""
    sigma = smoothing_ms * rate_hz / 1000.0
    trace = np.asarray(trace, np.float64)
    return gaussian_filter1d(trace, sigma, mode="nearest") if sigma > 0 else trace


def align_segment(offline: np.ndarray, online_window: np.ndarray, rate_hz: float, first_lag_samples: int,
                  settings: AlignmentSettings, swing_volts: float | None = None) -> SegmentAlignment:
    """The latency of one segment.

    ``offline``: the segment's (smoothed) offline samples; ``online_window``: the (smoothed)
    online samples from ``first_lag_samples`` after the segment's first sample, long
    enough for every lag up to ``max_lag_ms``. ``swing_volts``: the raw offline swing
    (defaults to that of ``offline``).
    """
    swing = float(np.ptp(offline)) if swing_volts is None else float(swing_volts)
    if not swing >= settings.min_swing_volts:
        return SegmentAlignment(math.nan, math.nan, swing, FLAT,
                                f"the feature swung {swing:.3g} V < min_swing_volts {settings.min_swing_volts:g} V")
    r = correlation_by_lag(offline, online_window)
    if np.all(np.isnan(r)):
        return SegmentAlignment(math.nan, math.nan, swing, WEAK, "the analog input was flat over the whole lag range")
    best = int(np.nanargmax(r))
    peak = float(r[best])
    if best == 0 or best == len(r) - 1:
        lag_ms = (first_lag_samples + best) * 1000.0 / rate_hz
        return SegmentAlignment(math.nan, peak, swing, AT_LAG_BOUND,
                                f"best correlation {peak:.3f} at {lag_ms:.1f} ms, the end of the lag range "
                                f"[{settings.min_lag_ms:g}, {settings.max_lag_ms:g}] ms")
    latency_s = (first_lag_samples + best + parabolic_peak(r, best)) / rate_hz
    if not peak >= settings.min_correlation:
        return SegmentAlignment(latency_s, peak, swing, WEAK,
                                f"best correlation {peak:.3f} < min_correlation {settings.min_correlation:g}")
    return SegmentAlignment(latency_s, peak, swing, None)
