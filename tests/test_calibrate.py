"""Loopback latency calibration: the alignment core on synthetic traces with known lags,
then end to end on the fly clip, the real model and the simulated DAQ.

End to end, one daemon run drives one output that a tee sends down five simulated
cables (each a sim DAQ with its own delay D, jitter J and noise), so five injected
delays share one run's segments instead of costing five runs. For each cable
the calibration must find mean(system) = E[cable delay] + software latency within
0.5 ms, where E[cable delay] follows the sim's documented physics: each write's delay
is max(0, D + J N(0, 1)), about 0.4 J for D = 0. "Software latency" there is the
daemon's own exposure -> write times weighted the way each segment's alignment weights
its frames (see ``rtpose.calibrate.traces``); a separate test checks that this weighting
is the square of each frame's change of the output, which also pins where the traces
place each frame to a fraction of a sample.

The end-to-end protocol follows the head-head distance rather than the shipped
thorax-thorax distance: heads are what any model of this format finds most reliably,
and these tests are about the latency measurement, not the model. The clip's frames
990-1499 are where the flies move.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.ndimage import gaussian_filter1d

from rtpose import clock
from rtpose.calibrate import (AlignmentSettings, align_segment, analyse, correlation_by_lag, expected_sim_delay_ms,
                              prepare)
from rtpose.calibrate.align import AT_LAG_BOUND, FLAT, WEAK, smooth
from rtpose.calibrate.edges import time_all_changes
from rtpose.calibrate.traces import LoopTraces, period_averaged_steps, step_signal
from rtpose.cli import main as rtpose_main
from rtpose.engine.base import load_engine
from rtpose.errors import RtposeError
from rtpose.hw import make_daq, sim_daq
from rtpose.hw.daq import Daq
from rtpose.live import Daemon, read_recording

REPO = Path(__file__).resolve().parent.parent
SIM_PROTOCOL = REPO / "experiments" / "latency_calibration.yaml"
RIG_PROTOCOL = REPO / "experiments" / "latency_calibration_rig.yaml"
MODEL = REPO / "models" / "flies13"
RATE = 2000.0


# --- synthetic traces -------------------------------------------------------------------


def synthetic_traces(lag_s, seconds: float = 30.0, fps: float = 30.0, rate: float = RATE, seed: int = 0,
                     noise_volts: float = 0.0, steady: bool = False):
    """(t, offline, online, exposure, lags): a smooth feature held per frame; its edges come back
    ``lag_s`` later (a constant or a function rng, n -> lags) on an input sampled like the sim DAQ's.

    Exposures fall at random phases of the sample clock, as a camera on its own clock does.
    ``steady``: the feature changes at a constant speed (a triangle wave), so every frame's
    edge weighs the same in the alignment.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate + rng.uniform(0, 1 / rate)
    exposure = np.arange(0.02, seconds, 1 / fps) + rng.uniform(0, 1 / rate, int(np.ceil((seconds - 0.02) * fps)))
    volts = gaussian_filter1d(rng.standard_normal(len(exposure)), 4) * 6 + 3
    if steady:
        volts = 3 + np.abs((exposure / 0.75) % 2 - 1)  # 1 V up and down every 1.5 s
    lags = lag_s(rng, len(exposure)) if callable(lag_s) else np.full(len(exposure), lag_s)
    arrival = np.maximum.accumulate(exposure + lags)
    online = step_signal(arrival, volts, t) + noise_volts * rng.standard_normal(len(t))
    return t, period_averaged_steps(exposure, volts, t, 1 / rate), online, exposure, lags


def segment_latencies(t, offline, online, settings: AlignmentSettings, rate: float = RATE):
    """Every whole 1 s segment after the first, aligned: (latencies in ms of the used ones, alignments)."""
    offline, online = smooth(offline, rate, settings.smoothing_ms), smooth(online, rate, settings.smoothing_ms)
    n, last_lag = int(rate * settings.segment_s), int(settings.max_lag_ms * rate / 1000)
    alignments = [align_segment(offline[i:i + n], online[i:i + n + last_lag], rate, 0, settings)
                  for i in range(n, len(t) - n - last_lag, n)]
    return np.array([a.latency_s * 1000 for a in alignments if a.used]), alignments


def test_correlation_by_lag_is_the_pearson_correlation_at_every_lag():
    rng = np.random.default_rng(3)
    reference, window = rng.standard_normal(50), rng.standard_normal(80) + 7.0
    expected = [np.corrcoef(reference, window[k:k + 50])[0, 1] for k in range(31)]
    np.testing.assert_allclose(correlation_by_lag(reference, window), expected, atol=1e-12)
    assert np.isnan(correlation_by_lag(reference, np.ones(80))).all()  # a flat input: undefined, not inf


@pytest.mark.parametrize("lag_ms, rate, smoothing_ms", [(37.3, 2000.0, 10.0), (12.15, 1000.0, 10.0),
                                                        (71.04, 2000.0, 0.0), (0.8, 2000.0, 10.0)])
def test_a_constant_lag_is_recovered_between_samples(lag_ms, rate, smoothing_ms):
    # Edges at arbitrary times, sampled on the grid the way the sim DAQ samples: no half-sample bias.
    t, offline, online, _, _ = synthetic_traces(lag_ms / 1000, seconds=12, rate=rate, noise_volts=0.002)
    settings = AlignmentSettings(smoothing_ms=smoothing_ms)
    latencies, alignments = segment_latencies(t, offline, online, settings, rate)
    assert len(latencies) == len(alignments) == 10
    assert abs(latencies.mean() - lag_ms) < 0.05, latencies
    assert np.all(np.abs(latencies - lag_ms) < 0.25 * 1000 / rate + 0.1)  # each segment within a quarter sample


def edge_position(samples: np.ndarray, t: np.ndarray) -> float:
    """Where a sampled 0 -> 1 step sits: the first moment of its sample-to-sample changes."""
    changes = np.diff(samples, prepend=0.0)
    return float(np.sum(t * changes) / np.sum(changes))


def test_an_edge_between_samples_is_placed_half_a_period_late_whatever_its_phase():
    period, t = 1 / RATE, np.arange(40) / RATE
    # The replay camera at 150 FPS against a 2 kHz input: exposures fall at only three phases of its clock.
    for edge in 0.005 + np.array([0.0, 1 / 150, 2 / 150]) % period + 1e-4:
        averaged = period_averaged_steps(np.array([edge]), np.array([1.0]), t, period)
        assert edge_position(averaged, t) == pytest.approx(edge + period / 2, abs=1e-9)
    # An instantaneous sampler (the analog input) is that late only on average over random phases.
    phases = np.random.default_rng(0).uniform(0, period, 4000)
    late = np.array([edge_position(step_signal(np.array([0.005 + p]), np.array([1.0]), t), t) - (0.005 + p)
                     for p in phases])
    assert late.min() >= 0 and late.max() <= period and late.mean() == pytest.approx(period / 2, abs=0.02 * period)


def test_varying_lags_give_their_mean_once_smoothed_and_their_median_if_not():
    skewed = lambda rng, n: 0.02 + rng.gamma(2.0, 0.004, n)  # noqa: E731  mean 28 ms, median ~26.7 ms
    t, offline, online, _, lags = synthetic_traces(skewed, seconds=40, seed=1, steady=True)
    mean_ms, median_ms = lags.mean() * 1000, np.median(lags) * 1000
    assert mean_ms - median_ms > 1.0  # the distribution really is skewed
    smoothed, _ = segment_latencies(t, offline, online, AlignmentSettings(smoothing_ms=10))
    raw, _ = segment_latencies(t, offline, online, AlignmentSettings(smoothing_ms=0))
    assert abs(smoothed.mean() - mean_ms) < 0.3, (smoothed.mean(), mean_ms)
    assert raw.mean() < mean_ms - 0.8  # why the traces are smoothed: raw staircases pull towards the median


def test_segments_without_enough_variation_or_likeness_or_in_range_lag_are_rejected_with_a_reason():
    settings = AlignmentSettings(max_lag_ms=250)
    rng = np.random.default_rng(5)
    n, window = int(RATE), int(RATE) + 500
    flat = align_segment(np.full(n, 3.0) + 0.001 * rng.standard_normal(n), rng.standard_normal(window), RATE, 0,
                         settings)
    assert flat.rejected == FLAT and not flat.used and "min_swing_volts" in flat.detail
    t, offline, _, _, _ = synthetic_traces(0.03, seconds=4, seed=6)
    _, _, unrelated, _, _ = synthetic_traces(0.03, seconds=4, seed=7)  # a cable on the wrong input
    weak = align_segment(smooth(offline, RATE, 10)[n:2 * n], smooth(unrelated, RATE, 10)[n:n + window], RATE, 0,
                         settings)
    assert weak.rejected == WEAK and weak.correlation < settings.min_correlation
    t, offline, online, _, _ = synthetic_traces(0.300, seconds=4, seed=8)  # beyond max_lag_ms
    late = align_segment(smooth(offline, RATE, 10)[n:2 * n], smooth(online, RATE, 10)[n:n + window], RATE, 0,
                         settings)
    assert late.rejected == AT_LAG_BOUND and math.isnan(late.latency_s)
    _, _, online, _, _ = synthetic_traces(0.030, seconds=4, seed=8)
    good = align_segment(smooth(offline, RATE, 10)[n:2 * n], smooth(online, RATE, 10)[n:n + window], RATE, 0,
                         settings)
    assert good.used and abs(good.latency_s - 0.030) < 1e-4


def test_the_expected_sim_delay_follows_the_sim_physics():
    rng = np.random.default_rng(0)
    for delay, jitter in ((0.0, 1.0), (0.5, 1.0), (5.0, 1.0), (13.7, 2.0), (3.0, 0.0)):
        simulated = np.maximum(0.0, delay + jitter * rng.standard_normal(400_000)).mean()
        assert expected_sim_delay_ms(delay, jitter) == pytest.approx(simulated, abs=0.005)
    assert expected_sim_delay_ms(0.0, 1.0) == pytest.approx(1 / math.sqrt(2 * math.pi))


def changes_on_a_cable(delays_ms, seconds: float = 20.0, fps: float = 30.0, noise_volts: float = 0.002,
                       gain: float = 1.0, offset_volts: float = 0.0, seed: int = 0) -> tuple[LoopTraces, np.ndarray]:
    """Traces of an output written at ``fps`` whose changes reach the input after ``delays_ms`` (rng, n -> ms),
    through an input with its own gain and offset; and the delays drawn."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE + rng.uniform(0, 1 / RATE)
    writes = np.arange(0.05, seconds - 0.1, 1 / fps) + rng.uniform(0, 5e-3, int(np.ceil((seconds - 0.15) * fps)))
    volts = 3 + gaussian_filter1d(rng.standard_normal(len(writes)), 2) * 2
    delays = delays_ms(rng, len(writes)) / 1000
    online = gain * step_signal(writes + delays, volts, t) + offset_volts + noise_volts * rng.standard_normal(len(t))
    software = period_averaged_steps(writes, volts, t, 1 / RATE)
    traces = LoopTraces(t=t, online=online, offline=software, software=software, rate_hz=RATE, exposure=writes,
                        frame_volts=volts, software_s=np.zeros(len(writes)), write_times=writes,
                        usable_from=0.3, offline_until=writes[-1], online_until=t[-1])
    return traces, delays


@pytest.mark.parametrize("delay_ms, jitter_ms", [(5.0, 1.0), (0.0, 2.0), (0.3, 0.0)])
def test_every_change_of_the_output_is_timed_on_the_input_without_cutting_off_the_tail(delay_ms, jitter_ms):
    # Jitter clipped at zero is one-sided: a window that cut off its far tail would bias the mean low.
    draw = lambda rng, n: np.maximum(0.0, delay_ms + jitter_ms * rng.standard_normal(n))  # noqa: E731
    traces, delays = changes_on_a_cable(draw, gain=0.998, offset_volts=0.004)
    rough_segment_estimates = np.full(5, delays.mean()) + np.random.default_rng(1).normal(0, 0.6e-3, 5)
    timing = time_all_changes(traces, rough_segment_estimates)
    assert len(timing.delays_s) > 0.5 * len(delays) and timing.outside_window == 0
    assert abs(timing.delays_s.mean() - delays.mean()) * 1000 < 0.05
    assert timing.gain == pytest.approx(0.998, abs=1e-3) and timing.offset_volts == pytest.approx(0.004, abs=1e-3)
    assert timing.noise_volts == pytest.approx(0.002, rel=0.1)


# --- end to end -------------------------------------------------------------------------


class TeeToSimCables(Daq):
    """One DAQ to the daemon; a BNC tee sends each write down several simulated cables.

    Each cable is a whole sim DAQ with its own delay, jitter, noise and seed; the input
    the daemon itself reads is the first cable's. The sim DAQs take a write's time from
    ``rtpose.clock``; while the tee writes, ``SharedInstant`` makes that clock read the
    same instant for every cable, so no cable gets a write later than the daemon records
    it (the GIL may switch threads between two cables' writes).
    """

    def __init__(self, cables: list[Daq], instant: "SharedInstant"):
        first = cables[0]
        super().__init__(first.device, first.ai_rate_hz, first.ai_buffer_s)
        self.name = "tee:" + ",".join(c.name for c in cables)
        self.cables = cables
        self.instant = instant

    def _open_hardware(self) -> None:
        for cable in self.cables:
            cable.open()

    def _close_hardware(self) -> None:
        for cable in self.cables:
            cable.close()

    def _write_hardware(self, channel: str, volts: float) -> float:
        with self.instant.frozen() as t:
            for cable in self.cables:
                cable.write(channel, volts)
        return t

    def _ai_span(self):
        return self.cables[0]._ai_span()

    def _ai_samples(self, start, stop):
        return self.cables[0]._ai_samples(start, stop)

    def _ai_times(self, samples):
        return self.cables[0]._ai_times(samples)

    def _ai_sample_at(self, t):
        return self.cables[0]._ai_sample_at(t)


class SharedInstant:
    """``rtpose.clock`` as the sim DAQ module sees it: the real clock, or one instant while frozen."""

    def __init__(self) -> None:
        self._frozen: float | None = None

    def now(self) -> float:
        return clock.now() if self._frozen is None else self._frozen

    @contextlib.contextmanager
    def frozen(self):
        self._frozen = clock.now()
        try:
            yield self._frozen
        finally:
            self._frozen = None


def write_test_protocol(directory: Path, **changes) -> Path:
    """The shipped sim protocol, following the head-head distance on the clip's moving frames at 30 FPS."""
    tree = yaml.safe_load(SIM_PROTOCOL.read_text())
    tree["features"] = {"head_distance": {"distance": ["male.head", "female.head"]}}
    tree["outputs"]["calibration"]["follow"]["feature"] = "head_distance"
    tree["camera"].update(fps=30, frames="990-1499", loop=True)  # the engine keeps up at 30 FPS, mostly
    tree["model"]["export_dir"] = str(MODEL)
    tree["recorder"]["path"] = str(directory / "run")
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            tree[section][field] = value
        else:
            tree[section] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "protocol.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


# (delay, jitter) in ms. 13.7: a delay nothing here was tuned to. (0, 2): with delays
# clipped at zero the expected mean is 0.8 ms, so a test that assumed D would fail.
CABLES_MS = ((0.0, 1.0), (5.0, 1.0), (13.7, 1.0), (20.0, 1.0), (0.0, 2.0))


@pytest.fixture(scope="module")
def engine():
    engine = load_engine(MODEL, "ort-cpu")
    yield engine
    engine.close()


def timing_check(figures: str) -> str:
    """The failure message of a check on real-time figures of a live run."""
    return (f"a timing check of a real-time run: {figures}. On a machine busy with other work this can fail; "
            "rerun it with the machine idle before reading it as a bug (README, Two commands)")


@pytest.fixture(scope="module")
def teed_run(tmp_path_factory, engine, flies_video_path):
    path = write_test_protocol(tmp_path_factory.mktemp("teed"), duration=20)
    loaded, target, settings, _ = prepare(path, ["calibration.min_segments=8"])
    cables = []
    for i, (delay, jitter) in enumerate(CABLES_MS):
        config = loaded.protocol.daq.model_copy(update={"loopback_delay_ms": delay, "loopback_jitter_ms": jitter,
                                                        "noise_volts": 0.002, "seed": 10 + i})
        cables.append(make_daq(config))
    instant = SharedInstant()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sim_daq, "clock", instant)
        tee = TeeToSimCables(cables, instant)
        result = Daemon(loaded, engine=engine, daq=tee, capture_ai=True).run()
        assert result.error is None and result.ai_trace is not None, result.error
        recording = read_recording(result.recording)
        span = result.ai_trace.t[0], result.ai_trace.t[-1] + 0.5 / RATE
        calibrations = {spec: analyse(recording, cable.read_ai(*span), target, settings)
                        for spec, cable in zip(CABLES_MS, cables)}
        tee.close()
    return calibrations


@pytest.mark.parametrize("delay_ms, jitter_ms", CABLES_MS)
def test_the_mean_system_latency_is_the_injected_delay_plus_the_software_latency(teed_run, delay_ms, jitter_ms):
    calibration = teed_run[delay_ms, jitter_ms]
    assert calibration.enough_segments, calibration.shortfall_message()
    assert calibration.offline_agreement == 1.0  # the offline volts are exactly what the daemon decided
    expected_daq = expected_sim_delay_ms(delay_ms, jitter_ms)
    system = calibration.system_s().mean() * 1000
    software = calibration.software_aligned_s().mean() * 1000
    # Equivalently: the recovered DAQ + cable delay (system - software, per segment) is the injected one.
    assert abs(system - (expected_daq + software)) < 0.5, timing_check(
        f"system latency {system:.2f} ms, expected DAQ delay {expected_daq:.2f} + software {software:.2f} ms")
    # Timed change by change, the hardware's delay comes out tighter still.
    per_change = calibration.changes.delays_s
    assert len(per_change) >= 100
    assert abs(per_change.mean() * 1000 - expected_daq) < 0.25, timing_check(
        f"DAQ delay timed change by change {per_change.mean() * 1000:.2f} ms, injected {expected_daq:.2f} ms")


# a segment's software latency is steady when its standard deviation is within this (s); on an idle
# 2-core machine they are 1.5-3.2 ms, in the first seconds of a run 8-14 ms
STEADY_SD_S = 0.005


def test_a_segment_weighs_each_frame_by_its_squared_feature_jump_and_places_it_at_its_exposure(teed_run):
    # Why system latency is compared with the *weighted* software latency, and an absolute check of where
    # the traces put each frame: the software share found by a segment's alignment is the mean of its
    # frames' own exposure -> write times, weighted by the square of the change each made to the output.
    # That is the correlation's first-order behaviour, which holds where the latency is steady: a
    # segment whose latency swings by tens of ms departs from it (the first seconds of a run, or a
    # hiccup of a shared machine: in one CI run six such segments were 7-43 ms off, all one way, and
    # moved the median of all to 0.27 ms; with another process busy on one of two cores, 11 of 17
    # segments swing), so the check is on the steady segments, of which there must be a few.
    # (A trace placed half a sample off would move it by 0.25 ms.)
    calibration = teed_run[CABLES_MS[0]]
    traces = calibration.traces
    squared_jumps = np.diff(traces.frame_volts, prepend=0.0) ** 2
    differences, plain = [], []
    for segment in calibration.used:
        inside = (traces.exposure >= segment.start) & (traces.exposure < segment.start + calibration.settings.segment_s)
        if traces.software_s[inside].std() > STEADY_SD_S:
            continue
        weighted = np.sum(squared_jumps[inside] * traces.software_s[inside]) / np.sum(squared_jumps[inside])
        differences.append(segment.software_alignment.latency_s - weighted)
        plain.append(segment.software_alignment.latency_s - traces.software_s[inside].mean())
    assert len(differences) >= 3, timing_check(
        f"{len(differences)} of {len(calibration.used)} segments had a steady software latency")
    assert abs(np.median(differences)) * 1000 < 0.15, timing_check(
        f"segment alignment - weighted software latency, ms: {np.round(np.array(differences) * 1000, 2)}")
    # the weighting explains the segments, the plain mean does not (typical size, not std: one segment whose
    # latency swung by tens of ms dominates both standard deviations alike)
    assert np.median(np.abs(differences)) < np.median(np.abs(plain)), (np.round(np.array(differences) * 1000, 2),
                                                                       np.round(np.array(plain) * 1000, 2))


def test_rtpose_calibrate_writes_the_report_and_histogram_and_explains_the_numbers(tmp_path, capsys,
                                                                                  flies_video_path):
    path = write_test_protocol(tmp_path, duration=6.5)
    report_path = tmp_path / "out" / "latency.json"
    code = rtpose_main(["calibrate", str(path), "--set", "daq.loopback_delay_ms=13.7",
                        "--set", "daq.loopback_jitter_ms=2", "--set", "calibration.min_segments=3",
                        "--report", str(report_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report_path.with_suffix(".png").stat().st_size > 10_000 and report["histogram"].endswith("latency.png")
    for key in ("mean", "sd", "p50", "p95"):
        assert isinstance(report["system_latency_ms"][key], float)
    assert {"mean", "p99"} <= set(report["software_latency_ms"])
    segments = report["segments"]
    assert segments["used"] >= 3
    assert segments["used"] + segments["rejected"] == segments["total"] == len(segments["list"])
    assert report["status"] == "ok" and report["protocol"]["feature"] == "head_distance"
    assert report["injected"]["loopback_delay_ms"] == 13.7 and report["injected"]["loopback_jitter_ms"] == 2
    assert report["machine"]["cpu_count"] >= 1 and report["run"]["frames"]["processed"] > 0
    # A short run and 2 ms of jitter: the precise checks are the teed run's; this one catches gross errors.
    assert abs(report["injected"]["error_ms"]) < 1.0, report["injected"]
    breakdown = report["breakdown_ms"]
    software_parts = sum(breakdown[k]["mean"] for k in ("camera", "waiting", "inference", "output"))
    assert software_parts == pytest.approx(report["software_latency_ms"]["mean"], abs=0.01)
    for words in ("System latency", "camera", "waiting", "inference", "output", "DAQ + wiring", "71.0 +- 17.0 ms",
                  "Injected cable delay"):
        assert words in out, words


def test_too_few_usable_segments_exits_non_zero_with_one_line(tmp_path, capsys, flies_video_path):
    # The whole feature range squeezed into 10 mV: as if the animals had not moved.
    path = write_test_protocol(tmp_path, duration=3)
    code = rtpose_main(["calibrate", str(path), "--set", "outputs.calibration.follow.to=[1.0, 1.01]"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: only 0 of ") and "flat" in err and "move" in err, err
    assert json.loads((tmp_path / "run" / "latency_report.json").read_text())["status"] == "too few segments"


def test_a_run_with_some_segments_but_fewer_than_min_segments_reports_no_latency(tmp_path, capsys,
                                                                                   flies_video_path):
    """Below min_segments the run exits 1 and neither prints nor writes a system latency
    (the JSON's figures are null), as the README's settings table says: a new-user trial
    found it printing 'System latency ... over 5 segments' above 'No latency reported'."""
    path = write_test_protocol(tmp_path, duration=4)
    report_path = tmp_path / "few.json"
    assert rtpose_main(["calibrate", str(path), "--set", "calibration.min_segments=200",
                        "--report", str(report_path)]) == 1
    out, _ = capsys.readouterr()
    report = json.loads(report_path.read_text())
    assert report["status"] == "too few segments" and report["segments"]["used"] > 0, report["segments"]
    assert all(value is None for key, value in report["system_latency_ms"].items() if key != "n")
    assert "System latency" not in out and "No latency reported" in out, out
    assert report_path.with_suffix(".png").stat().st_size > 10_000  # the segments are still drawn


def test_an_earlier_report_and_its_png_survive_a_calibration_refused_before_its_run(tmp_path, capsys,
                                                                                     flies_video_path):
    """`calibrate --report` where the report or its PNG exists: one line naming the file, --report and
    --overwrite, exit 2, before the run (no recording), both files untouched. A failing calibration
    writes its report to a new file; with --overwrite it replaces the earlier one and its PNG."""
    path = write_test_protocol(tmp_path, duration=3)
    report, png = tmp_path / "out" / "latency.json", tmp_path / "out" / "latency.png"
    report.parent.mkdir()
    report.write_bytes(b"a good 60 s report")
    png.write_bytes(b"its histogram")
    failing = ["calibrate", str(path), "--set", "outputs.calibration.follow.to=[1.0, 1.01]"]  # too few segments
    assert rtpose_main([*failing, "--report", str(report)]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: {report} already exists: give another --report, or --overwrite to replace it\n"
    assert out == "" and not (tmp_path / "run").exists()
    report.unlink()  # the PNG alone is enough to refuse: it would be replaced beside a new report
    assert rtpose_main([*failing, "--report", str(report)]) == 2
    assert capsys.readouterr().err == (f"error: {png} already exists: give another --report, or --overwrite to "
                                       "replace it\n")
    assert png.read_bytes() == b"its histogram" and not report.exists() and not (tmp_path / "run").exists()
    new = tmp_path / "elsewhere" / "new.json"  # a new file: the failing calibration's report is written
    assert rtpose_main([*failing, "--report", str(new)]) == 1
    capsys.readouterr()
    assert json.loads(new.read_text())["status"] == "too few segments" and new.with_suffix(".png").exists()
    shutil.rmtree(tmp_path / "run")
    report.write_bytes(b"a good 60 s report")
    assert rtpose_main([*failing, "--report", str(report), "--overwrite"]) == 1
    capsys.readouterr()
    assert json.loads(report.read_text())["status"] == "too few segments"
    assert png.read_bytes().startswith(b"\x89PNG")


# --- protocols and mistakes -------------------------------------------------------------


def test_the_rig_protocol_validates_and_measures_what_the_simulation_does():
    loaded, target, _, _ = prepare(RIG_PROTOCOL)
    sim, sim_target, _, _ = prepare(SIM_PROTOCOL)
    assert loaded.protocol.camera.backend == "spinnaker" and loaded.protocol.daq.backend == "nidaqmx"
    assert (target.channel, target.loopback_input) == ("calibration", "calibration_loopback")
    assert loaded.protocol.daq.device.ao["calibration"].channel == "ao1"
    assert loaded.protocol.daq.device.ai["calibration_loopback"].channel == "ai1"
    assert target.ai_rate_hz >= 1000
    for section in ("features", "outputs", "identities", "arena"):
        assert getattr(loaded.protocol, section) == getattr(sim.protocol, section), section
    assert target == sim_target


def unlooped_device_file(directory: Path) -> Path:
    tree = yaml.safe_load((REPO / "firmware_configs" / "sim_daq.yaml").read_text())
    del tree["loopback"]["calibration_loopback"]
    path = directory / "unlooped_daq.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize("case, words", [
    ("pulse only", "follows a feature"),
    ("not looped back", "no analog input is cabled back from 'calibration'"),
    ("slow input", "too slow for a latency calibration"),
    ("unknown setting", "calibration.KEY=VALUE"),
    ("bad setting", "min_lag_ms < max_lag_ms"),
])
def test_protocols_that_cannot_be_calibrated_fail_before_anything_opens_with_one_line(tmp_path, capsys, case, words):
    protocol, extra = str(SIM_PROTOCOL), []
    if case == "pulse only":
        protocol = str(REPO / "experiments" / "male_approach_replay.yaml")
    elif case == "not looped back":
        extra = ["--set", f"daq.device_file={unlooped_device_file(tmp_path)}"]
    elif case == "slow input":
        extra = ["--set", "daq.ai_rate_hz=500"]
    elif case == "unknown setting":
        extra = ["--set", "calibration.lag_max=3"]
    elif case == "bad setting":
        extra = ["--set", "calibration.max_lag_ms=0"]
    code = rtpose_main(["calibrate", protocol, "--set", f"recorder.path={tmp_path / 'never'}", *extra])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert not (tmp_path / "never").exists()  # nothing opened, nothing recorded
    with pytest.raises(RtposeError):
        prepare(protocol, [e for e in extra if e != "--set"])


def test_the_calibration_does_not_import_torch():
    code = "import sys, rtpose.calibrate.command; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_segments_at_the_lag_bound_say_which_bound_to_raise(tmp_path, capsys, flies_video_path):
    # a 20 ms cable against a 5 ms bound: every segment's correlation peaks at the bound
    path = write_test_protocol(tmp_path, duration=4)
    code = rtpose_main(["calibrate", str(path), "--set", "calibration.max_lag_ms=5",
                        "--set", "daq.loopback_delay_ms=20"])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1, err
    assert "peak at lag bound" in err and "calibration.max_lag_ms = 5 ms" in err, err
    assert "exposure -> output p95 here" in err and "--set calibration.max_lag_ms=10" in err, err


def test_the_rig_protocol_without_its_drivers_is_a_setup_error_as_in_rtpose_run(capsys):
    """A missing vendor driver is the user's to fix before acquiring: exit 2 and the driver's
    one line, as `rtpose run` says it (not "the run failed", exit 1)."""
    import importlib.util

    if importlib.util.find_spec("nidaqmx") and importlib.util.find_spec("PySpin"):
        pytest.skip("this machine has both vendor libraries")
    assert rtpose_main(["calibrate", str(RIG_PROTOCOL)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the '") and "backend needs the Python module" in err[0], err


def test_ctrl_c_of_a_calibration_says_it_was_cut_short_and_exits_130(tmp_path):
    """A calibration stopped by Ctrl-C reports the time that ran and says so; its exit status is
    rtpose run's (130), so a script cannot take it for the full duration asked for."""
    import signal
    import time

    path = write_test_protocol(tmp_path, duration=60)
    report = tmp_path / "cut.json"
    process = subprocess.Popen([sys.executable, "-m", "rtpose", "calibrate", str(path), "--set",
                                "calibration.min_segments=2", "--report", str(report)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()  # printed once the checks passed, just before the run
        assert "calibrating" in banner, banner
        deadline = time.monotonic() + 60
        while not (tmp_path / "run" / "record.msgpack").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the daemon is running (and handles SIGINT) once its recording exists
        time.sleep(6)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, (out, err)
    assert "interrupted (SIGINT) after " in err and " s of 60 s: the report covers that time only; DAQ channels " \
        "after stop: " in err, err
    assert json.loads(report.read_text())["run"]["stop_reason"] == "SIGINT"
