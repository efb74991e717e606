"""A recorded run and its analog input in, latency figures out (no printing, no files).

Three latencies, all from one exposure (the camera's timestamp) onwards:

- system: exposure -> the value seen on the looped-back analog input; one per usable
  segment, from aligning the online trace with the offline one.
- software: exposure -> the daemon's DAQ write returned (``t.output - t.exposure``), per
  processed frame, from the daemon's own timestamps; split into camera, waiting,
  inference and output stages.
- DAQ + wiring: system minus software, per segment, with the software latency weighted
  the way the segment's alignment weights its frames (see ``rtpose.calibrate.traces``);
  and, far more tightly, every change of the output timed on its own where it reappears
  on the input (``rtpose.calibrate.edges``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import attrs
import numpy as np

from rtpose.calibrate.align import AT_LAG_BOUND, AlignmentSettings
from rtpose.calibrate.edges import EdgeTiming, time_all_changes
from rtpose.calibrate.target import CalibrationTarget
from rtpose.calibrate.traces import LoopTraces, Segment, align_traces, build_traces
from rtpose.hw import AiTrace
from rtpose.live.recorder import Recording

# Per-frame stages of the software latency; they add up to output - exposure.
STAGES = {
    "camera": ("exposure", "arrival"),
    "waiting": ("arrival", "infer_start"),
    "inference": ("infer_start", "infer_end"),
    "output": ("infer_end", "output"),
}


@attrs.frozen
class Calibration:
    target: CalibrationTarget
    settings: AlignmentSettings
    traces: LoopTraces
    segments: list[Segment]
    stages_s: dict[str, np.ndarray]  # per processed frame, by STAGES name
    offline_agreement: float  # fraction of frames whose recomputed volts equal the recorded ones
    changes: EdgeTiming | None  # the output's changes timed one by one (None without a usable segment)

    @property
    def used(self) -> list[Segment]:
        return [s for s in self.segments if s.alignment.used]

    @property
    def rejected(self) -> list[Segment]:
        return [s for s in self.segments if not s.alignment.used]

    @property
    def enough_segments(self) -> bool:
        return len(self.used) >= self.settings.min_segments

    def system_s(self) -> np.ndarray:
        return np.array([s.alignment.latency_s for s in self.used], np.float64)

    def software_aligned_s(self) -> np.ndarray:
        return np.array([s.software_alignment.latency_s for s in self.used], np.float64)

    def daq_s(self) -> np.ndarray:
        return np.array([s.daq_s for s in self.used], np.float64)

    def rejected_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for segment in self.rejected:
            counts[segment.alignment.rejected] = counts.get(segment.alignment.rejected, 0) + 1
        return counts

    def shortfall_message(self) -> str:
        """One line: why there is no latency to report."""
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.rejected_by_reason().items()) or "none rejected"
        hint = ""
        if self.rejected_by_reason().get("flat", 0) >= len(self.rejected) > 0:
            hint = (f": the feature '{self.target.feature}' swung less than {self.settings.min_swing_volts:g} V "
                    "per segment; did the animals move, and did the model find them?")
        elif not self.segments:
            hint = ": the run was too short for one segment (segment + max lag after the first frame)"
        elif self.rejected_by_reason().get(AT_LAG_BOUND, 0) * 2 >= len(self.rejected) > 0:
            loop_ms = sum(self.stages_s.values()) if self.stages_s else np.zeros(0)
            loop = ""
            if np.size(loop_ms) and np.isfinite(loop_ms).any():
                loop = f" (exposure -> output p95 here: {np.nanpercentile(loop_ms, 95) * 1000:.0f} ms)"
            hint = (f": the round trip may be longer than calibration.max_lag_ms = {self.settings.max_lag_ms:g} ms"
                    f"{loop}; run on an idle machine, or raise the bound with --set calibration.max_lag_ms="
                    f"{2 * self.settings.max_lag_ms:g}")
        if not hint and self.segments:
            hint = "; a longer --duration gives more segments"
        return (f"only {len(self.used)} of {len(self.segments)} segments usable ({reasons}), need at least "
                f"{self.settings.min_segments}{hint}")


def analyse(recording: Recording, ai: AiTrace, target: CalibrationTarget, settings: AlignmentSettings) -> Calibration:
    traces = build_traces(recording, ai, target, settings)
    segments = align_traces(traces, settings)
    t = recording.t
    stages = {name: t[end] - t[start] for name, (start, end) in STAGES.items()}
    recorded = recording.volts.get(target.output)
    agreement = math.nan
    if recorded is not None and len(recorded):
        agreement = float(np.mean(np.isclose(recorded, traces.frame_volts, rtol=0, atol=1e-9)))
    segment_daq = np.array([s.daq_s for s in segments if s.alignment.used])
    changes = time_all_changes(traces, segment_daq) if len(segment_daq) else None
    return Calibration(target, settings, traces, segments, stages, agreement, changes)


def describe_ms(seconds: Sequence[float] | np.ndarray, percentiles: Sequence[int] = (50, 95)) -> dict[str, Any]:
    """mean, sd, sem (the mean's standard error), the percentiles, min, max (ms, 4 decimals) and n; None where
    undefined."""
    values = np.asarray(seconds, np.float64) * 1000.0
    values = values[np.isfinite(values)]

    def rounded(x: float) -> float | None:
        return round(float(x), 4) if math.isfinite(x) else None

    n = len(values)
    figures: dict[str, Any] = {"mean": rounded(values.mean()) if n else None,
                               "sd": rounded(values.std(ddof=1)) if n > 1 else None,
                               "sem": rounded(values.std(ddof=1) / math.sqrt(n)) if n > 1 else None}
    for q in percentiles:
        figures[f"p{q}"] = rounded(np.percentile(values, q)) if n else None
    figures["min"] = rounded(values.min()) if n else None
    figures["max"] = rounded(values.max()) if n else None
    figures["n"] = n
    return figures


def expected_sim_delay_ms(delay_ms: float, jitter_ms: float) -> float:
    """Mean cable delay of the sim DAQ: each write's delay is max(0, D + J * N(0, 1)).

    With J = 0 that is D; with D = 0 it is J / sqrt(2 pi) (about 0.4 J), since delays are
    clipped at zero. (Edges are also kept in order, which only matters when writes come
    less than a few J apart.)
    """
    if jitter_ms <= 0:
        return float(delay_ms)
    z = delay_ms / jitter_ms
    cdf = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return float(delay_ms * cdf + jitter_ms * pdf)
