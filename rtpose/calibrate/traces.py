"""The two traces the calibration compares, on the analog input's own sample grid.

- online: what came back on the analog input (``Daq.read_ai`` over the run).
- offline: what the output *should* have shown with zero latency: the follow output's
  volts recomputed from the recorded poses of every processed frame (the same rules code,
  run again offline), placed at that frame's exposure and held until the next processed
  frame. Dropped frames are left out on both sides, since the daemon wrote nothing for them.
- software: the same volts placed at the time the daemon says it wrote them
  (``t.output``), i.e. the online trace as it would be with a DAQ and cable of zero delay.

Why the third trace: a segment's correlation peak is an average of its frames' latencies
weighted by how much the feature changed at each (the flies' fast moments count most),
not the plain average of every frame. Aligning the software trace the same way gives the
software's share of that very average, so ``system - software`` per segment isolates the
DAQ and the cable without the frame-to-frame spread of the software latency leaking in.

Sampling without a half-sample bias: an analog input sample shows the level at its
instant, so an edge at a random time first shows at the next sample, on average half a
sample period after it. The offline and software traces are built to match exactly: each
sample holds the trace's *average over the sample period centred on it*, so an edge
between two samples shows as a fractional step split over two samples, whose centre
(the first moment of the sample-to-sample changes) is exactly half a period after the
edge, whatever its phase. (Sampling them like the input instead would cancel
the half period only when edge times fall at random phases of the sample clock; the
replay camera's exposures at k / 150 s fall at three phases of a 2 kHz clock.)

The span a segment may use: from ``max_lag`` after the first processed exposure (so the
first frame's value has come back for every lag tried; before it the input shows the
DAQ's 0 V) to the last processed exposure, with the online window ending before the
outputs were zeroed at shutdown.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from rtpose.calibrate.align import AlignmentSettings, SegmentAlignment, align_segment, smooth
from rtpose.calibrate.target import CalibrationTarget
from rtpose.errors import RtposeError
from rtpose.hw import AiTrace
from rtpose.live.recorder import Recording
from rtpose.rules import evaluate_offline


@attrs.frozen
class LoopTraces:
    t: np.ndarray  # (n,) analog input sample times, monotonic seconds
    online: np.ndarray  # (n,) volts on the looped-back input
    offline: np.ndarray  # (n,) the offline step signal at the same times
    rate_hz: float
    exposure: np.ndarray  # (T,) processed frames' exposure times: the offline edges
    frame_volts: np.ndarray  # (T,) offline volts of each processed frame
    software: np.ndarray  # (n,) the step signal of the daemon's writes (edges at t.output)
    software_s: np.ndarray  # (T,) output written - exposure, from the daemon's timestamps
    write_times: np.ndarray  # (T,) t.output: when the daemon's write returned
    usable_from: float  # a segment may start here
    offline_until: float  # ... end by here
    online_until: float  # ... and its online window (segment + max lag) end by here


@attrs.frozen
class Segment:
    index: int
    start: float  # monotonic time of its first sample
    first_sample: int  # into LoopTraces.t
    n_samples: int
    frames: int  # processed frames exposed within it
    software_s: float  # their mean software latency (NaN without frames)
    alignment: SegmentAlignment  # offline vs online: the system latency
    software_alignment: SegmentAlignment | None  # offline vs software, for used segments

    @property
    def daq_s(self) -> float:
        """System minus software latency of the same edges: the DAQ and the cable."""
        if self.software_alignment is None or not self.alignment.used:
            return math.nan
        return self.alignment.latency_s - self.software_alignment.latency_s


def step_signal(edge_times: np.ndarray, edge_values: np.ndarray, at: np.ndarray, before: float = 0.0) -> np.ndarray:
    """The value of the last edge at or before each time in ``at`` (``before`` ahead of the first): what an
    instantaneous sampler (an ADC, the sim DAQ's input) reads."""
    index = np.searchsorted(edge_times, at, side="right") - 1
    values = np.asarray(edge_values, np.float64)
    if len(values) == 0:
        return np.full(len(at), before)
    return np.where(index >= 0, values[np.maximum(index, 0)], before)


def period_averaged_steps(edge_times: np.ndarray, edge_values: np.ndarray, sample_times: np.ndarray,
                          period: float, before: float = 0.0) -> np.ndarray:
    """The step signal averaged over ``(t - period / 2, t + period / 2]`` for each sample time ``t``.

    See the module docstring: an edge then sits half a period late at every phase, as it
    does on average on an instantaneously sampled input.
    """
    sample_times = np.asarray(sample_times, np.float64)
    if len(sample_times) == 0:
        return np.zeros(0)
    origin = float(sample_times[0])  # relative times keep the integral exact to well below a microvolt
    edges = np.asarray(edge_times, np.float64) - origin
    levels = np.concatenate([[before], np.asarray(edge_values, np.float64)])  # levels[k]: after k edges
    start = min(float(edges[0]) if len(edges) else 0.0, -period) - 1.0  # before anything integrated
    knots = np.concatenate([[start], edges])  # levels[k] holds from knots[k] on
    integral_at_knots = np.concatenate([[0.0], np.cumsum(levels[:-1] * np.diff(knots))])

    def integral(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(edges, x, side="right")
        return integral_at_knots[k] + levels[k] * (x - knots[k])

    relative = sample_times - origin
    return (integral(relative + period / 2) - integral(relative - period / 2)) / period


def offline_volts(recording: Recording, target: CalibrationTarget) -> np.ndarray:
    """The follow output's volts per processed frame, recomputed from the recorded poses."""
    evaluation = evaluate_offline(recording.trigger_sections(), recording.node_names, recording.class_names,
                                  recording.px_per_mm, recording.poses, recording.t["decision"],
                                  frame_times=recording.t["exposure"])
    return evaluation.volts[target.output]


def zeroed_at(recording: Recording) -> float:
    """When the outputs went to 0 V at the end of the run (the online trace stops being the loop's)."""
    times = [e["t"] for e in recording.output_events if e.get("reason") == "shutdown"]
    if recording.end is not None and recording.end.get("t_zeroed") is not None:
        times.append(float(recording.end["t_zeroed"]))
    return min(times) if times else math.inf


def build_traces(recording: Recording, ai: AiTrace, target: CalibrationTarget,
                 settings: AlignmentSettings) -> LoopTraces:
    if len(recording.frame) < 2:
        raise RtposeError(f"{recording.path}: {len(recording.frame)} processed frame(s); nothing to calibrate")
    if target.loopback_input not in ai.volts or len(ai) < 2:
        raise RtposeError(f"no analog input samples of '{target.loopback_input}' were captured")
    exposure = recording.t["exposure"]
    volts = offline_volts(recording, target)
    return LoopTraces(
        t=ai.t, online=np.asarray(ai.volts[target.loopback_input], np.float64),
        offline=period_averaged_steps(exposure, volts, ai.t, 1.0 / ai.rate_hz),
        software=period_averaged_steps(recording.t["output"], volts, ai.t, 1.0 / ai.rate_hz),
        rate_hz=ai.rate_hz, exposure=exposure, frame_volts=volts, software_s=recording.t["output"] - exposure,
        write_times=recording.t["output"],
        usable_from=float(exposure[0]) + settings.max_lag_ms / 1000.0,
        offline_until=float(exposure[-1]),
        online_until=min(zeroed_at(recording), float(ai.t[-1])),
    )


def align_traces(traces: LoopTraces, settings: AlignmentSettings) -> list[Segment]:
    """Cut the usable span into back-to-back segments and align each one."""
    rate = traces.rate_hz
    n = int(round(settings.segment_s * rate))
    first_lag = int(math.ceil(settings.min_lag_ms * rate / 1000.0 - 1e-9))
    last_lag = int(math.floor(settings.max_lag_ms * rate / 1000.0 + 1e-9))
    offline = smooth(traces.offline, rate, settings.smoothing_ms)
    online = smooth(traces.online, rate, settings.smoothing_ms)
    software = smooth(traces.software, rate, settings.smoothing_ms)
    # The last sample each may use: offline up to the last exposure, online before zeroing.
    offline_end = int(np.searchsorted(traces.t, traces.offline_until, side="right"))
    online_end = int(np.searchsorted(traces.t, traces.online_until, side="left"))
    segments = []
    start = int(np.searchsorted(traces.t, traces.usable_from, side="left"))
    while start + n <= offline_end and start + n + last_lag <= online_end:
        t_start, t_end = traces.t[start], traces.t[start + n - 1] + 1.0 / rate
        inside = (traces.exposure >= t_start) & (traces.exposure < t_end)
        frames_software = float(traces.software_s[inside].mean()) if inside.any() else math.nan
        reference, window = offline[start:start + n], slice(start + first_lag, start + n + last_lag)
        swing = float(np.ptp(traces.offline[start:start + n]))
        alignment = align_segment(reference, online[window], rate, first_lag, settings, swing_volts=swing)
        software_alignment = None
        if alignment.used:
            software_alignment = align_segment(reference, software[window], rate, first_lag, settings,
                                               swing_volts=swing)
            if not software_alignment.used:  # never seen: the daemon's own write times did not line up
                alignment = attrs.evolve(alignment, rejected=software_alignment.rejected,
                                         detail=f"software trace: {software_alignment.detail}")
        segments.append(Segment(len(segments), float(t_start), start, n, int(inside.sum()), frames_software, alignment,
                                software_alignment))
        start += n
    return segments
