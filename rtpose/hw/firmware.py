"""Device files in ``firmware_configs/``: what is cabled where, and how a camera is set up.

These describe one physical rig and change when the rig changes, not per experiment, so
they live apart from protocol files. Each file says which ``kind`` it is, so that a camera
file given where a DAQ file belongs fails with a clear message instead of a wall of
missing keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from rtpose.config import ConfigError, StrictModel, load_tree, validate

__all__ = ["AiChannel", "AoChannel", "DaqDevice", "SpinnakerDevice", "StrictModel", "load_device_file"]

CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# A camera's serial number is digits, and YAML reads digits as an int: keep it as text.
SerialNumber = Annotated[str | None, BeforeValidator(lambda value: str(value) if isinstance(value, int) else value)]


def _check_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not low < high:
        raise ValueError(f"range_volts must be [low, high] with low < high, got [{low}, {high}]")
    return value


class AoChannel(StrictModel):
    channel: str = Field(min_length=1)  # physical channel on the device, e.g. ao0
    range_volts: tuple[float, float]
    description: str = ""

    @field_validator("range_volts")
    @classmethod
    def _range_holds_zero(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = _check_range(value)
        if not low <= 0.0 <= high:
            # zero_all() must be able to write 0 V on every output: that is the safe state.
            raise ValueError(f"range_volts [{low}, {high}] must include 0 V, the safe state every exit writes")
        return value


class AiChannel(StrictModel):
    channel: str = Field(min_length=1)  # physical channel on the device, e.g. ai1
    range_volts: tuple[float, float] = (-10.0, 10.0)
    terminal: Literal["default", "rse", "nrse", "diff", "pseudo_diff"] = "default"
    description: str = ""

    @field_validator("range_volts")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _check_range(value)


class DaqDevice(StrictModel):
    """A DAQ's channel map: our channel names -> physical channels, ranges and loopback cables."""

    kind: Literal["daq"]
    model: str
    device: str = Field(min_length=1)  # NI MAX device name (Dev1); physical channels are device/channel
    max_ai_aggregate_rate_hz: float | None = Field(None, gt=0)  # all AI channels together (multiplexed ADC)
    ao: dict[str, AoChannel] = Field(min_length=1)
    ai: dict[str, AiChannel] = Field(default_factory=dict)
    loopback: dict[str, str] = Field(default_factory=dict)  # AI name -> the AO name cabled to it

    @model_validator(mode="after")
    def _consistent(self) -> "DaqDevice":
        for name in [*self.ao, *self.ai]:
            if not CHANNEL_NAME.match(name):
                raise ValueError(f"channel name {name!r} must be lower_case_with_underscores")
        both = set(self.ao) & set(self.ai)
        if both:
            raise ValueError(f"names used for both an output and an input: {', '.join(sorted(both))}")
        physical = [c.channel for c in [*self.ao.values(), *self.ai.values()]]
        repeated = sorted({p for p in physical if physical.count(p) > 1})
        if repeated:
            raise ValueError(f"physical channels used twice: {', '.join(repeated)}")
        for ai_name, ao_name in self.loopback.items():
            if ai_name not in self.ai:
                raise ValueError(f"loopback: {ai_name!r} is not an input; inputs are {', '.join(self.ai) or 'none'}")
            if ao_name not in self.ao:
                raise ValueError(f"loopback: {ai_name} is cabled to {ao_name!r}, which is not an output; outputs are {', '.join(self.ao)}")
        return self

    def physical(self, name: str) -> str:
        """``Dev1/ao0`` for a channel name."""
        entry = self.ao.get(name) or self.ai[name]
        return f"{self.device}/{entry.channel}"


class SensorSize(StrictModel):
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class Roi(StrictModel):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    offset_x: int = Field(0, ge=0)
    offset_y: int = Field(0, ge=0)


class TriggerSettings(StrictModel):
    """Free-run lets the camera time itself; hardware waits for an edge on ``source`` per frame."""

    mode: Literal["free_run", "hardware"] = "free_run"
    source: Literal["Line0", "Line1", "Line2", "Line3"] = "Line0"
    activation: Literal["rising_edge", "falling_edge"] = "rising_edge"
    overlap: Literal["off", "read_out"] = "read_out"  # read_out: expose the next frame during readout (needed near max fps)


class StreamSettings(StrictModel):
    # newest_only: a late reader gets the latest frame, never a queue of stale ones (closed loop).
    buffer_handling: Literal["newest_only", "newest_first", "oldest_first", "oldest_first_overwrite"] = "newest_only"
    buffer_count: int = Field(3, ge=1, le=1000)


class TimestampSettings(StrictModel):
    """How a frame's exposure time on the host clock is obtained (see spinnaker.py)."""

    source: Literal["chunk", "arrival"] = "chunk"
    # Which instant the camera latches into the ImageTimestamp chunk; FLIR does not document
    # it per model. The loopback calibration with an LED in view settles it on a given rig.
    chunk_marks: Literal["exposure_start", "exposure_end"] = "exposure_start"
    sync_interval_s: float = Field(10.0, gt=0, le=3600)  # re-latch the camera clock against the host clock
    readout_ms: float = Field(0.0, ge=0, le=1000)  # arrival mode: readout + transfer time after the exposure ends


class SpinnakerDevice(StrictModel):
    """A FLIR camera's settings, applied through GenICam nodes at open."""

    kind: Literal["camera"]
    backend: Literal["spinnaker"]
    model: str
    serial: SerialNumber = None  # None: the first camera found
    sensor: SensorSize
    pixel_format: Literal["Mono8"] = "Mono8"
    roi: Roi
    frame_rate_hz: float = Field(gt=0, le=2000)
    exposure_us: float = Field(gt=0, le=10_000_000)
    gain_db: float = Field(0.0, ge=0, le=48)
    trigger: TriggerSettings = TriggerSettings()
    stream: StreamSettings = StreamSettings()
    timestamps: TimestampSettings = TimestampSettings()

    @model_validator(mode="after")
    def _fits(self) -> "SpinnakerDevice":
        roi, sensor = self.roi, self.sensor
        if roi.offset_x + roi.width > sensor.width or roi.offset_y + roi.height > sensor.height:
            raise ValueError(
                f"roi {roi.width}x{roi.height} at ({roi.offset_x}, {roi.offset_y}) does not fit the "
                f"{sensor.width}x{sensor.height} sensor"
            )
        period_us = 1e6 / self.frame_rate_hz
        if self.exposure_us >= period_us:
            raise ValueError(
                f"exposure_us {self.exposure_us:g} does not fit in the frame period of {period_us:.0f} us "
                f"at {self.frame_rate_hz:g} FPS"
            )
        return self


Device = TypeVar("Device", bound=BaseModel)


def load_device_file(path: str | Path, model: type[Device]) -> Device:
    """Read and validate one device file.

    Args:
        path: The YAML file.
        model: ``DaqDevice`` or ``SpinnakerDevice``; the file's ``kind`` must be the model's.

    Raises:
        ConfigError: One line naming the file, the key's line and the key
            (``sim_daq.yaml:7: ao.opto_led.range_volts: ...``).
    """
    data, lines = load_tree(path, what="device file")
    expected_kind = model.model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]
    if data.get("kind") != expected_kind:
        line = f":{lines[('kind',)]}" if ("kind",) in lines else ""
        raise ConfigError(f"{path}{line}: kind is {data.get('kind')!r}, but a {expected_kind} device file is needed here")
    return validate(model, data, path, lines)
