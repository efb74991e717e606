"""Preview frames for a live view: downscaled JPEGs, rate-limited, encoded off the loop's thread.

The loop calls ``PreviewEncoder.offer`` once per processed frame. That costs one clock
read and one comparison, plus, at most ``fps`` times a second, storing a reference to
the frame in a one-place hand-off (the camera gives every frame its own array, so no
copy is needed). This module's thread downscales (OpenCV ``INTER_AREA``), encodes
(``cv2.imencode`` JPEG; OpenCV releases the GIL while it works) and offers the result
to the publisher's bounded queue on topic ``preview``. When a frame is due while the
previous one is still being encoded, the newer one replaces the waiting one (counted
as ``replaced``): a preview is a glance, never a backlog.

Message (msgpack map, topic ``preview``)::

    frame        int           index in the source, as in the ``poses`` message of that frame
    exposure     float         the frame's exposure time (monotonic seconds)
    frame_size   [h, w]        the camera frame's size in pixels (skeletons are in these pixels)
    size         [h, w]        the JPEG's size in pixels
    jpeg         bytes         the encoded image (grey frames stay one channel)
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import cv2
import numpy as np

from rtpose import clock
from rtpose.live.publisher import PREVIEW_TOPIC


def encode_preview(image: np.ndarray, width: int, quality: int) -> tuple[bytes, tuple[int, int]]:
    """Downscale ``image`` (H, W) or (H, W, C) uint8 to at most ``width`` pixels wide and encode it.

    Returns the JPEG bytes and the encoded size (h, w). Never upscales. Raises
    ``ValueError`` if OpenCV cannot encode the image.
    """
    h, w = image.shape[:2]
    if w > width:
        new_h = max(1, round(h * width / w))
        image = cv2.resize(image, (width, new_h), interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} frame as JPEG")
    return buffer.tobytes(), (int(image.shape[0]), int(image.shape[1]))


class PreviewEncoder:
    """Rate-limited JPEG previews of the loop's frames, encoded in their own thread.

    Args:
        send: called from this class's thread with ``(topic, message)``; the daemon
            passes ``Publisher.offer_message`` (it never waits).
        fps: at most this many previews per second (frames in between are skipped).
        width: preview width in pixels (the frame's aspect is kept; never upscaled).
        quality: JPEG quality, 1-100.
        on_error: called once if encoding fails; the thread then stops (the loop goes on).
    """

    def __init__(self, send: Callable[[str, dict[str, Any]], bool], fps: float = 15.0, width: int = 512,
                 quality: int = 80, on_error: Callable[[BaseException], None] = lambda exc: None):
        self._send = send
        self.period_s = 1.0 / fps
        self.width, self.quality = width, quality
        self._on_error = on_error
        self._next_due = 0.0
        self._pending: tuple[int, float, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.offered = 0  # frames handed over (due by the rate limit)
        self.replaced = 0  # handed over, then replaced by a newer one before the thread took it
        self.encoded = 0
        self.max_encode_s = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rtpose-preview", daemon=True)
        self._thread.start()

    def offer(self, frame: int, exposure: float, image: np.ndarray) -> bool:
        """Called by the loop for every processed frame; True when this one was taken for a preview."""
        now = clock.now()
        if now < self._next_due:
            return False
        self._next_due = now + self.period_s
        with self._lock:
            if self._pending is not None:
                self.replaced += 1
            self._pending = (frame, exposure, image)
        self.offered += 1
        self._ready.set()
        return True

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._ready.wait(0.1):
                    continue
                self._ready.clear()
                with self._lock:
                    pending, self._pending = self._pending, None
                if pending is None:
                    continue
                frame, exposure, image = pending
                start = clock.now()
                jpeg, size = encode_preview(image, self.width, self.quality)
                self.max_encode_s = max(self.max_encode_s, clock.now() - start)
                self._send(PREVIEW_TOPIC, {"frame": int(frame), "exposure": float(exposure),
                                           "frame_size": [int(image.shape[0]), int(image.shape[1])],
                                           "size": list(size), "jpeg": jpeg})
                self.encoded += 1
        except BaseException as exc:
            self.error = exc
            self._on_error(exc)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (a preview being encoded is finished and sent first)."""
        self._stop.set()
        self._ready.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stats(self) -> dict[str, Any]:
        return {"fps": round(1.0 / self.period_s, 3), "width": self.width, "quality": self.quality,
                "offered": self.offered, "replaced": self.replaced, "encoded": self.encoded,
                "max_encode_ms": round(self.max_encode_s * 1000.0, 3),
                "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}"}
