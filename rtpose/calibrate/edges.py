"""The DAQ and cable alone, change by change: when each written value reappears on the input.

A segment's latency is dominated by its few largest changes of the feature, so the
hardware's share (system minus software, per segment) scatters by a good part of the
cable's jitter from one segment to the next. The daemon knows when it wrote every value,
though, so each change the output made can be timed on its own where it shows up on the
analog input, and all of them count equally: the mean over hundreds of changes pins the
DAQ + wiring delay far more tightly than a few dozen segments do.

How one change is timed: in a window around where it is expected (write time + the
hardware delay), each input sample's fraction of the way from the old level to the new
one is summed; that sum counts the samples taken after the change, so the first of them
is the change's position. The old and new levels are the written volts through one gain
and offset fitted to the whole run, on the samples away from any change, so an offset or
gain between output and input does not bias the count. An instantaneous sampler shows a
change at the first sample after it, half a period late on average, which is taken off.

The window must hold the change and no neighbour: a first pass, with a window from the
segments' scatter, measures the delays' spread; the second uses six times that spread on
either side, so that no delay is cut off (cutting the far tail off would bias the mean
low). Changes too small to time within ``max_error_s`` for the input's noise, or with a
neighbour inside their window, are counted and left out.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from rtpose.calibrate.traces import LoopTraces, step_signal

MAX_ERROR_S = 0.5e-3  # a change's timing error from the input's noise must stay below this
MIN_HALF_WINDOW_S = 2e-3
MAX_HALF_WINDOW_S = 20e-3


@attrs.frozen
class EdgeTiming:
    delays_s: np.ndarray  # DAQ + cable delay of each timed change of the output
    changes: int  # changes the daemon wrote whose window lies within the traces
    too_small: int
    crowded: int
    outside_window: int
    half_window_s: float
    noise_volts: float  # the input's noise, as estimated
    gain: float  # input volts per output volt, fitted
    offset_volts: float


def input_noise_volts(trace: np.ndarray) -> float:
    """Sample noise of a mostly flat trace: a robust spread of its sample-to-sample differences."""
    steps = np.diff(np.asarray(trace, np.float64))
    if len(steps) < 2:
        return 0.0
    mad = float(np.median(np.abs(steps - np.median(steps))))
    return 1.4826 * mad / math.sqrt(2.0)


def input_gain_offset(traces: LoopTraces, arrivals: np.ndarray, delay_s: float,
                      margin_s: float) -> tuple[float, float]:
    """Input volts = gain * output volts + offset, fitted on the samples more than ``margin_s`` from any change."""
    t = traces.t
    expected = step_signal(traces.write_times + delay_s, traces.frame_volts, t)
    index = np.clip(np.searchsorted(arrivals, t), 1, max(len(arrivals) - 1, 1))
    if len(arrivals) >= 2:
        nearest = np.minimum(np.abs(t - arrivals[index - 1]), np.abs(t - arrivals[index]))
    else:
        nearest = np.abs(t - arrivals[0]) if len(arrivals) else np.full(len(t), np.inf)
    clear = (nearest > margin_s) & (t < traces.online_until)
    if clear.sum() < 100 or np.ptp(expected[clear]) == 0:
        return 1.0, 0.0
    gain, offset = np.polyfit(expected[clear], traces.online[clear], 1)
    return float(gain), float(offset)


def _robust_sd(values: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values)))) if len(values) else 0.0


def time_changes(traces: LoopTraces, expected_delay_s: float, half_window_s: float,
                 max_error_s: float = MAX_ERROR_S) -> EdgeTiming:
    """One pass: the delay of every change the input shows clearly, in windows of ``+- half_window_s``."""
    t, online, period = traces.t, traces.online, 1.0 / traces.rate_hz
    volts = np.asarray(traces.frame_volts, np.float64)
    previous = np.concatenate([[0.0], volts[:-1]])  # the output starts at 0 V
    changed = volts != previous
    times, before, after = traces.write_times[changed], previous[changed], volts[changed]
    gain, offset = input_gain_offset(traces, times + expected_delay_s, expected_delay_s, half_window_s / 2)
    noise = input_noise_volts(online[t < traces.online_until])
    n_window = max(int(round(2 * half_window_s / period)), 4)
    gap_before = np.diff(times, prepend=-math.inf)
    gap_after = np.diff(times, append=math.inf)
    delays, counted, too_small, crowded, outside = [], 0, 0, 0, 0
    for write, old, new, gap_b, gap_a in zip(times, before, after, gap_before, gap_after):
        start = int(np.searchsorted(t, write + expected_delay_s - half_window_s, side="left"))
        stop = start + n_window
        if start == 0 or stop > len(t) or t[stop - 1] >= traces.online_until:
            continue  # the window is not all inside the traces
        counted += 1
        step = gain * (new - old)
        # the count's error from noise: n_window fractions, each noisy by noise / step
        if step == 0 or noise * math.sqrt(n_window) * period / abs(step) > max_error_s:
            too_small += 1
            continue
        if min(gap_b, gap_a) < 1.5 * half_window_s:  # a neighbour's change would fall in the window
            crowded += 1
            continue
        after_count = float(((online[start:stop] - (gain * old + offset)) / step).sum())
        if not 1.0 <= after_count <= n_window - 1.0:  # the change is at or past an end of the window
            outside += 1
            continue
        first_after = t[start] + (n_window - after_count) * period
        delays.append(first_after - period / 2 - write)
    return EdgeTiming(np.array(delays, np.float64), counted, too_small, crowded, outside, half_window_s, noise,
                      gain, offset)


def time_all_changes(traces: LoopTraces, segment_daq_s: np.ndarray) -> EdgeTiming:
    """Two passes (see the module docstring), centred on the segments' median hardware delay."""
    scatter = float(np.std(segment_daq_s, ddof=1)) if len(segment_daq_s) > 1 else 0.5e-3
    centre = max(float(np.median(segment_daq_s)), 0.0)
    first = time_changes(traces, centre, float(np.clip(8 * scatter, MIN_HALF_WINDOW_S, MAX_HALF_WINDOW_S)))
    if len(first.delays_s) < 10:
        return first
    centre = float(np.median(first.delays_s))
    # the larger of a robust and a plain spread: delays clipped at zero have a median absolute deviation of 0
    delays = first.delays_s
    spread = max(_robust_sd(delays), float(np.std(delays))) + abs(float(np.mean(delays)) - centre)
    return time_changes(traces, centre, float(np.clip(6 * spread, MIN_HALF_WINDOW_S, MAX_HALF_WINDOW_S)))
