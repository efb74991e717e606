"""OutputStage on the simulated DAQ: pulse timing holds on the wire, not only in the decision."""

from __future__ import annotations

import time

import numpy as np

from rtpose import clock
from rtpose.hw import open_daq
from rtpose.live.outputs import OutputStage
from rtpose.poses import Poses
from rtpose.rules import TriggerProgram, TriggerSections

PX_PER_MM = 30.3


def always_pulsing(duration_ms: float, refractory_ms: float) -> TriggerProgram:
    sections = TriggerSections.model_validate({
        "rules": {"always": "1 > 0"},
        "outputs": {"led": {"channel": "opto_led", "pulse": {
            "rule": "always", "volts": 5.0, "duration_ms": duration_ms, "refractory_ms": refractory_ms}}},
    })
    return TriggerProgram(sections, ["head"], ["female", "male"], PX_PER_MM)


def test_on_edges_keep_the_refractory_period_and_pulses_their_width_on_the_wire():
    """The time from a decision to its write varies (the rules' own work, a preemption, a
    card's write); pulses count from the on edge's write, so no two on edges on the DAQ are
    closer than the refractory period and no pulse is short. Here every other pulse's on
    edge takes 4 ms to write and the others none, with a frame every millisecond."""
    daq = open_daq({"backend": "sim", "write_ms": 0.0})
    program = always_pulsing(duration_ms=10, refractory_ms=20)
    led = program.outputs[0]
    stage = OutputStage(program, daq)
    try:
        end = clock.now() + 0.4
        while clock.now() < end:
            daq.write_s = 0.004 if led.pulse_count % 2 == 0 else 0.0  # the next pulse's write: slow, fast, ...
            stage.decide(Poses.empty(2, 1), clock.now())
            time.sleep(0.001)
    finally:
        stage.close()
        daq.close()
    t, volts = daq.ao_history("opto_led")
    on = t[1:][(volts[1:] == 5.0) & (volts[:-1] == 0.0)]
    off = t[1:][(volts[1:] == 0.0) & (volts[:-1] == 5.0)]
    widths = off[: len(on)] - on[: len(off)]
    assert len(on) >= 5 and len(widths) >= len(on) - 1
    assert np.all(np.diff(on) >= 0.020), np.diff(on)
    assert np.all(widths[:-1] >= 0.010), widths  # the last may be cut by the closing 0 V
    assert stage.pulse_widths["led"].count >= len(on) - 1
