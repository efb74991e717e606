"""Loopback latency calibration, the way the SLEAP paper measured its closed loop.

The daemon writes a continuous feature (e.g. the thorax-thorax distance mapped to 1-5 V)
on an analog output that is cabled (or simulated) back to an analog input sampled on the
camera's clock. Offline, the same feature is recomputed from the recorded poses and
placed at each frame's exposure. On non-overlapping 1 s segments the lag that best
aligns the two (cross-correlation, refined between samples) is that segment's
exposure-to-analog-input latency. ``rtpose calibrate`` runs it all; from Python::

    from rtpose.calibrate import prepare, run_and_analyse
    loaded, target, settings, _ = prepare("experiments/latency_calibration.yaml", ["daq.loopback_delay_ms=13.7"])
    result, calibration = run_and_analyse(loaded, target, settings)
    calibration.system_s(), calibration.daq_s()      # per usable segment, seconds
    calibration.changes.delays_s                     # DAQ + cable, every change of the output timed

Modules: ``target`` (what a protocol needs), ``traces`` (online, offline and software
traces on the input's sample grid; segments), ``align`` (one segment's lag), ``edges``
(the DAQ and cable alone, every change of the output timed), ``analysis`` (figures),
``report`` (JSON, PNG, words), ``session`` (check, run, align), ``command``. No torch.
"""

from rtpose.calibrate.align import AlignmentSettings, SegmentAlignment, align_segment, correlation_by_lag
from rtpose.calibrate.analysis import Calibration, analyse, expected_sim_delay_ms
from rtpose.calibrate.session import prepare, run_and_analyse
from rtpose.calibrate.target import CalibrationTarget, calibration_target

__all__ = [
    "AlignmentSettings", "Calibration", "CalibrationTarget", "SegmentAlignment", "align_segment", "analyse",
    "calibration_target", "correlation_by_lag", "expected_sim_delay_ms", "prepare", "run_and_analyse",
]
