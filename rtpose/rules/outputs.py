"""Output actions as pure state machines: time and rule states in, volts out.

Nothing here touches a device. The daemon calls ``update(t, rule_states, features)`` on
every processed frame and writes the returned volts; between frames it asks
``next_deadline(now)`` for the next time an output changes on its own (a pulse's off
edge) and then writes ``volts_at(deadline)``, so a 25 ms pulse lasts 25 ms even at
30 frames/s. ``safe_volts`` (0 V) is what every exit path writes.

Times are seconds on ``rtpose.clock`` (monotonic). ``t`` should be the time of the
write that follows ``update`` (not the frame's exposure): a pulse's duration and
refractory period count from it, and deadlines are on the same clock. The writer may
then move a new pulse's start to the time its on edge reached the DAQ
(``PulseOutput.started_at``), so both hold on the wire, not only in the decision.
"""

from __future__ import annotations

import math
from typing import Mapping, Protocol

from rtpose.rules.config import FollowConfig, OutputConfig, PulseConfig

SAFE_VOLTS = 0.0


class Output(Protocol):
    """What drives one analog output: a state machine from time and rule states to volts.

    Attributes:
        name: The output's name in the protocol (``outputs.<name>``).
        channel: The DAQ analog output it writes (a name of the device file's ``ao``).
        safe_volts: What every exit path writes (0 V).
    """

    name: str
    channel: str
    safe_volts: float

    def update(self, t: float, rule_states: Mapping[str, bool], features: Mapping[str, float]) -> float:
        """Advance to a processed frame and return the volts to write now.

        Args:
            t: ``rtpose.clock`` seconds of the write that follows (durations count from it).
            rule_states: Every rule's state for this frame (unknown is ``False``).
            features: Every feature's value for this frame (NaN where missing).

        Returns:
            Volts for the output's channel, within the protocol's declared range.
        """
        ...

    def volts_at(self, t: float) -> float:
        """The volts this output holds at ``t`` without a new frame (after the last ``update``)."""
        ...

    def next_deadline(self, now: float) -> float | None:
        """The next ``rtpose.clock`` time after ``now`` at which the volts change on their own, or ``None``."""
        ...

    def reset(self) -> None:
        """Forget all state: no pulse in progress, counters at zero, volts at ``safe_volts``."""
        ...


class PulseOutput:
    """``volts`` for ``duration`` from a start, then 0 V; no new start within ``refractory``.

    A pulse starts at the time of the frame that triggered it. See ``PulseConfig`` for
    ``while_true`` versus ``on_onset``.
    """

    safe_volts = SAFE_VOLTS

    def __init__(self, name: str, channel: str, config: PulseConfig):
        self.name, self.channel = name, channel
        self.rule = config.rule
        self.volts = float(config.volts)
        self.duration_s = config.duration_ms / 1000.0
        self.refractory_s = config.refractory_ms / 1000.0
        self.fire_on_onset = config.fire == "on_onset"
        self.reset()

    def reset(self) -> None:
        """See ``Output.reset``."""
        self.pulse_start: float | None = None
        self.pulse_count = 0
        self._rule_held = False

    def update(self, t: float, rule_states: Mapping[str, bool], features: Mapping[str, float]) -> float:
        """Start a pulse at ``t`` if the rule asks for one and the refractory period is over; see ``Output.update``."""
        holds = bool(rule_states[self.rule])
        wants_pulse = holds and not (self.fire_on_onset and self._rule_held)
        self._rule_held = holds
        if wants_pulse and (self.pulse_start is None or t - self.pulse_start >= self.refractory_s):
            self.pulse_start = t
            self.pulse_count += 1
        return self.volts_at(t)

    def started_at(self, t_wire: float) -> None:
        """The pulse the last ``update`` started reached the DAQ at ``t_wire``: count from there.

        A write takes time after the decision, and not always the same; counting the
        duration and the refractory period from the on edge's write keeps both true on the
        wire (no on edge closer than ``refractory`` to the last, no pulse shorter than
        ``duration``). Earlier times than the decision are ignored.
        """
        if self.pulse_start is not None and t_wire > self.pulse_start:
            self.pulse_start = t_wire

    def volts_at(self, t: float) -> float:
        """``volts`` inside the pulse ``[start, start + duration)``, else 0 V."""
        start = self.pulse_start
        if start is not None and start <= t < start + self.duration_s:
            return self.volts
        return SAFE_VOLTS

    def next_deadline(self, now: float) -> float | None:
        """The end of the pulse in progress at ``now``, if any."""
        start = self.pulse_start
        if start is not None and start <= now < start + self.duration_s:
            return start + self.duration_s
        return None


class FollowOutput:
    """Volts mapped linearly from a feature, clipped; NaN handled per ``FollowConfig.missing``."""

    safe_volts = SAFE_VOLTS

    def __init__(self, name: str, channel: str, config: FollowConfig):
        self.name, self.channel = name, channel
        self.feature = config.feature
        (self.f0, self.f1), (self.v0, self.v1) = config.feature_range, config.volts_range
        self.slope = (self.v1 - self.v0) / (self.f1 - self.f0)
        self.low, self.high = min(self.v0, self.v1), max(self.v0, self.v1)
        self.hold_when_missing = config.missing == "hold"
        self.reset()

    def reset(self) -> None:
        """See ``Output.reset``."""
        self.value = SAFE_VOLTS

    def volts_for(self, feature_value: float) -> float:
        """The mapped, clipped volts for a valid feature value."""
        return min(self.high, max(self.low, self.v0 + (feature_value - self.f0) * self.slope))

    def update(self, t: float, rule_states: Mapping[str, bool], features: Mapping[str, float]) -> float:
        """The feature's mapped volts; a missing feature holds the last value or goes to 0 V (``missing``)."""
        x = features[self.feature]
        if math.isfinite(x):
            self.value = self.volts_for(x)
        elif not self.hold_when_missing:
            self.value = SAFE_VOLTS
        return self.value

    def volts_at(self, t: float) -> float:
        """The value of the last ``update``: a follow output changes only with frames."""
        return self.value

    def next_deadline(self, now: float) -> float | None:
        """Always ``None``: nothing changes between frames."""
        return None


def make_output(name: str, config: OutputConfig) -> Output:
    """The output a validated ``outputs.<name>`` section describes (a pulse or a follow)."""
    if config.pulse is not None:
        return PulseOutput(name, config.channel, config.pulse)
    return FollowOutput(name, config.channel, config.follow)
