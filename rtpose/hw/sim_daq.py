"""The simulated DAQ: analog outputs cabled back to analog inputs through a known delay.

It is a backend, not a mock: the daemon and the calibration run the same code on it as
on an NI card, and its physics are exact so tests can check the latency they measure.

Physics, all on ``rtpose.clock``:

- ``write(ao, v)`` blocks for ``write_ms`` (an on-demand write to a PCIe or USB card
  takes a fraction of a millisecond; 0 by default) and records ``(t, v)`` with ``t``
  taken right after the write (returned).
- An input cabled to that output (``loopback`` in the device file) sees ``v`` from
  ``t + d`` on, held until the next write appears. ``d = max(0, D + j)`` with
  ``D = loopback_delay_ms`` and ``j`` drawn per write from a Gaussian of sd
  ``loopback_jitter_ms``; if that would make a write appear before the previous one on
  the same cable, it appears together with it (edges stay ordered). Inputs start at 0 V.
- Sample k of every input is taken at ``t0 + k / ai_rate_hz`` (``t0`` = when ``open``
  returned) and has independent Gaussian noise of sd ``noise_volts`` added, then is
  limited to the input's range (the ADC saturates). No quantisation.
- Samples are computed when read, from the output history, so there is no sampling
  thread; a sample exists once its time has passed. Jitter and noise come from ``seed``,
  and the noise of sample k is a function of k alone, so reading a span twice gives the
  same numbers.
- Memory: output edges that no kept sample (the last ``ai_buffer_s``) can see any more
  are forgotten.
"""

from __future__ import annotations

import math
import time

import numpy as np

from rtpose import clock
from rtpose.hw.daq import Daq
from rtpose.hw.firmware import DaqDevice

_NOISE_BLOCK = 4096  # samples per independently seeded noise block


class _Edges:
    """One output's writes as seen at the far end of its cable: arrival time and value."""

    def __init__(self) -> None:
        self.arrival = np.zeros(1024, np.float64)
        self.volts = np.zeros(1024, np.float64)
        self.n = 0

    def append(self, arrival: float, volts: float) -> None:
        if self.n == len(self.arrival):
            self.arrival = np.concatenate([self.arrival, np.zeros_like(self.arrival)])
            self.volts = np.concatenate([self.volts, np.zeros_like(self.volts)])
        self.arrival[self.n], self.volts[self.n] = arrival, volts
        self.n += 1

    @property
    def last_arrival(self) -> float:
        return self.arrival[self.n - 1] if self.n else -math.inf

    def forget_before(self, t: float) -> None:
        """Drop edges superseded before ``t``, keeping the one in force at ``t``."""
        in_force = int(np.searchsorted(self.arrival[: self.n], t, side="right")) - 1
        if in_force > 0:
            keep = self.n - in_force
            self.arrival[:keep] = self.arrival[in_force : self.n]
            self.volts[:keep] = self.volts[in_force : self.n]
            self.n = keep

    def values_at(self, t: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.arrival[: self.n], t, side="right") - 1
        return np.where(index >= 0, self.volts[: self.n][np.maximum(index, 0)] if self.n else 0.0, 0.0)


class SimDaq(Daq):
    def __init__(
        self,
        device: DaqDevice,
        ai_rate_hz: float = 2000.0,
        ai_buffer_s: float = 600.0,
        loopback_delay_ms: float = 0.0,
        loopback_jitter_ms: float = 0.0,
        noise_volts: float = 0.0,
        seed: int = 0,
        ao_log_capacity: int = 1 << 20,
        write_ms: float = 0.0,
    ):
        super().__init__(device, ai_rate_hz, ai_buffer_s, ao_log_capacity)
        self.name = f"sim:{device.device}"
        self.loopback_delay_s = loopback_delay_ms / 1000.0
        self.loopback_jitter_s = loopback_jitter_ms / 1000.0
        self.noise_volts = noise_volts
        self.write_s = write_ms / 1000.0
        self.seed = seed
        self._jitter = np.random.default_rng([seed, 0])
        self._edges = {name: _Edges() for name in self.ao_channels}
        self._t0 = 0.0
        self._writes_since_forget = 0
        self._noise_cache: dict[int, np.ndarray] = {}

    @classmethod
    def from_config(cls, config) -> "SimDaq":
        return cls(
            config.device,
            ai_rate_hz=config.ai_rate_hz,
            ai_buffer_s=config.ai_buffer_s,
            loopback_delay_ms=config.loopback_delay_ms,
            loopback_jitter_ms=config.loopback_jitter_ms,
            noise_volts=config.noise_volts,
            seed=config.seed,
            write_ms=config.write_ms,
        )

    @property
    def retained_edges(self) -> int:
        """Output edges still held for the input simulation (bounded by writes per ``ai_buffer_s``)."""
        return sum(edges.n for edges in self._edges.values())

    @property
    def t0(self) -> float:
        """Time of analog input sample 0."""
        return self._t0

    def _open_hardware(self) -> None:
        self._t0 = clock.now()

    def _close_hardware(self) -> None:
        pass

    def _write_hardware(self, channel: str, volts: float) -> float:
        if self.write_s > 0:
            time.sleep(self.write_s)
        t = clock.now()
        delay = self.loopback_delay_s
        if self.loopback_jitter_s > 0:
            delay += self.loopback_jitter_s * float(self._jitter.standard_normal())
        edges = self._edges[channel]
        edges.append(max(t + max(delay, 0.0), edges.last_arrival), volts)
        self._writes_since_forget += 1
        if self._writes_since_forget >= 1024:
            self._writes_since_forget = 0
            oldest_kept = self._t0 + self._ai_span()[0] / self.ai_rate_hz
            for each in self._edges.values():
                each.forget_before(oldest_kept)
        return t

    def _ai_span(self) -> tuple[int, int]:
        end = math.floor((clock.now() - self._t0) * self.ai_rate_hz) + 1
        return max(0, end - math.ceil(self.ai_buffer_s * self.ai_rate_hz)), end

    def _ai_times(self, samples: np.ndarray) -> np.ndarray:
        return self._t0 + np.asarray(samples, np.float64) / self.ai_rate_hz

    def _ai_sample_at(self, t: float) -> float:
        return (t - self._t0) * self.ai_rate_hz

    def _ai_samples(self, start: int, stop: int) -> np.ndarray:
        t = self._ai_times(np.arange(start, stop))
        out = np.zeros((len(self.ai_channels), stop - start), np.float64)
        with self._lock:
            for row, name in enumerate(self.ai_channels):
                source = self.loopback.get(name)
                if source is not None:
                    out[row] = self._edges[source].values_at(t)
        if self.noise_volts > 0:
            out += self.noise_volts * self._noise(start, stop)
        for row, name in enumerate(self.ai_channels):
            low, high = self.device.ai[name].range_volts
            np.clip(out[row], low, high, out=out[row])
        return out

    def _noise(self, start: int, stop: int) -> np.ndarray:
        """Standard normal noise for samples start:stop, a pure function of the sample numbers."""
        blocks = range(start // _NOISE_BLOCK, (stop - 1) // _NOISE_BLOCK + 1)
        parts = []
        for block in blocks:
            cached = self._noise_cache.get(block)
            if cached is None:
                rng = np.random.default_rng([self.seed, 1, block])
                cached = rng.standard_normal((len(self.ai_channels), _NOISE_BLOCK))
                if len(self._noise_cache) >= 8:
                    self._noise_cache.pop(next(iter(self._noise_cache)))
                self._noise_cache[block] = cached
            parts.append(cached)
        joined = np.concatenate(parts, axis=1)
        offset = start - blocks[0] * _NOISE_BLOCK
        return joined[:, offset : offset + (stop - start)]
