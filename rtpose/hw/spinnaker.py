"""FLIR cameras through the Spinnaker SDK's Python module, PySpin (imported on open).

Settings come from a firmware file (``firmware_configs/flir_blackfly_s.yaml``) and are
turned into an ordered list of GenICam node writes by ``camera_settings``; a thin layer
applies them through the node map, so the order and the values are tested without a
camera, and an unsupported node or value on some model fails naming the node.

``t_exposure`` is the start of the exposure on the host's monotonic clock:

- ``timestamps.source: chunk`` (default): the camera stamps each image with its own
  clock (the Timestamp chunk, ns). That clock is related to ours by latching it
  (``TimestampLatch``) between two host clock readings, several times at open and again
  every ``sync_interval_s``; a line through those brackets (``DeviceClock``) absorbs the
  camera oscillator's drift. Error: half the narrowest bracket (a USB control transfer,
  typically ~0.1-0.5 ms) plus whatever is not linear in the drift. If the camera latches
  the chunk at the end of the exposure (``chunk_marks: exposure_end``), the exposure
  time is subtracted.
- ``timestamps.source: arrival``: ``t_arrival - readout_ms - exposure``, for cameras
  without chunk timestamps; as good as the readout estimate.

Not run against a camera here: there is no FLIR camera or Spinnaker SDK on the
development machines or in CI.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import numpy as np

from rtpose import clock
from rtpose.hw.camera import Camera, Frame
from rtpose.hw.clock_fit import DeviceClock
from rtpose.hw.errors import CameraError, CameraTimeout, import_driver
from rtpose.hw.firmware import SpinnakerDevice, TimestampSettings

INSTALL_HINT = (
    "install FLIR's Spinnaker SDK and the matching spinnaker-python wheel from FLIR's download site "
    "(it provides `PySpin`; the PyPI package named `pyspin` is an unrelated terminal spinner)"
)
SPINNAKER_TIMEOUT_CODE = -1011  # SPINNAKER_ERR_TIMEOUT: GetNextImage waited in vain
LATCHES_PER_SYNC = 5

_ACTIVATION = {"rising_edge": "RisingEdge", "falling_edge": "FallingEdge"}
_OVERLAP = {"off": "Off", "read_out": "ReadOut"}
_BUFFER_HANDLING = {
    "newest_only": "NewestOnly",
    "newest_first": "NewestFirst",
    "oldest_first": "OldestFirst",
    "oldest_first_overwrite": "OldestFirstOverwrite",
}


@attrs.frozen
class NodeSetting:
    """One GenICam node write; ``key`` is the firmware-file key it comes from, for error messages."""

    nodemap: str  # "device" (camera features) or "stream" (the host-side transport layer)
    node: str
    value: Any  # str: enumeration entry; bool, int, float; None: execute a command
    key: str


def camera_settings(device: SpinnakerDevice) -> list[NodeSetting]:
    """The node writes that put a camera into ``device``'s state, in an order the camera accepts.

    Triggering is switched off first (trigger and ROI settings are locked while it is on),
    offsets go to 0 before the size is set (a wider ROI must fit at the old offset), and
    the exposure is set before the frame rate (the rate's maximum depends on it).
    """
    roi, trigger = device.roi, device.trigger
    hardware = trigger.mode == "hardware"
    settings = [
        NodeSetting("device", "AcquisitionMode", "Continuous", "(always)"),
        NodeSetting("device", "TriggerMode", "Off", "trigger.mode"),
        NodeSetting("device", "PixelFormat", device.pixel_format, "pixel_format"),
        NodeSetting("device", "OffsetX", 0, "roi.offset_x"),
        NodeSetting("device", "OffsetY", 0, "roi.offset_y"),
        NodeSetting("device", "Width", roi.width, "roi.width"),
        NodeSetting("device", "Height", roi.height, "roi.height"),
        NodeSetting("device", "OffsetX", roi.offset_x, "roi.offset_x"),
        NodeSetting("device", "OffsetY", roi.offset_y, "roi.offset_y"),
        NodeSetting("device", "ExposureAuto", "Off", "exposure_us"),
        NodeSetting("device", "ExposureMode", "Timed", "exposure_us"),
        NodeSetting("device", "ExposureTime", float(device.exposure_us), "exposure_us"),
        NodeSetting("device", "GainAuto", "Off", "gain_db"),
        NodeSetting("device", "Gain", float(device.gain_db), "gain_db"),
        # Hardware-triggered frames come when the pulses come; a rate limit would only drop some.
        NodeSetting("device", "AcquisitionFrameRateEnable", not hardware, "trigger.mode"),
    ]
    if not hardware:
        settings.append(NodeSetting("device", "AcquisitionFrameRate", float(device.frame_rate_hz), "frame_rate_hz"))
    if device.timestamps.source == "chunk":
        settings += [
            NodeSetting("device", "ChunkModeActive", True, "timestamps.source"),
            NodeSetting("device", "ChunkSelector", "Timestamp", "timestamps.source"),
            NodeSetting("device", "ChunkEnable", True, "timestamps.source"),
        ]
    if hardware:
        settings += [
            NodeSetting("device", "TriggerSelector", "FrameStart", "trigger.mode"),
            NodeSetting("device", "TriggerSource", trigger.source, "trigger.source"),
            NodeSetting("device", "TriggerActivation", _ACTIVATION[trigger.activation], "trigger.activation"),
            NodeSetting("device", "TriggerOverlap", _OVERLAP[trigger.overlap], "trigger.overlap"),
            NodeSetting("device", "TriggerMode", "On", "trigger.mode"),
        ]
    settings += [
        NodeSetting("stream", "StreamBufferHandlingMode", _BUFFER_HANDLING[device.stream.buffer_handling], "stream.buffer_handling"),
        NodeSetting("stream", "StreamBufferCountMode", "Manual", "stream.buffer_count"),
        NodeSetting("stream", "StreamBufferCountManual", device.stream.buffer_count, "stream.buffer_count"),
    ]
    return settings


def exposure_start(
    timestamps: TimestampSettings,
    exposure_us: float,
    t_arrival: float,
    chunk_ticks: int | None,
    camera_clock: DeviceClock | None,
) -> float:
    """Host time at which a frame's exposure began (see the module docstring for the two sources)."""
    exposure_s = exposure_us / 1e6
    if timestamps.source == "chunk":
        if chunk_ticks is None or camera_clock is None or not camera_clock.ready:
            raise CameraError("spinnaker: frame without a Timestamp chunk while timestamps.source is chunk")
        t = float(camera_clock.to_host(int(chunk_ticks)))
        return t - exposure_s if timestamps.chunk_marks == "exposure_end" else t
    return t_arrival - timestamps.readout_ms / 1000.0 - exposure_s


class _PySpinDriver:
    """The only code that calls PySpin."""

    def __init__(self) -> None:
        self.PySpin = import_driver("PySpin", "spinnaker", INSTALL_HINT)
        self.system = self.cameras = self.cam = None
        self.nodemaps: dict[str, Any] = {}
        self.streaming = False

    def open(self, serial: str | None) -> None:
        PySpin = self.PySpin
        self.system = PySpin.System.GetInstance()
        self.cameras = self.system.GetCameras()
        if self.cameras.GetSize() == 0:
            raise CameraError("spinnaker: no FLIR camera found (check the cable; SpinView should list it)")
        cam = self.cameras.GetBySerial(serial) if serial else self.cameras.GetByIndex(0)
        if cam is None or not cam.IsValid():
            raise CameraError(f"spinnaker: no camera with serial {serial} (set camera.serial or the file's serial)")
        cam.Init()
        self.cam = cam
        self.nodemaps = {"device": cam.GetNodeMap(), "stream": cam.GetTLStreamNodeMap()}

    def apply(self, setting: NodeSetting) -> None:
        PySpin = self.PySpin
        where = f"spinnaker: {setting.node} (from {setting.key})"
        node = self.nodemaps[setting.nodemap].GetNode(setting.node)
        if node is None or not PySpin.IsAvailable(node):
            raise CameraError(f"{where}: this camera has no such node")
        if not PySpin.IsWritable(node):
            raise CameraError(f"{where}: node is not writable now")
        kind = node.GetPrincipalInterfaceType()
        value = setting.value
        if kind == PySpin.intfIEnumeration:
            enumeration = PySpin.CEnumerationPtr(node)
            entry = enumeration.GetEntryByName(value)
            if entry is None or not PySpin.IsAvailable(entry) or not PySpin.IsReadable(entry):
                names = [e.GetSymbolic() for e in map(PySpin.CEnumEntryPtr, enumeration.GetEntries()) if PySpin.IsAvailable(e)]
                raise CameraError(f"{where}: no entry {value!r}; this camera offers {', '.join(names)}")
            enumeration.SetIntValue(entry.GetValue())
        elif kind == PySpin.intfIFloat:
            number = PySpin.CFloatPtr(node)
            low, high = number.GetMin(), number.GetMax()
            if not low <= value <= high:
                raise CameraError(f"{where}: {value:g} is outside {low:g}..{high:g} on this camera")
            number.SetValue(value)
        elif kind == PySpin.intfIInteger:
            number = PySpin.CIntegerPtr(node)
            low, high, step = number.GetMin(), number.GetMax(), max(number.GetInc(), 1)
            if not low <= value <= high or (value - low) % step:
                raise CameraError(f"{where}: {value} is not in {low}..{high} in steps of {step} on this camera")
            number.SetValue(int(value))
        elif kind == PySpin.intfIBoolean:
            PySpin.CBooleanPtr(node).SetValue(bool(value))
        elif kind == PySpin.intfICommand:
            PySpin.CCommandPtr(node).Execute()
        else:
            raise CameraError(f"{where}: unsupported node type")

    def latch(self) -> tuple[int, float, float]:
        """(camera ticks, host before, host after) of one TimestampLatch."""
        PySpin = self.PySpin
        device = self.nodemaps["device"]
        command = PySpin.CCommandPtr(device.GetNode("TimestampLatch"))
        value = PySpin.CIntegerPtr(device.GetNode("TimestampLatchValue"))
        before = clock.now()
        command.Execute()
        after = clock.now()
        return int(value.GetValue()), before, after

    def begin(self) -> None:
        self.cam.BeginAcquisition()
        self.streaming = True

    def next_image(self, timeout_ms: int, want_chunk: bool) -> tuple[np.ndarray, int, int | None, float] | None:
        """(pixels, frame id, chunk ticks, arrival) or None for an incomplete image; raises CameraTimeout."""
        try:
            image = self.cam.GetNextImage(timeout_ms)
        except self.PySpin.SpinnakerException as exc:
            if getattr(exc, "errorcode", None) == SPINNAKER_TIMEOUT_CODE or str(SPINNAKER_TIMEOUT_CODE) in str(exc):
                raise CameraTimeout(f"spinnaker: no frame within {timeout_ms} ms") from None
            raise CameraError(f"spinnaker: grabbing failed: {(str(exc).splitlines() or [''])[0]}") from None
        t_arrival = clock.now()
        try:
            if image.IsIncomplete():
                return None
            pixels = np.array(image.GetNDArray(), dtype=np.uint8, copy=True)  # the buffer goes back on Release
            ticks = int(image.GetChunkData().GetTimestamp()) if want_chunk else None
            return pixels, int(image.GetFrameID()), ticks, t_arrival
        finally:
            image.Release()

    def close(self) -> None:
        try:
            if self.cam is not None:
                if self.streaming:
                    self.cam.EndAcquisition()
                self.cam.DeInit()
        finally:
            self.cam = None
            self.nodemaps = {}
            if self.cameras is not None:
                self.cameras.Clear()
            if self.system is not None:
                self.system.ReleaseInstance()
            self.system = self.cameras = None


class SpinnakerCamera(Camera):
    def __init__(self, device: SpinnakerDevice):
        self.device = device
        self.name = f"spinnaker:{device.serial or 'first'}"
        self._driver: _PySpinDriver | None = None
        self._clock: DeviceClock | None = None
        self._last_sync = 0.0
        self._last_frame_id: int | None = None
        self._seq = 0
        self._dropped = 0
        self.incomplete = 0
        self._stop = threading.Event()
        self._reading = threading.Lock()

    @classmethod
    def from_config(cls, config) -> "SpinnakerCamera":
        return cls(config.device)

    @property
    def frame_rate(self) -> float:
        return self.device.frame_rate_hz  # nominal; with a hardware trigger, the expected pulse rate

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self.device.roi.height, self.device.roi.width)

    @property
    def dropped(self) -> int:
        return self._dropped

    def open(self) -> None:
        if self._driver is not None:
            return
        driver = _PySpinDriver()
        try:
            driver.open(self.device.serial)
            for setting in camera_settings(self.device):
                driver.apply(setting)
            if self.device.timestamps.source == "chunk":
                self._clock = DeviceClock(1e9, bin_s=self.device.timestamps.sync_interval_s)
                self._sync_clock(driver)
            driver.begin()
        except BaseException:
            driver.close()
            raise
        self._driver = driver

    def _sync_clock(self, driver: _PySpinDriver) -> None:
        assert self._clock is not None
        for _ in range(LATCHES_PER_SYNC):
            self._clock.observe_bracket(*driver.latch())
        self._last_sync = clock.now()

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        if self._driver is None:
            raise CameraError(f"{self.name}: read before open")
        with self._reading:
            if self._stop.is_set():
                return None
            if self._clock is not None and clock.now() - self._last_sync > self.device.timestamps.sync_interval_s:
                self._sync_clock(self._driver)
            deadline = clock.now() + timeout_s
            while True:
                remaining_ms = int(max(deadline - clock.now(), 0.0) * 1000)
                try:
                    got = self._driver.next_image(max(remaining_ms, 1), self._clock is not None)
                except CameraTimeout:
                    hint = (
                        f"; in hardware trigger mode the camera waits for edges on {self.device.trigger.source}"
                        if self.device.trigger.mode == "hardware"
                        else ""
                    )
                    raise CameraTimeout(f"{self.name}: no frame within {timeout_s:.3g} s{hint}") from None
                if got is not None:
                    break
                self.incomplete += 1
                if clock.now() >= deadline:
                    raise CameraTimeout(f"{self.name}: only incomplete frames within {timeout_s:.3g} s")
            pixels, frame_id, ticks, t_arrival = got
            if self._last_frame_id is not None and frame_id > self._last_frame_id + 1:
                self._dropped += frame_id - self._last_frame_id - 1
            self._seq += 1 if self._last_frame_id is None else max(frame_id - self._last_frame_id, 1)
            self._last_frame_id = frame_id
            t_exposure = exposure_start(self.device.timestamps, self.device.exposure_us, t_arrival, ticks, self._clock)
            return Frame(index=frame_id, image=pixels, t_exposure=t_exposure, t_arrival=t_arrival, seq=self._seq - 1)

    def close(self) -> None:
        """Stop after any read in progress (reads are bounded by their timeout), then release the camera."""
        self._stop.set()
        if self._reading.acquire(timeout=10.0):
            try:
                if self._driver is not None:
                    self._driver.close()
                    self._driver = None
            finally:
                self._reading.release()
