"""A video file played back as a live camera: the simulated camera of every dry run and test.

Frame ``seq`` k of the playback is exposed at ``t0 + k / fps`` on the monotonic clock,
where ``t0`` is the end of ``open()``; ``t_exposure`` is exactly that scheduled time, and
the frame shows source frame ``k`` of the range (modulo its length when looping). Like a
camera, the playback never waits for its reader: a reader that falls more than
``buffer_frames`` behind loses the oldest frames (counted in ``dropped``), and the
schedule carries on. That makes replay timestamps look like a real camera's with zero
exposure and readout time.

Like a real camera, a frame nobody looks at costs nothing: ``read`` hands over frames
whose pixels are decoded on first use of ``Frame.image`` (in the thread that uses them),
so the frames the loop drops (replaced in its frame slot, or lost from the camera's
buffer) are never decoded, and a camera faster than the machine does not starve the
engine of CPU. Reaching the next frame used skips the ones between by grabbing or
seeking, whichever the stream makes cheaper (see ``rtpose.data.video.VideoReader``);
when looping, a second reader is positioned at the start of the range in the
background, so the wrap costs no seek. While its reader uses most frames, a thread
decodes each next frame ahead of its exposure, so a reader that keeps up gets its
pixels without waiting for them; it decodes in stream order (the frame just handed over
first, where it was not decoded ahead), so the reader's own decode never seeks back.
Decoding is the replay's readout: ``Frame.t_arrival`` is when the pixels were ready (the
hand-over, or later for a frame decoded on use).

A container may declare more frames than its stream holds (see ``rtpose.data.video``).
``open`` reads the last frame of the range (in a second reader, before the clock runs:
one seek) and, where the stream ends before it, cuts the range at the real end, so the
playback never exposes, hands over or counts as dropped a frame that does not exist: it
ends there ("source ended"), or loops from there. ``stream_note`` then says so. A
stream found to end still earlier while playing (``FrameLost``) ends the range there.
"""

from __future__ import annotations

import bisect
import functools
import math
import threading
from pathlib import Path

import numpy as np

from rtpose import clock
from rtpose.data.video import FrameNotDecoded, StreamEnded, VideoReader
from rtpose.errors import RtposeError
from rtpose.hw.camera import Camera, Frame
from rtpose.hw.errors import CameraClosed, CameraError, CameraTimeout, FrameLost


_RECENT_FRAMES = 16  # decoded frames kept for a second use
_USE_WINDOW = 32  # frames over which the share of used frames is measured


def check_source(path: str | Path, frames: str | None = None) -> tuple[int, int, int, float | None]:
    """Whether ``path`` can be replayed: open it, choose the range and decode its first
    frame; returns ``(height, width, frames in the range, the rate the file declares)``
    (the frame count as declared: a stream that ends early is found when the camera opens).

    The same reading ``ReplayCamera.open`` does, without the clock or the threads, for
    the checks made before a run starts (``rtpose.live.preflight``).

    Raises:
        RtposeError: no such file; not a readable video; a .slp without embedded images;
            a range outside the video, or starting past the real end of its stream.
    """
    with VideoReader(path) as reader:
        order = reader.select(frames)
        try:
            reader.read(order[0])
        except FrameNotDecoded:
            pass  # one damaged frame: lost on use, as in the run
        return (*reader.shape, len(order), reader.fps)


class _Busy(Exception):
    """The decoder is in use (a prefetch does not wait for it)."""


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
        self.decode_ahead = decode_ahead  # accepted for old protocol files; frames are decoded on first use
        self._fps = 0.0
        self._shape = (0, 0)
        self._order: list[int] = []  # source frame indices of the range, in playback order
        self._length = 0  # how many of them exist (fewer once the stream is found to end early)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one decode at a time; close waits for it
        self._reader: VideoReader | None = None
        self._standby: _Standby | None = None
        self._recent: dict[int, tuple[np.ndarray, float]] = {}  # last decoded frames by source index, oldest first
        # (seq, source index) of the frame just handed over and of the next exposure, to decode ahead
        self._next_up: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._handed_over = threading.Event()
        self._prefetcher: threading.Thread | None = None
        self._delivered = self._used = 0  # frames handed over and used, in the current window
        self._use_ratio = 0.0  # share of the frames handed over that the reader used (last window; none yet)
        self._t0 = 0.0
        self._next_seq = 0
        self._pos = 0  # position in _order of the frame next_seq shows
        self._dropped = 0
        self.decoded = 0  # frames whose pixels were decoded (the others were only skipped over)
        self._opened = False
        self._ended = False
        self.declared_frames = 0  # frames the file declares (its container's count)
        self.stream_frames: int | None = None  # frames the stream really holds, when fewer than declared

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
    def frame_indices(self) -> list[int]:
        """Source frame indices played (once per loop); shorter once the stream is found to end early."""
        return self._order[: self._length]

    @property
    def stream_note(self) -> str | None:
        """One line when the stream holds fewer frames than its container declares; else None."""
        if self.stream_frames is None:
            return None
        return (f"the stream ends after {self.stream_frames} frames (0-{self.stream_frames - 1}), not the "
                f"{self.declared_frames} its container declares")

    @property
    def t0(self) -> float:
        """Exposure time of the first frame: ``t_exposure = t0 + seq / frame_rate``."""
        return self._t0

    def open(self) -> None:
        if self._opened:
            return
        reader = VideoReader(self.path)
        try:
            self._order = reader.select(self._frames_text)
            self.declared_frames = reader.n_frames
            self._length = self._real_length(reader)
            self._fps = float(self._requested_fps or reader.fps)
            if not self._fps > 0:
                raise RtposeError(f"{self.path}: the file declares no frame rate; set camera.fps")
            self._shape = reader.shape
            first = self._order[0]
            try:  # decode the first frame before the clock runs, as a camera has it at its exposure
                if first > 0 and not reader.is_package:
                    reader.read(first - 1)  # positioned first: no seek
                self._recent[first] = (reader.read(first), clock.now())
                self.decoded = 1
            except (FrameNotDecoded, StreamEnded):
                pass
        except BaseException:
            reader.close()
            raise
        self._reader = reader
        self._stop.clear()
        self._prefetcher = threading.Thread(target=self._prefetch, name="replay-prefetch", daemon=True)
        self._prefetcher.start()
        self._t0 = clock.now()
        self._next_seq = self._pos = self._dropped = 0
        self._ended = False
        self._opened = True

    def _real_length(self, reader: VideoReader) -> int:
        """How many frames of the range exist: all, unless the stream ends before its last.

        Raises:
            RtposeError: the range starts past the real end of the stream.
        """
        if reader.is_package:
            return len(self._order)
        with VideoReader(self.path) as probe:  # a second reader: ``reader`` stays at the start
            try:
                probe.read(self._order[-1])
                return len(self._order)
            except FrameNotDecoded:
                return len(self._order)  # a damaged last frame; lost on use, as any other
            except StreamEnded as exc:
                self.stream_frames = exc.frames_read
        length = bisect.bisect_left(self._order, self.stream_frames)
        if length == 0:
            raise RtposeError(f"{self.path}: camera.frames {self._frames_text} lies past the end of the stream: "
                              f"{self.stream_note}")
        return length

    def _finished(self) -> bool:
        return self._length == 0 or (not self.loop and self._pos >= self._length)

    def _advance(self, n: int) -> None:
        """Move the playback ``n`` exposures on (without decoding anything)."""
        self._next_seq += n
        self._pos = (self._pos + n) % self._length if self.loop else self._pos + n

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        if not self._opened:
            raise CameraError(f"{self.name}: read before open")
        if self._stop.is_set() or self._ended:
            return None
        now = clock.now()
        deadline = now + timeout_s
        # Frames exposed so far are seq 0..newest; the camera keeps only the last buffer_frames.
        newest = math.floor((now - self._t0) * self._fps)
        if not self.loop:  # a finite source stops exposing at its last frame, which the buffer keeps
            newest = min(newest, self._length - 1)
        behind = newest - self.buffer_frames + 1 - self._next_seq
        if behind > 0 and not self._finished():
            lost = behind if self.loop else min(behind, self._length - self._pos)
            self._dropped += lost
            self._advance(lost)
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
        if self._finished():  # the stream was found to end while we waited
            self._ended = True
            return None
        index = self._order[self._pos]
        frame = Frame(index=index, image=functools.partial(self._pixels, self._next_seq, index),
                      t_exposure=t_exposure, t_arrival=clock.now(), seq=self._next_seq)
        self._delivered += 1
        self._advance(1)
        if not self._finished():  # the next frame, decoded ahead if the reader uses most frames
            self._next_up = ((frame.seq, index), (self._next_seq, self._order[self._pos]))
            self._handed_over.set()
        return frame

    def _pixels(self, seq: int, index: int, prefetch: bool = False) -> tuple[np.ndarray, float]:
        """Decode source frame ``index`` (for exposure ``seq``): ``(pixels, when they were ready)``.

        Called on first use of ``Frame.image``, or by ``read`` to use idle time (``prefetch``).

        Raises:
            FrameLost: the frame did not decode, or lies past the real end of the stream.
            CameraClosed: the camera is closed.
        """
        if not prefetch:
            # A frame decoded ahead is served without the decoder's lock, which the prefetch
            # may hold for the next frame's decode: waiting for it here put a whole decode
            # (~3 ms) into the loop's overhead (p99 2.2-2.6 ms against 0.16-0.19 ms).
            # dict.get is atomic under the GIL; the prefetch only adds and evicts entries.
            cached = self._recent.get(index)
            if cached is not None:
                self._used += 1
                return cached
        if not self._lock.acquire(blocking=not prefetch):
            raise _Busy()  # a prefetch never waits for the reader's own decode
        try:
            if not prefetch:
                self._used += 1
            reader = self._reader
            if reader is None:
                raise CameraClosed(f"{self.name}: frame {seq} used after close")
            if bisect.bisect_left(self._order, index) >= self._length:
                raise FrameLost(f"{self.name}: source frame {index} lies past the end of the stream", seq)
            if index in self._recent:
                return self._recent[index]
            reader = self._reader = self._reader_for(reader, index)
            try:
                image = reader.read(index)
            except FrameNotDecoded as exc:
                raise FrameLost(f"{self.name}: {exc}", seq) from None
            except StreamEnded as exc:
                self._length = bisect.bisect_left(self._order, exc.frames_read)
                self.stream_frames = exc.frames_read
                raise FrameLost(f"{self.name}: {exc}", seq) from None
            done = clock.now()
            self.decoded += 1
            # Kept for a second use (a loop, a late reader) that would otherwise seek back.
            self._recent[index] = (image, done)
            while len(self._recent) > _RECENT_FRAMES:
                del self._recent[next(iter(self._recent))]
            return image, done
        finally:
            self._lock.release()

    def _prefetch(self) -> None:
        """Thread: decode the next exposure's frame ahead of its time, so that a reader that
        keeps up gets its pixels at the exposure, as from a camera. Only while the reader
        uses most frames (else it would mostly decode frames the loop drops), and never in
        ``read``'s thread, which stays as cheap as a camera driver's."""
        while not self._stop.is_set():
            if not self._handed_over.wait(0.1):
                continue
            self._handed_over.clear()
            upcoming, self._next_up = self._next_up, None
            if upcoming is None:
                continue
            if self._delivered >= _USE_WINDOW:  # the share of frames used, over the last window
                self._use_ratio = self._used / self._delivered
                self._used = self._delivered = 0
            if self._use_ratio < 0.5:
                continue
            # In order: the frame just handed over first, where it was not decoded ahead (the
            # first after a pause of this thread), then the next. Decoding the next one alone
            # moved the decoder past a frame the reader was about to use, which then cost a
            # seek back (~125 ms in the fly clip's H.264): a third of the frames dropped at 60 FPS.
            for seq, index in upcoming:
                if index in self._recent:
                    continue
                try:
                    self._pixels(seq, index, prefetch=True)
                except (CameraError, _Busy):
                    break  # the reader meets an error on use; a busy decoder is the reader's

    def _reader_for(self, reader: VideoReader, index: int) -> VideoReader:
        """The reader to decode ``index`` with: when looping, a reader positioned at the
        start of the range replaces the current one at the wrap, and a new one is readied
        from mid-range on."""
        if not self.loop or reader.is_package:
            return reader
        start = self._order[0]
        if index < reader.position and self._standby is not None and index >= start:
            standby, self._standby = self._standby, None
            fresh = standby.take()
            reader.close()
            reader = fresh
        if self._standby is None and index >= start + self._length // 2:
            self._standby = _Standby(self.path, start)
        return reader

    def close(self) -> None:
        """Stop; a ``read`` blocked in another thread returns ``None``, and a frame used after
        this raises ``CameraClosed``. A closed replay does not reopen."""
        self._stop.set()
        prefetcher = self._prefetcher
        if prefetcher is not None and prefetcher is not threading.current_thread():
            prefetcher.join(timeout=5.0)
        locked = self._lock.acquire(timeout=5.0)  # never release a capture in the middle of a decode
        try:
            if self._reader is not None and locked:
                self._reader.close()
                self._reader = None
            self._recent.clear()
            if self._standby is not None:
                self._standby.discard()
                self._standby = None
        finally:
            if locked:
                self._lock.release()


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
