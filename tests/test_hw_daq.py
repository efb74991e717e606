"""DAQs: the simulated DAQ's safety behaviour and loopback physics (delays recovered from
step edges in its input trace), config validation, and the NI-DAQmx backend's plan, ring
buffer and clock mapping without a card or driver."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from rtpose import clock
from rtpose.errors import RtposeError
from rtpose.hw import DaqError, DriverMissing, open_daq, parse_daq_config
from rtpose.hw.clock_fit import DeviceClock
from rtpose.hw.nidaq import AiRing, plan_tasks
from rtpose.hw.sim_daq import SimDaq


def sim(**keys) -> SimDaq:
    daq = open_daq({"backend": "sim", **keys})
    assert isinstance(daq, SimDaq)
    return daq


# -- outputs and safety -------------------------------------------------------------------


def test_outputs_start_at_zero_and_writes_are_timed_and_recorded():
    with sim() as daq:
        assert daq.ao_values() == {"opto_led": 0.0, "calibration": 0.0}
        before = clock.now()
        t = daq.write("calibration", 3.25)
        assert before <= t <= clock.now()
        daq.write("opto_led", 5.0)
        assert daq.ao_values() == {"opto_led": 5.0, "calibration": 3.25}
        times, volts = daq.ao_history("calibration")
        assert volts[-1] == 3.25 and times[-1] == t


def test_out_of_range_volts_are_clipped_and_counted_and_nan_is_refused():
    with sim() as daq:
        daq.write("opto_led", 7.0)  # opto_led is 0-5 V
        assert daq.ao_values()["opto_led"] == 5.0
        daq.write("opto_led", -1.0)
        assert daq.ao_values()["opto_led"] == 0.0
        daq.write("calibration", 7.0)  # calibration is +-10 V: no clipping
        assert daq.clip_counts == {"opto_led": 2, "calibration": 0}
        with pytest.raises(DaqError, match="refusing to write nan V to opto_led"):
            daq.write("opto_led", float("nan"))
        with pytest.raises(DaqError, match="no analog output 'led'; outputs are opto_led, calibration"):
            daq.write("led", 1.0)
        assert daq.ao_values()["opto_led"] == 0.0


def test_zero_all_and_close_leave_every_output_at_zero_and_are_safe_to_repeat():
    daq = parse_and_make_sim()
    daq.zero_all()  # before open: nothing to do, no error
    daq.open()
    daq.write("opto_led", 4.0)
    daq.write("calibration", -3.0)
    daq.zero_all()
    daq.zero_all()
    assert daq.ao_values() == {"opto_led": 0.0, "calibration": 0.0}
    daq.write("opto_led", 2.0)
    daq.close()
    daq.close()
    daq.zero_all()  # after close: already zeroed, no error
    for channel in daq.ao_channels:
        assert daq.ao_history(channel)[1][-1] == 0.0  # the last thing written was 0 V
    with pytest.raises(DaqError, match="closed"):
        daq.write("opto_led", 1.0)
    with pytest.raises(DaqError, match="cannot be reopened"):
        daq.open()


def test_context_manager_zeroes_on_an_exception():
    with pytest.raises(ZeroDivisionError):
        with sim() as daq:
            daq.write("opto_led", 5.0)
            1 / 0
    assert daq.ao_values()["opto_led"] == 0.0 and not daq.is_open


class _OneBrokenOutput(SimDaq):
    """A sim DAQ whose opto_led output fails once zeroing starts (a driver error mid-shutdown)."""

    broken = False

    def _write_hardware(self, channel: str, volts: float) -> float:
        if self.broken and channel == "opto_led":
            raise OSError("device went away")
        return super()._write_hardware(channel, volts)


def test_zero_all_zeroes_the_other_outputs_when_one_fails_and_close_still_releases():
    config = parse_daq_config({"backend": "sim"})
    daq = _OneBrokenOutput(config.device)
    daq.open()
    daq.write("opto_led", 5.0)
    daq.write("calibration", 5.0)
    daq.broken = True
    with pytest.raises(DaqError, match="could not write 0 V to opto_led: device went away"):
        daq.zero_all()
    assert daq.ao_values()["calibration"] == 0.0
    with pytest.raises(DaqError, match="opto_led"):
        daq.close()
    assert not daq.is_open
    daq.close()  # the second close is quiet


def parse_and_make_sim(**keys) -> SimDaq:
    return SimDaq.from_config(parse_daq_config({"backend": "sim", **keys}))


# -- loopback physics ---------------------------------------------------------------------


def _expected_mean_delay(delay_s: float, jitter_s: float) -> float:
    """Mean of max(0, D + N(0, jitter)): the sim's delays are clipped at 0."""
    if jitter_s == 0:
        return delay_s
    z = delay_s / jitter_s
    return delay_s * norm.cdf(z) + jitter_s * norm.pdf(z)


@pytest.mark.parametrize("delay_ms", [0.0, 5.0, 20.0])
def test_loopback_delay_is_recovered_from_step_edges(delay_ms):
    jitter_ms, rate = 0.3, 10_000.0
    daq = sim(ai_rate_hz=rate, loopback_delay_ms=delay_ms, loopback_jitter_ms=jitter_ms, noise_volts=0.05, seed=3)
    written = []
    for i in range(40):
        written.append(daq.write("calibration", 4.0 if i % 2 == 0 else 0.0))
        time.sleep(0.006)
    time.sleep((delay_ms + 5 * jitter_ms) / 1000 + 0.005)
    trace = daq.read_ai(written[0] - 0.002, clock.now())
    daq.close()
    high = trace.volts["calibration_loopback"] > 2.0
    crossings = np.flatnonzero(high[1:] != high[:-1]) + 1
    assert len(crossings) == len(written)
    delays = trace.t[crossings] - np.array(written)
    quantisation = 0.5 / rate  # an edge shows at the first sample at or after it
    expected = _expected_mean_delay(delay_ms / 1000, jitter_ms / 1000) + quantisation
    assert delays.mean() == pytest.approx(expected, abs=0.15e-3)  # 3 sd of a mean of 40 jittered delays
    assert delays.min() >= 0 and delays.max() <= delay_ms / 1000 + 5 * jitter_ms / 1000 + 1 / rate
    if delay_ms > 0:
        assert 0.15e-3 < delays.std() < 0.6e-3  # the jitter is there, about its sd
    # the opto input saw only zeros (with noise): channels do not leak into each other
    assert abs(trace.volts["opto_led_loopback"].mean()) < 0.01


def test_inputs_are_a_regular_grid_on_the_monotonic_clock_with_the_configured_noise():
    rate = 2000.0
    daq = sim(ai_rate_hz=rate, noise_volts=0.2, seed=5)
    time.sleep(0.3)
    trace = daq.read_ai(daq.t0, daq.t0 + 0.25)
    np.testing.assert_allclose(np.diff(trace.t), 1 / rate, rtol=1e-6)
    assert len(trace) == 500 and trace.first_sample == 0 and trace.t[0] == daq.t0
    noise = trace.volts["calibration_loopback"]
    assert np.std(noise) == pytest.approx(0.2, rel=0.1) and abs(np.mean(noise)) < 0.03
    again = daq.read_ai(daq.t0 + 0.1, daq.t0 + 0.15)  # the same samples read twice are the same numbers
    np.testing.assert_array_equal(again.volts["calibration_loopback"], noise[200:300])
    future = daq.read_ai(clock.now() - 0.01, clock.now() + 10)  # samples exist only once taken
    assert future.t[-1] <= clock.now() and len(future) <= 0.011 * rate + 1
    daq.close()


def test_inputs_saturate_at_their_range():
    daq = sim(ai_rate_hz=1000.0, noise_volts=0.5)
    t = daq.write("calibration", 10.0)
    time.sleep(0.1)
    volts = daq.read_ai(t, clock.now()).volts["calibration_loopback"]
    daq.close()
    assert volts.max() == 10.0 and volts.min() < 10.0 and volts.mean() > 9.5


def test_ai_stream_hands_out_each_sample_once_in_order():
    daq = sim(ai_rate_hz=5000.0)
    stream = daq.ai_stream(from_time=daq.t0)
    pieces = []
    for _ in range(4):
        time.sleep(0.03)
        pieces.append(stream.read())
    daq.close()
    starts = [p.first_sample for p in pieces]
    assert starts[0] == 0
    assert all(a.first_sample + len(a) == b.first_sample for a, b in zip(pieces, pieces[1:]))
    assert sum(len(p) for p in pieces) >= 0.1 * 5000


def test_memory_stays_bounded_and_old_input_is_refused():
    """Edges no kept input sample can see are forgotten, whatever the write rate: the bound
    is computed from the writes' own times, and the loop runs until enough writes are
    older than the kept input (no fixed time window, so a loaded machine only takes longer)."""
    buffer_s = 0.05
    daq = sim(ai_rate_hz=1000.0, ai_buffer_s=buffer_s)
    small_log = SimDaq(daq.device, ao_log_capacity=16)
    small_log.open()
    times: list[float] = []

    def enough() -> bool:  # 3072 writes older than the input kept at the last forgetting
        return len(times) > 4096 and np.searchsorted(times, times[-1024] - 2 * buffer_s) >= 3 * 1024

    while len(times) % 256 or not enough():
        times.append(daq.write("calibration", len(times) % 5))
        small_log.write("calibration", (len(times) - 1) % 5)
    writes = len(times)
    # edges are forgotten every 1024 writes, so the last forgetting came after write
    # writes - 1024; it kept the edges arriving within the input buffer then, the one in
    # force before them (per output), and every write since
    kept_from = times[-1024] - buffer_s - daq.loopback_delay_s - 2 / daq.ai_rate_hz
    bound = writes - int(np.searchsorted(times, kept_from)) + len(daq.ao_channels)
    assert daq.retained_edges <= bound
    assert daq.retained_edges < writes - 2 * 1024  # thousands of older edges were forgotten
    with pytest.raises(DaqError, match="no longer kept"):
        daq.read_ai(daq.t0, daq.t0 + 0.01)
    t, volts = small_log.ao_history()
    assert len(t) == 16 and small_log.ao_write_count == writes + 2  # + the zeroing at open
    assert volts[-1] == (writes - 1) % 5 and np.all(np.diff(t) >= 0)
    daq.close()
    small_log.close()


def test_loopback_lookup_follows_the_device_file():
    with sim() as daq:
        assert daq.loopback_input("calibration") == "calibration_loopback"
        assert daq.loopback == {"opto_led_loopback": "opto_led", "calibration_loopback": "calibration"}


# -- configuration ------------------------------------------------------------------------


def _device_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "daq.yaml"
    path.write_text(text)
    return str(path)


DEVICE = """
kind: daq
model: test
device: Dev1
ao:
  led: {{channel: ao0, range_volts: {range}}}
ai:
  led_back: {{channel: ai0}}
loopback:
  led_back: {source}
"""


def test_daq_config_errors_name_the_field(tmp_path):
    cases = {
        "daq.loopback_jitter_ms: Input should be greater than or equal to 0": {"backend": "sim", "loopback_jitter_ms": -1},
        "daq.loopback_delay_ms: unknown key": {"backend": "nidaqmx", "loopback_delay_ms": 5},
        "daq.ai_rate_hz: Input should be greater than 0": {"backend": "sim", "ai_rate_hz": 0},
        "daq.backend: required key is missing": {"ai_rate_hz": 1000},
        ("daq.backend: required key is missing (one of nidaqmx, sim; did you mean 'backend' for "
         "'backnd'?)"): {"backnd": "sim"},
        "exceeds the device's 500000 samples/s aggregate rate": {"backend": "nidaqmx", "ai_rate_hz": 400_000},
        "must include 0 V": {"backend": "sim", "device_file": _device_file(tmp_path, DEVICE.format(range="[1, 5]", source="led"))},
    }
    for expected, data in cases.items():
        with pytest.raises(RtposeError) as error:
            parse_daq_config(data)
        assert expected in str(error.value) and "\n" not in str(error.value)
    other = tmp_path / "other"
    other.mkdir()
    bad_wiring = _device_file(other, DEVICE.format(range="[0, 5]", source="laser"))
    with pytest.raises(RtposeError, match="daq.device_file: .*loopback: led_back is cabled to 'laser', which is not an output"):
        parse_daq_config({"backend": "sim", "device_file": bad_wiring})


def test_shipped_device_files_agree_on_channel_names():
    sim_device = parse_daq_config({"backend": "sim"}).device
    ni_device = parse_daq_config({"backend": "nidaqmx"}).device
    assert list(sim_device.ao) == list(ni_device.ao) and list(sim_device.ai) == list(ni_device.ai)
    assert sim_device.loopback == ni_device.loopback
    assert ni_device.physical("opto_led") == "Dev1/ao0" and ni_device.ao["opto_led"].range_volts == (0.0, 5.0)


# -- NI-DAQmx (no card, no driver here) ------------------------------------------------------


def test_nidaqmx_without_the_package_says_what_to_install():
    if importlib.util.find_spec("nidaqmx") is not None:
        pytest.skip("nidaqmx is installed on this machine")
    with pytest.raises(DriverMissing) as error:
        open_daq({"backend": "nidaqmx"})
    message = str(error.value)
    assert "'nidaqmx'" in message and "pip install nidaqmx" in message and "NI-DAQmx driver" in message
    assert "\n" not in message


def test_nidaqmx_plan_from_the_pcie6343_file():
    device = parse_daq_config({"backend": "nidaqmx"}).device
    plan = plan_tasks(device, ai_rate_hz=2000.0, ai_read_ms=5.0, ai_buffer_s=60.0)
    assert [(c.name, c.physical, c.min_volts, c.max_volts) for c in plan.ao] == [
        ("opto_led", "Dev1/ao0", 0.0, 5.0),
        ("calibration", "Dev1/ao1", -10.0, 10.0),
    ]
    assert [(c.physical, c.terminal) for c in plan.ai] == [("Dev1/ai0", "rse"), ("Dev1/ai1", "rse")]
    assert plan.ai_read_block == 10 and plan.ai_driver_buffer == 4000 and plan.ai_ring_samples == 120_000


def test_ai_ring_keeps_the_newest_samples_by_sample_number():
    ring = AiRing(n_channels=2, capacity=10)
    blocks = [np.vstack([np.arange(a, a + 4), -np.arange(a, a + 4)]).astype(float) for a in range(0, 16, 4)]
    for block in blocks:
        ring.append(block)
    assert (ring.first, ring.end) == (6, 16)
    np.testing.assert_array_equal(ring.read(6, 16)[0], np.arange(6, 16))
    np.testing.assert_array_equal(ring.read(9, 12)[1], -np.arange(9, 12))
    with pytest.raises(DaqError, match="not in the ring"):
        ring.read(5, 8)
    ring.append(np.vstack([np.arange(16, 41), np.zeros(25)]).astype(float))  # a block larger than the ring
    np.testing.assert_array_equal(ring.read(31, 41)[0], np.arange(31, 41))


def test_sample_clock_mapping_follows_drift_from_read_completions():
    """A board sampling at 2 kHz, 40 ppm fast against the host; reads of 10 samples return after a random delay."""
    rate, drift, t0 = 2000.0, 40e-6, 50.0
    rng = np.random.default_rng(7)
    fit = DeviceClock(rate)
    last = 0
    for _ in range(12_000):  # 60 s of reads
        last += 10
        taken = t0 + (last - 1) / (rate * (1 + drift))
        fit.observe_upper_bound(last - 1, taken + 50e-6 + rng.exponential(300e-6))
    samples = np.array([last - 100_000, last - 1000, last - 1])
    true = t0 + samples / (rate * (1 + drift))
    error = fit.to_host(samples) - true
    assert np.all(error >= 0) and np.all(error < 100e-6)  # late by about the shortest read latency
    assert fit.drift_ppm == pytest.approx(-40, abs=2)  # host seconds per board second: 1 - 40 ppm
    assert fit.to_ticks(float(true[-1])) == pytest.approx(samples[-1], abs=0.2)
