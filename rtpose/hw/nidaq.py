"""NI DAQ boards through NI-DAQmx (``nidaqmx``), imported only when this backend opens.

Outputs: one on-demand (software-timed) task holds every AO channel of the device file;
``write`` is one ``write_one_sample`` of the vector of current values, which updates the
DACs within the call, so the time taken right after it returns is at most the call's
return overhead late. No buffer, no sample clock: lowest latency, and nothing queued
that could play after a zeroing.

Inputs: one task holds every AI channel, hardware-timed continuous acquisition at
``ai_rate_hz`` on the board's timebase, read by a thread in blocks of ``ai_read_ms`` into
a ring of ``ai_buffer_s`` seconds. Sample k was taken at ``t0 + k / rate`` on the board's
clock; the host time of each sample comes from ``DeviceClock`` fed with the fact that
sample k had been acquired by the time the read returning it came back. So sample times
are late by the shortest read latency seen each second (DMA transfer and thread wake-up;
PCIe boards: well under a millisecond, not measured here), and follow the board
oscillator's drift (spec'd at 50 ppm on X Series) by a line fitted to the last minute.
A step written on an output cabled to an input measures that residual directly.

None of this has run against NI hardware here: there is no card and no driver on the
development machines or in CI. ``plan_tasks`` (what would be created) and the ring buffer
are tested; the calls into ``nidaqmx`` are kept in ``_NidaqDriver`` and follow
nidaqmx-python's documented API.
"""

from __future__ import annotations

import logging
import math
import threading

import attrs
import numpy as np

from rtpose import clock
from rtpose.hw.clock_fit import DeviceClock
from rtpose.hw.daq import Daq
from rtpose.hw.errors import DaqError, DriverMissing, import_driver
from rtpose.hw.firmware import DaqDevice

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install it with `pip install nidaqmx` and NI's NI-DAQmx driver (Linux: NI's driver packages; "
    "Windows: `python -m nidaqmx installdriver`)"
)


@attrs.frozen
class AoChannelPlan:
    name: str
    physical: str  # Dev1/ao0
    min_volts: float
    max_volts: float


@attrs.frozen
class AiChannelPlan:
    name: str
    physical: str
    min_volts: float
    max_volts: float
    terminal: str  # default | rse | nrse | diff | pseudo_diff


@attrs.frozen
class NidaqPlan:
    """Everything the driver layer is asked to create, computed without the driver."""

    ao: tuple[AoChannelPlan, ...]
    ai: tuple[AiChannelPlan, ...]
    ai_rate_hz: float
    ai_read_block: int  # samples per channel per read
    ai_driver_buffer: int  # samples per channel in NI-DAQmx's own input buffer
    ai_ring_samples: int  # samples per channel kept by us for read_ai


def plan_tasks(device: DaqDevice, ai_rate_hz: float, ai_read_ms: float, ai_buffer_s: float) -> NidaqPlan:
    ao = tuple(
        AoChannelPlan(name, device.physical(name), *channel.range_volts) for name, channel in device.ao.items()
    )
    ai = tuple(
        AiChannelPlan(name, device.physical(name), *channel.range_volts, channel.terminal)
        for name, channel in device.ai.items()
    )
    block = max(1, round(ai_rate_hz * ai_read_ms / 1000.0))
    # The driver's buffer rides out a reader stalled for up to 2 s (e.g. a GC pause) before overflowing.
    driver_buffer = max(int(math.ceil(2.0 * ai_rate_hz)), 4 * block)
    ring = max(int(math.ceil(ai_buffer_s * ai_rate_hz)), 2 * block)
    return NidaqPlan(ao, ai, float(ai_rate_hz), block, driver_buffer, ring)


class AiRing:
    """The last ``capacity`` samples of each channel, addressed by acquisition sample number."""

    def __init__(self, n_channels: int, capacity: int):
        self.capacity = capacity
        self._data = np.zeros((n_channels, capacity), np.float64)
        self.end = 0  # one past the newest sample written
        self._lock = threading.Lock()

    @property
    def first(self) -> int:
        return max(0, self.end - self.capacity)

    def append(self, block: np.ndarray) -> None:
        n = block.shape[1]
        if n > self.capacity:
            block, skipped = block[:, -self.capacity :], n - self.capacity
        else:
            skipped = 0
        with self._lock:
            start = (self.end + skipped) % self.capacity
            head = min(block.shape[1], self.capacity - start)
            self._data[:, start : start + head] = block[:, :head]
            self._data[:, : block.shape[1] - head] = block[:, head:]
            self.end += n

    def read(self, start: int, stop: int) -> np.ndarray:
        with self._lock:
            if start < self.first or stop > self.end or stop < start:
                raise DaqError(f"samples {start}:{stop} are not in the ring ({self.first}:{self.end})")
            index = np.arange(start, stop) % self.capacity
            return self._data[:, index]


_TERMINALS = {
    "default": ("DEFAULT",),
    "rse": ("RSE",),
    "nrse": ("NRSE",),
    "diff": ("DIFF", "DIFFERENTIAL"),  # nidaqmx >= 0.6 / older
    "pseudo_diff": ("PSEUDO_DIFF", "PSEUDODIFFERENTIAL"),
}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


class _NidaqDriver:
    """The only code that calls ``nidaqmx``; kept thin so everything else is testable without it."""

    def __init__(self, plan: NidaqPlan):
        self.plan = plan
        self.nidaqmx = import_driver("nidaqmx", "nidaqmx", INSTALL_HINT)
        from nidaqmx.stream_readers import AnalogMultiChannelReader
        from nidaqmx.stream_writers import AnalogMultiChannelWriter

        self._reader_cls, self._writer_cls = AnalogMultiChannelReader, AnalogMultiChannelWriter
        self.ao_task = None
        self.ai_task = None
        self.ao_values = np.zeros(len(plan.ao), np.float64)
        self.actual_ai_rate_hz = plan.ai_rate_hz

    def _translate(self, exc: Exception, what: str) -> Exception:
        if type(exc).__name__ == "DaqNotFoundError":
            return DriverMissing(f"the 'nidaqmx' backend found the Python package but not the NI-DAQmx driver; {INSTALL_HINT}")
        return DaqError(f"nidaqmx: {what}: {_first_line(exc)}")

    def open(self) -> None:
        constants = self.nidaqmx.constants
        try:
            self.ao_task = self.nidaqmx.Task("rtpose-ao")
            for ch in self.plan.ao:
                self.ao_task.ao_channels.add_ao_voltage_chan(
                    ch.physical, name_to_assign_to_channel=ch.name, min_val=ch.min_volts, max_val=ch.max_volts
                )
            self.ao_task.start()  # on-demand: started once, so each write does not start and stop it
            self._ao_writer = self._writer_cls(self.ao_task.out_stream)
            if self.plan.ai:
                self.ai_task = self.nidaqmx.Task("rtpose-ai")
                for ch in self.plan.ai:
                    self.ai_task.ai_channels.add_ai_voltage_chan(
                        ch.physical,
                        name_to_assign_to_channel=ch.name,
                        terminal_config=self._terminal(constants, ch.terminal),
                        min_val=ch.min_volts,
                        max_val=ch.max_volts,
                    )
                self.ai_task.timing.cfg_samp_clk_timing(
                    self.plan.ai_rate_hz,
                    sample_mode=constants.AcquisitionType.CONTINUOUS,
                    samps_per_chan=self.plan.ai_driver_buffer,
                )
                self.ai_task.in_stream.input_buf_size = self.plan.ai_driver_buffer
                # The board divides its timebase; the rate it really runs at is what the clock map needs.
                self.actual_ai_rate_hz = float(self.ai_task.timing.samp_clk_rate)
                self._ai_reader = self._reader_cls(self.ai_task.in_stream)
        except Exception as exc:
            self.close()
            raise self._translate(exc, "opening the tasks") from exc

    @staticmethod
    def _terminal(constants, name: str):
        for attribute in _TERMINALS[name]:
            if hasattr(constants.TerminalConfiguration, attribute):
                return getattr(constants.TerminalConfiguration, attribute)
        raise DaqError(f"nidaqmx: this version has no terminal configuration {name!r}")

    def start_ai(self) -> None:
        if self.ai_task is not None:
            self.ai_task.start()

    def write(self, index: int, volts: float) -> float:
        self.ao_values[index] = volts
        try:
            self._ao_writer.write_one_sample(self.ao_values, timeout=1.0)
        except Exception as exc:
            raise self._translate(exc, f"writing {self.plan.ao[index].physical}") from exc
        return clock.now()

    def write_zero_fresh(self, index: int) -> float:
        """0 V through a new task, for when the main output task has failed."""
        channel = self.plan.ao[index]
        try:
            with self.nidaqmx.Task() as task:
                task.ao_channels.add_ao_voltage_chan(channel.physical, min_val=channel.min_volts, max_val=channel.max_volts)
                task.write(0.0, auto_start=True)
        except Exception as exc:
            raise self._translate(exc, f"zeroing {channel.physical}") from exc
        self.ao_values[index] = 0.0
        return clock.now()

    def read_block(self, out: np.ndarray, timeout_s: float) -> None:
        self._ai_reader.read_many_sample(out, number_of_samples_per_channel=out.shape[1], timeout=timeout_s)

    def close(self) -> None:
        for task in (self.ai_task, self.ao_task):
            if task is not None:
                try:
                    task.close()
                except Exception:  # closing is best effort; the outputs were zeroed before this
                    log.warning("nidaqmx: closing a task failed", exc_info=True)
        self.ai_task = self.ao_task = None


class NidaqDaq(Daq):
    def __init__(self, device: DaqDevice, ai_rate_hz: float = 2000.0, ai_buffer_s: float = 600.0, ai_read_ms: float = 5.0):
        super().__init__(device, ai_rate_hz, ai_buffer_s)
        self.name = f"nidaqmx:{device.device}"
        self.plan = plan_tasks(device, ai_rate_hz, ai_read_ms, ai_buffer_s)
        self._driver: _NidaqDriver | None = None
        self._ring = AiRing(len(self.plan.ai), self.plan.ai_ring_samples)
        self._clock: DeviceClock | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._ai_failure: str | None = None

    @classmethod
    def from_config(cls, config) -> "NidaqDaq":
        return cls(config.device, config.ai_rate_hz, config.ai_buffer_s, config.ai_read_ms)

    def _open_hardware(self) -> None:
        driver = _NidaqDriver(self.plan)
        driver.open()
        self._driver = driver
        self.ai_rate_hz = driver.actual_ai_rate_hz
        self._clock = DeviceClock(self.ai_rate_hz)
        if self.plan.ai:
            driver.start_ai()
            self._reader = threading.Thread(target=self._read_inputs, name="nidaq-ai", daemon=True)
            self._reader.start()

    def _read_inputs(self) -> None:
        assert self._driver is not None and self._clock is not None
        block = np.zeros((len(self.plan.ai), self.plan.ai_read_block), np.float64)
        timeout = max(1.0, 10 * self.plan.ai_read_block / self.ai_rate_hz)
        try:
            while not self._stop.is_set():
                self._driver.read_block(block, timeout)
                t_after = clock.now()
                self._ring.append(block)
                self._clock.observe_upper_bound(self._ring.end - 1, t_after)
        except Exception as exc:
            if not self._stop.is_set():
                self._ai_failure = f"{self.name}: analog input stopped: {_first_line(exc)}"

    def _write_hardware(self, channel: str, volts: float) -> float:
        assert self._driver is not None
        return self._driver.write(self.ao_channels.index(channel), volts)

    def _write_zero_hardware(self, channel: str) -> float:
        assert self._driver is not None
        index = self.ao_channels.index(channel)
        try:
            return self._driver.write(index, 0.0)
        except DaqError:
            return self._driver.write_zero_fresh(index)

    def _close_hardware(self) -> None:
        # The reader's reads return every ai_read_ms; let it finish before its task goes away.
        self._stop.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        if self._driver is not None:
            self._driver.close()

    def _check_inputs(self) -> None:
        if self._ai_failure:
            raise DaqError(self._ai_failure)
        if self._clock is None or not self._clock.ready:
            raise DaqError(f"{self.name}: no analog input samples yet")

    def _ai_span(self) -> tuple[int, int]:
        if self._ai_failure:
            raise DaqError(self._ai_failure)
        return self._ring.first, self._ring.end

    def _ai_samples(self, start: int, stop: int) -> np.ndarray:
        return self._ring.read(start, stop)

    def _ai_times(self, samples: np.ndarray) -> np.ndarray:
        self._check_inputs()
        return np.asarray(self._clock.to_host(np.asarray(samples)), np.float64)

    def _ai_sample_at(self, t: float) -> float:
        self._check_inputs()
        return self._clock.to_ticks(t)
