"""The one owner of the DAQ's analog outputs during a run.

Three things write volts: each processed frame's decision, a pulse's off edge (which
must come on time even while the engine is busy with the next frame, or a 25 ms pulse
lasts as long as an inference), and the final 0 V. They all go through ``OutputStage``
and its lock, in one order, and once ``close`` has written 0 V nothing else can write.

The off edges come from a small timer thread that sleeps until
``TriggerProgram.next_deadline``; the program itself is only touched under the lock,
since it is not thread-safe.
"""

from __future__ import annotations

import threading
from typing import Callable

from rtpose import clock
from rtpose.hw.daq import Daq
from rtpose.live.records import LatencyHistogram, OutputEvent
from rtpose.poses import Poses
from rtpose.rules import FrameDecision, PulseOutput, TriggerProgram


class OutputsClosed(Exception):
    """The run is stopping: the outputs are at 0 V and take no more decisions."""


class OutputStage:
    """Decisions -> DAQ writes of changed channels only; pulse off edges on time; 0 V on close."""

    def __init__(self, program: TriggerProgram, daq: Daq | None,
                 on_event: Callable[[OutputEvent], None] = lambda event: None,
                 on_error: Callable[[BaseException], None] = lambda exc: None):
        self.program = program
        self.daq = daq
        self._on_event = on_event
        self._on_error = on_error
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._deadline: float | None = None
        self._channel_of = dict(program.channels)  # output name -> DAQ channel
        self._last = {channel: 0.0 for channel in self._channel_of.values()}  # the DAQ opens at 0 V
        self._pulse_outputs = {o.name: o for o in program.outputs if isinstance(o, PulseOutput)}
        self._pulse_on_since: dict[str, float] = {}
        self.pulse_widths = {name: LatencyHistogram() for name in self._pulse_outputs}
        self.off_edge_late = LatencyHistogram()  # off-edge write time - its deadline
        self.writes = 0
        self.zeroed_at: float | None = None
        self._timer: threading.Thread | None = None
        if daq is not None and self._channel_of:
            self._timer = threading.Thread(target=self._run_timer, name="rtpose-output-timer", daemon=True)
            self._timer.start()

    # -- per frame -----------------------------------------------------------------------

    def decide(self, poses: Poses, frame_time: float) -> tuple[FrameDecision, float, dict[str, float]]:
        """Run the rules on one frame and write what changed; (decision, output time, written)."""
        with self._lock:
            if self._closed:
                raise OutputsClosed()
            t = clock.now()
            decision = self.program.step(t, poses, frame_time)
            written, t_output = self._write(decision.volts)
            if self._timer is not None:
                deadline = self.program.next_deadline(t_output)
                if deadline != self._deadline:
                    self._deadline = deadline
                    self._wake.notify()
        return decision, t_output, written

    def _write(self, volts_by_output: dict[str, float], deadline: float | None = None) -> tuple[dict[str, float], float]:
        """Write the outputs whose volts changed (lock held); returns them and the time after the last write."""
        written: dict[str, float] = {}
        t_output = None
        if self.daq is not None:
            for name, volts in volts_by_output.items():
                channel = self._channel_of[name]
                if volts == self._last[channel]:
                    continue
                t_output = self.daq.write(channel, volts)
                self._last[channel] = volts
                written[channel] = volts
                self.writes += 1
                if name in self._pulse_outputs:
                    self._time_pulse(name, volts, t_output, deadline)
        return written, (clock.now() if t_output is None else t_output)

    def _time_pulse(self, name: str, volts: float, t: float, deadline: float | None) -> None:
        if volts != 0.0:
            if name not in self._pulse_on_since:  # an on edge: the pulse counts from its write
                self._pulse_on_since[name] = t
                self._pulse_outputs[name].started_at(t)
            return
        start = self._pulse_on_since.pop(name, None)
        if start is not None:
            self.pulse_widths[name].add(t - start)
        if deadline is not None:
            self.off_edge_late.add(max(0.0, t - deadline))

    # -- between frames ------------------------------------------------------------------

    def _run_timer(self) -> None:
        try:
            with self._lock:
                while not self._closed:
                    deadline = self._deadline
                    if deadline is None:
                        self._wake.wait(0.5)
                        continue
                    remaining = deadline - clock.now()
                    if remaining > 0:
                        self._wake.wait(remaining)
                        continue
                    now = clock.now()
                    written, t = self._write(self.program.volts_at(now), deadline)
                    self._deadline = self.program.next_deadline(now)
                    if written:
                        self._on_event(OutputEvent(t, written, "deadline", deadline))
        except BaseException as exc:  # a DAQ that fails mid-run: stop the run (which zeroes)
            self._on_error(exc)

    # -- the end -------------------------------------------------------------------------

    def close(self) -> dict[str, float]:
        """0 V on every analog output of the DAQ, and no more writes; returns the outputs' volts after.

        Safe to call from any thread (not a signal handler), more than once. Zeroes even
        channels no output drives, as every exit path must.
        """
        with self._lock:
            first = not self._closed
            self._closed = True
            self._deadline = None
            self._wake.notify_all()
            if self.daq is not None and self.daq.is_open:
                try:
                    self.daq.zero_all()
                finally:
                    self.zeroed_at = clock.now()
                    if first:
                        changed = {ch: 0.0 for ch, v in self._last.items() if v != 0.0}
                        self._last = {ch: 0.0 for ch in self._last}
                        self._pulse_on_since.clear()  # a pulse cut short is not a pulse width
                        if changed:
                            self._on_event(OutputEvent(self.zeroed_at, changed, "shutdown"))
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=2.0)
        return self.final_volts()

    def final_volts(self) -> dict[str, float]:
        """What the DAQ last put on each analog output (all of them, not only the protocol's)."""
        if self.daq is None:
            return {}
        return self.daq.ao_values()

    @property
    def closed(self) -> bool:
        return self._closed
