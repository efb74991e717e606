"""Any camera or stream OpenCV opens: a webcam index, an RTSP/HTTP URL, or a video path.

For quick rigs and demos, not for latency measurements: OpenCV gives no exposure time,
so ``t_exposure`` is estimated as ``t_arrival - exposure_lead`` (one frame period unless
configured). A grab thread reads continuously so the driver's queue never fills with
stale frames; a live source (index or URL) drops the oldest frame when the reader is
late, a video path (finite, not live) instead waits for the reader.
"""

from __future__ import annotations

import collections
import logging
import threading

import cv2

from rtpose import clock
from rtpose.data.video import to_gray
from rtpose.hw.camera import Camera, Frame
from rtpose.hw.errors import CameraError, CameraTimeout

log = logging.getLogger(__name__)


class OpenCvCamera(Camera):
    def __init__(
        self,
        device: int | str,
        fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
        buffer_frames: int = 2,
        exposure_lead_ms: float | None = None,
    ):
        self.device = device
        self.name = f"opencv:{device}"
        self.live = isinstance(device, int) or "://" in str(device)
        self._requested = (fps, width, height)
        self.buffer_frames = buffer_frames
        self._exposure_lead_ms = exposure_lead_ms
        self._cap: cv2.VideoCapture | None = None
        self._fps = 0.0
        self._shape = (0, 0)
        self._frames: collections.deque[Frame] = collections.deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._grabber: threading.Thread | None = None
        self._source_ended = False
        self._failure: str | None = None
        self._failure_cause: BaseException | None = None
        self._dropped = 0
        self._seq = 0

    @classmethod
    def from_config(cls, config) -> "OpenCvCamera":
        return cls(
            config.device,
            fps=config.fps,
            width=config.width,
            height=config.height,
            buffer_frames=config.buffer_frames,
            exposure_lead_ms=config.exposure_lead_ms,
        )

    @property
    def frame_rate(self) -> float:
        return self._fps

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dropped(self) -> int:
        return self._dropped

    def open(self) -> None:
        if self._cap is not None:
            return
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.name}: could not open (no such device, or the URL or file does not answer)")
        fps, width, height = self._requested
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver from queueing stale frames
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
        ok, first = cap.read()
        t_first = clock.now()
        if not ok:
            cap.release()
            raise CameraError(f"{self.name}: opened, but no frame could be read")
        image = to_gray(first)
        got_h, got_w = image.shape
        if (width and width != got_w) or (height and height != got_h):
            cap.release()
            raise CameraError(
                f"{self.name}: asked for {width or got_w}x{height or got_h}, the device gives {got_w}x{got_h}"
            )
        self._shape = (got_h, got_w)
        self._fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or float(fps or 30.0)
        self._cap = cap
        self._stop.clear()
        self._push(image, t_first)
        self._grabber = threading.Thread(target=self._grab, name="opencv-grabber", daemon=True)
        self._grabber.start()

    @property
    def exposure_lead_s(self) -> float:
        if self._exposure_lead_ms is not None:
            return self._exposure_lead_ms / 1000.0
        return 1.0 / self._fps

    def _push(self, image, t_arrival: float) -> None:
        frame = Frame(
            index=self._seq, image=image, t_exposure=t_arrival - self.exposure_lead_s, t_arrival=t_arrival, seq=self._seq
        )
        self._seq += 1
        with self._ready:
            if self.live:
                if len(self._frames) >= self.buffer_frames:
                    self._frames.popleft()
                    self._dropped += 1
            else:
                while len(self._frames) >= self.buffer_frames and not self._stop.is_set():
                    self._ready.wait(0.05)
            self._frames.append(frame)
            self._ready.notify_all()

    def _grab(self) -> None:
        assert self._cap is not None
        try:
            while not self._stop.is_set():
                ok, image = self._cap.read()
                t_arrival = clock.now()
                if not ok:
                    if self.live:
                        self._failure = f"{self.name}: the device stopped delivering frames"
                    break
                self._push(to_gray(image), t_arrival)
        except Exception as exc:  # reported by read() in the reader's thread, with this as its cause
            self._failure = f"{self.name}: grabbing failed: {exc}"
            self._failure_cause = exc
            log.error("%s: grabbing failed", self.name, exc_info=exc)
        finally:
            with self._ready:
                self._source_ended = True
                self._ready.notify_all()

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        if self._cap is None:
            raise CameraError(f"{self.name}: read before open")
        deadline = clock.now() + timeout_s
        with self._ready:
            while not self._frames or self._stop.is_set():
                if self._stop.is_set():
                    return None
                if self._source_ended:
                    if self._failure:
                        raise CameraError(self._failure) from self._failure_cause
                    return None
                remaining = deadline - clock.now()
                if remaining <= 0:
                    raise CameraTimeout(f"{self.name}: no frame within {timeout_s:.3g} s")
                self._ready.wait(remaining)
            frame = self._frames.popleft()
            self._ready.notify_all()
            return frame

    def close(self) -> None:
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        grabber = self._grabber
        if grabber is not None and grabber is not threading.current_thread():
            grabber.join(timeout=2.0)
        if self._cap is not None and (grabber is None or not grabber.is_alive()):
            self._cap.release()
