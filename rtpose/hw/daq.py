"""What the daemon and the calibration see of a DAQ: named analog outputs and inputs.

Safety lives here, once, for every backend: writes are clipped to each channel's range
(and counted), a non-finite voltage is refused, ``zero_all`` puts 0 V on every output and
may be called at any time and as often as wanted, and ``close`` zeroes before it lets go
of the device, after which nothing can be written. All of this holds one lock, so a
write racing a shutdown either happens before the zeroing or is refused after it. (Do
not call these from a signal handler: set a flag there and zero from a thread.)

Analog input is a regular grid of samples on the monotonic clock: sample k of the
acquisition was taken at ``t(k)``; ``read_ai(t_start, t_end)`` returns those in a span,
``ai_stream()`` returns what is new since the last call. Only the last ``ai_buffer_s``
seconds are kept, so a run of hours has bounded memory.
"""

from __future__ import annotations

import abc
import logging
import math
import threading

import attrs
import numpy as np

from rtpose.hw.errors import DaqError
from rtpose.hw.firmware import DaqDevice

log = logging.getLogger(__name__)

# A time that falls on a sample, give or take float rounding: (t - t0) * rate loses ~1e-8
# samples when t and t0 are large monotonic readings, far more than one ulp of the product.
_SAMPLE_EPS = 1e-6


@attrs.frozen
class AiTrace:
    """Analog input samples over a span: ``t[i]`` is when ``volts[name][i]`` was sampled."""

    t: np.ndarray  # (n,) float64, monotonic seconds
    volts: dict[str, np.ndarray]  # AI channel name -> (n,) float64
    first_sample: int  # acquisition sample number of t[0]
    rate_hz: float

    def __len__(self) -> int:
        return len(self.t)


class AoLog:
    """The last ``capacity`` analog-output writes with their times, in a fixed-size ring."""

    def __init__(self, channels: tuple[str, ...], capacity: int):
        self.channels = channels
        self.capacity = capacity
        self._t = np.zeros(capacity, np.float64)
        self._volts = np.zeros(capacity, np.float64)
        self._channel = np.zeros(capacity, np.int16)
        self.count = 0  # every write ever logged

    def append(self, t: float, channel: int, volts: float) -> None:
        """Log one write: ``rtpose.clock`` seconds, channel index, volts written (overwrites the oldest when full)."""
        slot = self.count % self.capacity
        self._t[slot], self._channel[slot], self._volts[slot] = t, channel, volts
        self.count += 1

    def history(self, channel: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(t, volts) of the kept writes, oldest first; of one channel, or of all interleaved."""
        n = min(self.count, self.capacity)
        order = (np.arange(self.count - n, self.count)) % self.capacity
        t, volts = self._t[order], self._volts[order]
        if channel is not None:
            mask = self._channel[order] == self.channels.index(channel)
            t, volts = t[mask], volts[mask]
        return t.copy(), volts.copy()


class Daq(abc.ABC):
    """A DAQ with the channels of one device file. Backends implement the ``_hardware`` hooks."""

    name: str = ""

    def __init__(self, device: DaqDevice, ai_rate_hz: float, ai_buffer_s: float, ao_log_capacity: int = 1 << 20):
        self.device = device
        self.ai_rate_hz = float(ai_rate_hz)
        self.ai_buffer_s = float(ai_buffer_s)
        self.ao_channels: tuple[str, ...] = tuple(device.ao)
        self.ai_channels: tuple[str, ...] = tuple(device.ai)
        self.loopback: dict[str, str] = dict(device.loopback)  # AI name -> AO name cabled to it
        self._lock = threading.RLock()
        self._is_open = False
        self._closed = False
        self._ao_values = {name: 0.0 for name in self.ao_channels}
        self._clip_counts = {name: 0 for name in self.ao_channels}
        self._ao_log = AoLog(self.ao_channels, ao_log_capacity)

    # -- hooks --------------------------------------------------------------------------

    @abc.abstractmethod
    def _open_hardware(self) -> None: ...

    @abc.abstractmethod
    def _close_hardware(self) -> None:
        """Release the device; outputs are already at 0 V (or zeroing failed and was reported)."""

    @abc.abstractmethod
    def _write_hardware(self, channel: str, volts: float) -> float:
        """Put ``volts`` on ``channel`` now; return ``clock.now()`` taken right after."""

    def _write_zero_hardware(self, channel: str) -> float:
        """0 V on one output; backends may try harder here than in a normal write."""
        return self._write_hardware(channel, 0.0)

    @abc.abstractmethod
    def _ai_span(self) -> tuple[int, int]:
        """(first sample still kept, one past the newest sample acquired)."""

    @abc.abstractmethod
    def _ai_samples(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` of every AI channel, shape (n_ai, stop - start)."""

    @abc.abstractmethod
    def _ai_times(self, samples: np.ndarray) -> np.ndarray:
        """Monotonic time of each sample number."""

    @abc.abstractmethod
    def _ai_sample_at(self, t: float) -> float:
        """The fractional sample number at monotonic time ``t`` (inverse of ``_ai_times``)."""

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Opened and not yet closed: writes are accepted."""
        return self._is_open and not self._closed

    def open(self) -> None:
        """Claim the device and start analog input; outputs start at 0 V. Opening twice is a no-op."""
        with self._lock:
            if self._closed:
                raise DaqError(f"{self.name}: a closed DAQ cannot be reopened; make a new one")
            if self._is_open:
                return
            self._open_hardware()
            self._is_open = True
            self.zero_all()

    def close(self) -> None:
        """0 V on every output, then release the device. Safe to call twice, after errors, from any thread."""
        with self._lock:
            if self._closed:
                return
            try:
                self.zero_all()
            finally:
                self._closed = True
                if self._is_open:
                    self._close_hardware()

    def __enter__(self) -> "Daq":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- outputs ------------------------------------------------------------------------

    def ao_range(self, channel: str) -> tuple[float, float]:
        """``(low, high)`` volts of an output channel, from the device file.

        Raises:
            DaqError: ``channel`` is not an analog output of the device file.
        """
        self._check_output(channel)
        return self.device.ao[channel].range_volts

    def _check_output(self, channel: str) -> None:
        if channel not in self.device.ao:
            raise DaqError(f"{self.name}: no analog output {channel!r}; outputs are {', '.join(self.ao_channels)}")

    def write(self, channel: str, volts: float) -> float:
        """Set one output; returns the monotonic time right after the device took the value.

        Voltages outside the channel's ``range_volts`` are clipped to it and counted in
        ``clip_counts`` (a feature mapped past its range saturates instead of stopping the
        experiment); NaN or infinity is refused, since no value can be guessed for it.
        """
        self._check_output(channel)
        volts = float(volts)
        if not math.isfinite(volts):
            raise DaqError(f"{self.name}: refusing to write {volts} V to {channel}")
        low, high = self.device.ao[channel].range_volts
        with self._lock:
            if not self.is_open:
                raise DaqError(f"{self.name}: write to {channel} on a DAQ that is {'closed' if self._closed else 'not open'}")
            if volts < low or volts > high:
                volts = min(max(volts, low), high)
                self._clip_counts[channel] += 1
            t = self._write_hardware(channel, volts)
            self._record(channel, volts, t)
        return t

    def _record(self, channel: str, volts: float, t: float) -> None:
        self._ao_values[channel] = volts
        self._ao_log.append(t, self.ao_channels.index(channel), volts)

    def zero_all(self) -> None:
        """0 V on every output. Tries every channel even if one fails, then reports the failures.

        Before ``open`` nothing has been written and after ``close`` the outputs were
        zeroed, so then it does nothing.
        """
        with self._lock:
            if not self.is_open:
                return
            failures = []
            for channel in self.ao_channels:
                try:
                    t = self._write_zero_hardware(channel)
                except Exception as exc:  # keep zeroing the others
                    failures.append(f"{channel}: {exc}")
                    log.error("%s: writing 0 V to %s failed", self.name, channel, exc_info=exc)
                else:
                    self._record(channel, 0.0, t)
            if failures:
                raise DaqError(f"{self.name}: could not write 0 V to {'; '.join(failures)}")

    def ao_values(self) -> dict[str, float]:
        """The last value written to each output (after clipping)."""
        with self._lock:
            return dict(self._ao_values)

    @property
    def clip_counts(self) -> dict[str, int]:
        """Per output channel: writes clipped into its range so far."""
        return dict(self._clip_counts)

    def ao_history(self, channel: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(t, volts) of the recent writes (the last ``ao_log_capacity``), oldest first."""
        if channel is not None:
            self._check_output(channel)
        with self._lock:
            return self._ao_log.history(channel)

    @property
    def ao_write_count(self) -> int:
        """Analog-output writes since open, zeroing included."""
        return self._ao_log.count

    # -- inputs -------------------------------------------------------------------------

    def loopback_input(self, output: str) -> str:
        """The analog input cabled back from ``output`` (per the device file)."""
        self._check_output(output)
        for ai_name, ao_name in self.loopback.items():
            if ao_name == output:
                return ai_name
        raise DaqError(f"{self.name}: no analog input is cabled back from {output} (see 'loopback' in the device file)")

    def ai_time_span(self) -> tuple[float, float]:
        """(time of the oldest kept sample, time of the newest acquired sample); needs at least one sample."""
        first, end = self._ai_span()
        if end <= first:
            raise DaqError(f"{self.name}: no analog input samples yet")
        t = self._ai_times(np.array([first, end - 1]))
        return float(t[0]), float(t[1])

    def read_ai(self, t_start: float, t_end: float) -> AiTrace:
        """Every analog input sample taken in ``[t_start, t_end)`` that has been acquired by now.

        A span older than the ``ai_buffer_s`` kept is an error rather than a silent gap. The
        kept samples stay readable after ``close`` (the calibration may read at the end of a run).
        """
        if not self._is_open:
            raise DaqError(f"{self.name}: read_ai before open")
        first_kept, end = self._ai_span()
        start = max(math.ceil(self._ai_sample_at(t_start) - _SAMPLE_EPS), 0)
        stop = min(math.ceil(self._ai_sample_at(t_end) - _SAMPLE_EPS), end)
        if start < first_kept and stop > start:
            raise DaqError(
                f"{self.name}: analog input before t={float(self._ai_times(np.array([first_kept]))[0]):.3f} s "
                f"is no longer kept (ai_buffer_s={self.ai_buffer_s:g}); read segments as the run goes"
            )
        return self._trace(start, max(stop, start))

    def _trace(self, start: int, stop: int) -> AiTrace:
        samples = np.arange(start, stop, dtype=np.int64)
        data = self._ai_samples(start, stop) if stop > start else np.zeros((len(self.ai_channels), 0))
        return AiTrace(
            t=self._ai_times(samples) if stop > start else np.zeros(0),
            volts={name: data[i] for i, name in enumerate(self.ai_channels)},
            first_sample=start,
            rate_hz=self.ai_rate_hz,
        )

    def ai_stream(self, from_time: float | None = None) -> "AiStream":
        """A reader of new analog input, from ``from_time`` (default: now) onwards."""
        if not self._is_open:
            raise DaqError(f"{self.name}: ai_stream before open")
        if from_time is None:
            start = self._ai_span()[1]
        else:
            start = max(math.ceil(self._ai_sample_at(from_time) - _SAMPLE_EPS), 0)
        return AiStream(self, start)


class AiStream:
    """Hands out each analog input sample once, in order: what arrived since the last ``read``."""

    def __init__(self, daq: Daq, next_sample: int):
        self._daq = daq
        self.next_sample = next_sample

    def read(self) -> AiTrace:
        """The samples acquired since the last ``read`` (possibly none), in order.

        Raises:
            DaqError: The reader fell further behind than the ``ai_buffer_s`` kept.
        """
        first_kept, end = self._daq._ai_span()
        if self.next_sample < first_kept:
            raise DaqError(
                f"{self._daq.name}: analog input reader fell {first_kept - self.next_sample} samples behind "
                f"the {self._daq.ai_buffer_s:g} s buffer"
            )
        stop = max(end, self.next_sample)
        trace = self._daq._trace(self.next_sample, stop)
        self.next_sample = stop
        return trace
