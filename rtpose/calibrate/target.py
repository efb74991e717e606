"""What a protocol must have to be calibrated, checked before anything opens.

The calibration needs one output that *follows* a feature (a continuous voltage, not a
pulse) on a DAQ channel that the device file says is cabled back to an analog input,
sampled at 1 kHz or faster, and a per-frame recording to read the timestamps and poses
from. Each missing piece is one line naming it, like any other protocol error.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from rtpose.errors import RtposeError
from rtpose.live.protocol import LoadedProtocol
from rtpose.rules import FollowConfig

MIN_AI_RATE_HZ = 1000.0


@attrs.frozen
class CalibrationTarget:
    """The looped-back output the calibration measures."""

    output: str  # the protocol's output name
    channel: str  # the DAQ analog output it drives
    loopback_input: str  # the DAQ analog input cabled back from that output
    feature: str
    follow: FollowConfig
    ai_rate_hz: float


def calibration_target(loaded: LoadedProtocol, duration_s: float | None = None) -> CalibrationTarget:
    """The follow output on a looped-back channel; ``RtposeError`` naming what is missing."""
    protocol, where = loaded.protocol, loaded.path
    follows = {name: o for name, o in protocol.outputs.items() if o.follow is not None}
    if not follows:
        raise RtposeError(f"{where}: outputs: the calibration needs an output that follows a feature "
                          "(e.g. follow: {feature: thorax_distance, from: [0, 20], to: [1, 5]}); this protocol has "
                          + ("only pulse outputs" if protocol.outputs else "no outputs"))
    if protocol.daq is None:  # the protocol check already refuses outputs without a DAQ; kept for clarity
        raise RtposeError(f"{where}: daq: the calibration needs a DAQ section")
    device = protocol.daq.device
    cabled_back = {ao: ai for ai, ao in device.loopback.items()}
    looped = {name: o for name, o in follows.items() if o.channel in cabled_back}
    device_file = Path(protocol.daq.device_file).name
    if not looped:
        name, output = next(iter(follows.items()))
        raise RtposeError(f"{where}: outputs.{name}.channel: no analog input is cabled back from "
                          f"'{output.channel}' in {device_file} (add it under 'loopback:', e.g. "
                          f"calibration_loopback: {output.channel})")
    if len(looped) > 1:
        raise RtposeError(f"{where}: outputs: {' and '.join(looped)} both follow a feature on a looped-back "
                          "channel; keep one, so the calibration knows which trace to align")
    name, output = next(iter(looped.items()))
    rate = float(protocol.daq.ai_rate_hz)
    if rate < MIN_AI_RATE_HZ:
        raise RtposeError(f"{where}: daq.ai_rate_hz: {rate:g} Hz is too slow for a latency calibration "
                          f"(needs >= {MIN_AI_RATE_HZ:g} Hz)")
    duration = protocol.duration if duration_s is None else duration_s
    if duration is not None and duration + 1.0 > protocol.daq.ai_buffer_s:
        raise RtposeError(f"{where}: daq.ai_buffer_s: {protocol.daq.ai_buffer_s:g} s of analog input is kept but "
                          f"the run lasts {duration:g} s; raise ai_buffer_s above the duration")
    return CalibrationTarget(name, output.channel, cabled_back[output.channel], output.follow.feature,
                             output.follow, rate)
