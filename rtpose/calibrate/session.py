"""One calibration from Python: check the protocol, run the daemon, align (no printing, no files).

``--set calibration.KEY=VALUE`` changes an alignment setting (``segment_s``,
``max_lag_ms``, ``min_lag_ms``, ``smoothing_ms``, ``min_swing_volts``,
``min_correlation``, ``min_segments``); every other override goes to the protocol. The
recorder is always switched on, since the calibration reads the per-frame record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import attrs
import yaml

from rtpose.calibrate.align import AlignmentSettings
from rtpose.calibrate.analysis import Calibration, analyse
from rtpose.calibrate.target import CalibrationTarget, calibration_target
from rtpose.errors import RtposeError
from rtpose.live import Daemon, LoadedProtocol, RunResult, load_protocol, read_recording

SETTINGS_PREFIX = "calibration."


def split_overrides(overrides: Iterable[str]) -> tuple[AlignmentSettings, list[str]]:
    """(alignment settings from ``calibration.*`` keys, the protocol's overrides)."""
    changes: dict[str, Any] = {}
    protocol: list[str] = []
    fields = {f.name for f in attrs.fields(AlignmentSettings)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not key.strip().startswith(SETTINGS_PREFIX):
            protocol.append(item)
            continue
        name = key.strip()[len(SETTINGS_PREFIX):]
        if not sep or name not in fields:
            raise RtposeError(f"--set {item!r}: expected calibration.KEY=VALUE with KEY one of "
                              f"{', '.join(sorted(fields))}")
        value = yaml.safe_load(raw)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RtposeError(f"--set {item!r}: {name} takes a number")
        changes[name] = int(value) if name == "min_segments" else float(value)
    try:
        return AlignmentSettings(**changes), protocol
    except ValueError as exc:
        raise RtposeError(f"--set calibration.*: {exc}") from None


def prepare(protocol_path: str | Path, overrides: Iterable[str] = (),
            duration: float | None = None) -> tuple[LoadedProtocol, CalibrationTarget, AlignmentSettings, list[str]]:
    """Everything checked, nothing opened: (protocol, its calibration target, settings, protocol overrides)."""
    settings, protocol_overrides = split_overrides(overrides)
    loaded = load_protocol(protocol_path, [*protocol_overrides, "recorder.enabled=true"], duration)
    target = calibration_target(loaded)
    return loaded, target, settings, protocol_overrides


def run_and_analyse(loaded: LoadedProtocol, target: CalibrationTarget, settings: AlignmentSettings,
                    **daemon_options) -> tuple[RunResult, Calibration | None]:
    """Run the daemon with the analog input captured, then align; no calibration if the run failed."""
    result = Daemon(loaded, capture_ai=True, **daemon_options).run()
    if result.error is not None or result.recording is None:
        return result, None
    if result.ai_trace is None:
        raise RtposeError("the run captured no analog input (did the DAQ open?)")
    recording = read_recording(result.recording)
    return result, analyse(recording, result.ai_trace, target, settings)
