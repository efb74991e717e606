"""The ``camera`` and ``daq`` sections of a protocol file.

The daemon's protocol schema embeds ``CameraConfig`` and ``DaqConfig`` as they are.
Everything is checked here, before any hardware opens: unknown keys, ranges, that the
video and the device files exist and are themselves valid. Paths may use environment
variables (``${RTPOSE_DATA}`` defaults to ``rtpose.paths.data_dir()``); a relative device
file is looked up in the working directory, then in the repository, where
``firmware_configs/`` ships.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args

from pydantic import Field, PrivateAttr, TypeAdapter, ValidationError, field_validator, model_validator

from rtpose.config import (ConfigError, StrictModel, describe_errors, expand_vars, misspelt_key_hint, resolve_path,
                           validate)
from rtpose.hw import registry
from rtpose.hw.firmware import DaqDevice, SerialNumber, SpinnakerDevice, load_device_file
from rtpose.data.video import videos_in
from rtpose.paths import no_such_file, some_names

if TYPE_CHECKING:
    from rtpose.hw.camera import Camera
    from rtpose.hw.daq import Daq


def _checked_device_file(text: str, model: type) -> str:
    """Resolve and validate a device file while the protocol is checked; the absolute path is kept."""
    path = resolve_path(text)
    load_device_file(path, model)  # a ConfigError is a ValueError: pydantic files it under device_file
    return str(path)


_FRAME_RANGE = re.compile(r"^\d+(-\d+)?$")


class ReplayCameraConfig(StrictModel):
    """A video file played as if a camera were filming it now."""

    backend: Literal["replay"]
    path: str
    fps: float | None = Field(None, gt=0, le=2000)  # None: the rate the file declares
    frames: str | None = None  # inclusive "START-END" or "INDEX"; None: all
    loop: bool = False
    # Frames held for a reader that falls behind before the oldest is dropped (a camera's
    # driver buffer); the daemon's FrameSlot keeps only the newest anyway.
    buffer_frames: int = Field(4, ge=1, le=1024)
    decode_ahead: int = Field(16, ge=2, le=1024)  # decoded frames waiting for their release time

    @field_validator("path")
    @classmethod
    def _video_exists(cls, value: str) -> str:
        path = expand_vars(value)
        if Path(path).is_dir():
            videos = [p.name for p in videos_in(Path(path))]
            held = f": it holds {some_names(videos, 6)}" if videos else " (it holds no video)"
            raise ValueError(f"{path}: is a folder; camera.path names one video file{held}")
        if not Path(path).is_file():
            raise ValueError(no_such_file(path, "video file"))
        return path

    @field_validator("frames", mode="before")
    @classmethod
    def _frame_range_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not _FRAME_RANGE.match(value.replace(" ", "")):
            raise ValueError(f"frame range {value!r} is not START-END or an index (e.g. 0-1499)")
        return value.replace(" ", "") if isinstance(value, str) else value


class OpenCvCameraConfig(StrictModel):
    """A camera OpenCV can open: a device index (/dev/videoN) or a stream URL."""

    backend: Literal["opencv"]
    device: int | str  # 0 -> /dev/video0; or rtsp://..., http://..., a file path
    fps: float | None = Field(None, gt=0, le=2000)  # requested; the driver may give another
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    buffer_frames: int = Field(2, ge=1, le=1024)
    # OpenCV gives no exposure time; t_exposure = t_arrival - this (default: one frame period).
    exposure_lead_ms: float | None = Field(None, ge=0, le=10_000)

    @field_validator("device")
    @classmethod
    def _device(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("device index must be >= 0")
        if isinstance(value, str):
            if not value:
                raise ValueError("device must be an index or a URL")
            if "://" not in value:
                value = expand_vars(value)
        return value


class SpinnakerCameraConfig(StrictModel):
    """A FLIR camera through PySpin, set up from a firmware file; a few keys may be overridden per protocol."""

    backend: Literal["spinnaker"]
    device_file: str = Field("firmware_configs/flir_blackfly_s.yaml", validate_default=True)
    serial: SerialNumber = None
    fps: float | None = Field(None, gt=0, le=2000)
    exposure_us: float | None = Field(None, gt=0)
    _device: SpinnakerDevice = PrivateAttr()

    @field_validator("device_file")
    @classmethod
    def _device_file(cls, value: str) -> str:
        return _checked_device_file(value, SpinnakerDevice)

    @model_validator(mode="after")
    def _load_device(self) -> "SpinnakerCameraConfig":
        device = load_device_file(self.device_file, SpinnakerDevice)
        overrides = {
            key: value
            for key, value in (("serial", self.serial), ("frame_rate_hz", self.fps), ("exposure_us", self.exposure_us))
            if value is not None
        }
        if overrides:
            try:
                device = SpinnakerDevice.model_validate({**device.model_dump(), **overrides})
            except ValidationError as exc:
                raise ValueError(f"{self.device_file} with this protocol's overrides: "
                                 f"{describe_errors(exc.errors())}") from None
        self._device = device
        return self

    @property
    def device(self) -> SpinnakerDevice:
        """The firmware file's settings with this protocol's overrides applied."""
        return self._device


class _DaqConfigBase(StrictModel):
    device_file: str
    ai_rate_hz: float = Field(2000.0, gt=0, le=2_000_000)
    # Seconds of analog input kept for read_ai; memory stays bounded on runs of hours.
    ai_buffer_s: float = Field(600.0, gt=0, le=86_400)
    _device: DaqDevice = PrivateAttr()

    @field_validator("device_file")
    @classmethod
    def _device_file(cls, value: str) -> str:
        return _checked_device_file(value, DaqDevice)

    @model_validator(mode="after")
    def _load_device(self) -> "_DaqConfigBase":
        self._device = load_device_file(self.device_file, DaqDevice)
        limit = self._device.max_ai_aggregate_rate_hz
        n_inputs = len(self._device.ai)
        if limit is not None and n_inputs and self.ai_rate_hz * n_inputs > limit:
            raise ValueError(
                f"ai_rate_hz {self.ai_rate_hz:g} x {n_inputs} inputs exceeds the device's "
                f"{limit:g} samples/s aggregate rate"
            )
        return self

    @property
    def device(self) -> DaqDevice:
        return self._device


class SimDaqConfig(_DaqConfigBase):
    """The simulated DAQ: every looped-back output reappears on its input after a delay."""

    backend: Literal["sim"]
    device_file: str = Field("firmware_configs/sim_daq.yaml", validate_default=True)
    loopback_delay_ms: float = Field(0.0, ge=0, le=10_000)
    loopback_jitter_ms: float = Field(0.0, ge=0, le=1_000)  # sd of a Gaussian added to the delay per write
    noise_volts: float = Field(0.0, ge=0, le=10)  # sd of Gaussian noise on every input sample
    write_ms: float = Field(0.0, ge=0, le=100)  # how long each analog output write blocks, as a real card's does
    seed: int = 0  # jitter and noise are reproducible


class NidaqConfig(_DaqConfigBase):
    """An NI DAQ through NI-DAQmx (nidaqmx-python), channels from a firmware file."""

    backend: Literal["nidaqmx"]
    device_file: str = Field("firmware_configs/ni_pcie6343.yaml", validate_default=True)
    ai_read_ms: float = Field(5.0, ge=0.5, le=1000)  # block size of the input reader thread


CameraConfig = Annotated[
    Union[ReplayCameraConfig, OpenCvCameraConfig, SpinnakerCameraConfig], Field(discriminator="backend")
]
DaqConfig = Annotated[Union[SimDaqConfig, NidaqConfig], Field(discriminator="backend")]

# The names a protocol may give, from the registry; each must have its config model above.
CAMERA_BACKENDS = frozenset(registry.CAMERAS)
DAQ_BACKENDS = frozenset(registry.DAQS)


def _tags(union: Any) -> frozenset[str]:
    return frozenset(get_args(m.model_fields["backend"].annotation)[0] for m in get_args(get_args(union)[0]))


if _tags(CameraConfig) != CAMERA_BACKENDS or _tags(DaqConfig) != DAQ_BACKENDS:
    raise ImportError("rtpose.hw.registry and the config unions of rtpose.hw.config name different backends")

_camera_adapter: TypeAdapter = TypeAdapter(CameraConfig)
_daq_adapter: TypeAdapter = TypeAdapter(DaqConfig)


def parse_camera_config(data: Any, where: str = "camera") -> ReplayCameraConfig | OpenCvCameraConfig | SpinnakerCameraConfig:
    """A ``camera`` mapping (from YAML) -> its config; problems raise a one-line ``RtposeError``."""
    return _parse(_camera_adapter, data, where, CAMERA_BACKENDS)


def parse_daq_config(data: Any, where: str = "daq") -> SimDaqConfig | NidaqConfig:
    """A ``daq`` mapping (from YAML) -> its config; problems raise a one-line ``RtposeError``."""
    return _parse(_daq_adapter, data, where, DAQ_BACKENDS)


def _parse(adapter: TypeAdapter, data: Any, where: str, backends: frozenset[str]) -> Any:
    if isinstance(data, dict) and "backend" not in data:
        raise ConfigError(f"{where}.backend: required key is missing (one of {', '.join(sorted(backends))}"
                          f"{misspelt_key_hint('backend', data)})")
    if isinstance(data, dict) and data.get("backend") not in backends:
        raise ConfigError(
            f"{where}.backend: unknown backend {data.get('backend')!r} (one of {', '.join(sorted(backends))})"
        )
    return validate(adapter, data, prefix=tuple(where.split(".")), unions={(): backends})


def open_camera(config: Any) -> "Camera":
    """Make and open the camera a config (or a raw ``camera`` mapping) describes.

    Use it as a context manager so that an exception closes the camera:
    ``with open_camera(cfg) as camera: ...``.

    Raises:
        ConfigError: A raw mapping is not a valid camera section.
        CameraError: The camera cannot be opened (``DriverMissing`` without its SDK).
    """
    return _open(config, parse_camera_config, registry.make_camera)


def open_daq(config: Any) -> "Daq":
    """Make and open the DAQ a config (or a raw ``daq`` mapping) describes; outputs start at 0 V.

    Raises:
        ConfigError: A raw mapping is not a valid daq section.
        DaqError: The device cannot be opened (``DriverMissing`` without its driver).
    """
    return _open(config, parse_daq_config, registry.make_daq)


def _open(config: Any, parse: Any, make: Any) -> Any:
    device = make(parse(config) if isinstance(config, dict) else config)
    device.open()
    return device
