"""A video file played back as a live camera: the simulated camera of every dry run and test.

Frame ``seq`` k of the playback is exposed at ``t0 + k / fps`` on the monotonic clock,
where ``t0`` is the end of ``open()``; ``t_exposure`` is exactly that scheduled time.
Decoding runs ahead in its own thread, so a frame is handed over at its time instead of
a decode later. Like a camera, the playback never waits for its reader: a reader that
falls more than ``buffer_frames`` behind loses the oldest frames (counted in
``dropped``), and the schedule carries on. That makes replay timestamps look like a real
camera's with zero exposure and readout time.
"""

from __future__ import annotations

import math
import queue
import threading
from pathlib import Path

from rtpose import clock
from rtpose.data.video import VideoReader, parse_frame_range
from rtpose.errors import RtposeError
from rtpose.hw.camera import Camera, Frame
from rtpose.hw.errors import CameraError, CameraTimeout

_END = object()  # the decoder reached the end of a non-looping range
_DECODE_GRACE_S = 0.25  # how long a frame that is due may wait for the decoder before that is an error


class ReplayCamera(Camera):
    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        frames: str | None = None,
        loop: bool = False,
        buffer_frames: int = 4,
        decode_ahead: int = 16,
    ):
        self.path = Path(path)
        self.name = f"replay:{self.path.name}"
        self._requested_fps = fps
        self._frames_text = frames
        self.loop = loop
        self.buffer_frames = buffer_frames
        self.decode_ahead = decode_ahead
        self._fps = 0.0
        self._shape = (0, 0)
        self._indices: range = range(0)
        self._decoded: queue.Queue = queue.Queue(maxsize=decode_ahead)
        self._stop = threading.Event()
        self._decoder: threading.Thread | None = None
        self._t0 = 0.0
        self._next_seq = 0
        self._dropped = 0
        self._opened = False
        self._ended = False

    @classmethod
    def from_config(cls, config) -> "ReplayCamera":
        return cls(
            config.path,
            fps=config.fps,
            frames=config.frames,
            loop=config.loop,
            buffer_frames=config.buffer_frames,
            decode_ahead=config.decode_ahead,
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

    @property
    def frame_indices(self) -> range:
        """Source frame indices played (once per loop)."""
        return self._indices

    @property
    def t0(self) -> float:
        """Exposure time of the first frame: ``t_exposure = t0 + seq / frame_rate``."""
        return self._t0

    def open(self) -> None:
        if self._opened:
            return
        reader = VideoReader(self.path)
        try:
            self._indices = parse_frame_range(self._frames_text, reader.n_frames)
            self._fps = float(self._requested_fps or reader.fps)
            if not self._fps > 0:
                raise RtposeError(f"{self.path}: the file declares no frame rate; set camera.fps")
            self._shape = reader.shape
        except BaseException:
            reader.close()
            raise
        self._stop.clear()
        self._decoder = threading.Thread(target=self._decode, args=(reader,), name="replay-decoder", daemon=True)
        self._decoder.start()
        # Start the clock only once the first frames are decoded, so frame 0 is on time.
        wanted = min(self.decode_ahead, len(self._indices))
        deadline = clock.now() + 30.0
        while self._decoded.qsize() < wanted and self._decoder.is_alive() and clock.now() < deadline:
            self._stop.wait(0.002)
        self._t0 = clock.now()
        self._next_seq = 0
        self._dropped = 0
        self._ended = False
        self._opened = True

    def _decode(self, reader: VideoReader) -> None:
        """Decode the range in playback order (again and again when looping) into the queue.

        Seeking back to the start of the range costs up to a keyframe interval of decoding
        (~0.1-0.2 s for the fly clip), so when looping a second reader is positioned there in
        the background during each pass, and the wrap just switches readers.
        """
        standby: _Standby | None = None
        try:
            while not self._stop.is_set():
                if self.loop:
                    standby = _Standby(self.path, self._indices.start)
                for index in self._indices:
                    image = reader.read(index)
                    if not self._put((index, image)):
                        return
                if not self.loop:
                    self._put(_END)
                    return
                assert standby is not None
                reader.close()
                reader = standby.take()
                standby = None
        except BaseException as exc:  # handed to the reader thread, which raises it
            self._put(exc)
        finally:
            reader.close()
            if standby is not None:
                standby.discard()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._decoded.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _take(self, timeout_s: float):
        try:
            item = self._decoded.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            raise CameraTimeout(
                f"{self.name}: frame {self._next_seq} not decoded within {timeout_s:.3g} s of its time "
                f"(decoding is slower than {self._fps:g} FPS on this machine)"
            ) from None
        if isinstance(item, BaseException):
            raise CameraError(f"{self.name}: decoding failed: {item}") from item
        return item

    def _finished(self) -> bool:
        return not self.loop and self._next_seq >= len(self._indices)

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        if not self._opened:
            raise CameraError(f"{self.name}: read before open")
        if self._stop.is_set() or self._ended:
            return None
        now = clock.now()
        deadline = now + timeout_s
        # Frames exposed so far are seq 0..newest; the camera keeps only the last buffer_frames.
        newest = math.floor((now - self._t0) * self._fps)
        while self._next_seq < newest - self.buffer_frames + 1 and not self._finished():
            # Catching up after a stalled reader decodes every dropped frame; that may take
            # longer than timeout_s, which bounds waiting for an exposure, not the catch-up.
            item = self._take(max(deadline - clock.now(), _DECODE_GRACE_S))
            if item is _END:
                self._ended = True
                return None
            self._next_seq += 1
            self._dropped += 1
        if self._finished():
            self._ended = True
            return None
        t_exposure = self._t0 + self._next_seq / self._fps
        if t_exposure > deadline:
            if not self._stop.wait(deadline - clock.now()):
                raise CameraTimeout(
                    f"{self.name}: no frame within {timeout_s:.3g} s (the next is due in "
                    f"{t_exposure - now:.3g} s at {self._fps:g} FPS)"
                )
            return None
        wait = t_exposure - clock.now()
        if wait > 0 and self._stop.wait(wait):
            return None
        item = self._take(max(deadline - clock.now(), _DECODE_GRACE_S))
        if item is _END:
            self._ended = True
            return None
        index, image = item
        frame = Frame(index=index, image=image, t_exposure=t_exposure, t_arrival=clock.now(), seq=self._next_seq)
        self._next_seq += 1
        return frame

    def close(self) -> None:
        """Stop decoding; a ``read`` blocked in another thread returns ``None``. A closed replay does not reopen."""
        self._stop.set()
        decoder = self._decoder
        if decoder is not None and decoder is not threading.current_thread():
            decoder.join(timeout=2.0)
        while True:  # free the decoded frames
            try:
                self._decoded.get_nowait()
            except queue.Empty:
                break


class _Standby:
    """A second reader opened and positioned at ``start`` in a background thread."""

    def __init__(self, path: Path, start: int):
        self._reader: VideoReader | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._prepare, args=(path, start), name="replay-seek", daemon=True)
        self._thread.start()

    def _prepare(self, path: Path, start: int) -> None:
        try:
            reader = VideoReader(path)
            if start > 0:
                # Decode the frame before the range, so that reading the range starts without a seek.
                reader.read(start - 1)
            self._reader = reader
        except BaseException as exc:
            self._error = exc

    def take(self) -> VideoReader:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._reader is not None
        return self._reader

    def discard(self) -> None:
        self._thread.join(timeout=5.0)
        if self._reader is not None:
            self._reader.close()
