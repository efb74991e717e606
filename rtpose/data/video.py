"""Frames by index, grayscale uint8: a video file through OpenCV, or the images embedded
in a SLEAP package (.pkg.slp) through sleap-io's HDF5 video backend.

Two things a file says about itself are not trusted:

- **The frame count of a container is an estimate.** Matroska, WebM and many AVI files
  carry no frame index; OpenCV then reports ``duration x frame rate``, which is wrong for
  variable-rate or truncated files. :attr:`VideoReader.n_frames` is that declared count,
  a bound for choosing frames; the stream itself says where it ends: a read past its real
  end raises :class:`StreamEnded` (with the number of frames the stream really holds),
  and every later read does too, without touching the file again.
- **A frame that is there may not decode.** A read that fails while later frames still
  decode raises :class:`FrameNotDecoded`; the reader moves on, so the next frame reads
  normally. Frames that fail up to the end of the stream (or more than 64 in a row) are
  the end of the stream: a truncated file is a short file.

A package holds only some frames of its source video (those with labels, usually); they
keep their source indices, :attr:`VideoReader.frame_indices` lists them, and a read of
another one raises :class:`FrameNotHeld` naming them.

Sequential reads are the common case (predict, replay, training caches), so the reader
remembers its position; a frame a little ahead is reached by grabbing (demuxing without
the colour conversion: see ``_grab_forward``), a frame behind or far ahead by seeking.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Collection, Iterator, Sequence

import cv2
import numpy as np

from rtpose.errors import RtposeError
from rtpose.paths import no_such_file

_PROBE_FRAMES = 64  # consecutive undecodable frames after which the stream counts as ended
# What a folder's videos are, by name (a folder given to ``predict`` or as ``camera.path``).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mj2", ".mpg", ".mpeg", ".webm", ".wmv",
                            ".flv", ".ts", ".h264", ".h265"})


def videos_in(folder: Path) -> list[Path]:
    """The video files of ``folder`` (by ``VIDEO_SUFFIXES``), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _mean(previous: float | None, sample: float, weight: float = 0.2) -> float:
    return sample if previous is None else (1 - weight) * previous + weight * sample


class FrameUnavailable(RtposeError):
    """A frame the reader cannot give; ``index`` is the frame asked for."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


class FrameNotDecoded(FrameUnavailable):
    """The frame is in the stream but did not decode; later frames may."""


class StreamEnded(FrameUnavailable):
    """The frame lies past the real end of the stream; ``frames_read`` frames (0 .. frames_read - 1) exist."""

    def __init__(self, message: str, index: int, frames_read: int):
        super().__init__(message, index)
        self.frames_read = frames_read


class FrameNotHeld(FrameUnavailable):
    """A package (.pkg.slp) does not hold the frame."""


def parse_frame_range(text: str | None, n_frames: int) -> range:
    """``"1200-1499"`` (inclusive, as people write it) or ``"7"`` -> a range checked against the video.

    None means every frame.

    Raises:
        RtposeError: the text is not a range, or it lies outside ``0 .. n_frames - 1``.
    """
    if text is None or text == "":
        return range(n_frames)
    start, last = _range_bounds(text)
    if last < start:
        cut = len(str(last)) < len(str(start))  # 1270-129: 1270-1299 meant?
        raise RtposeError(f"frame range {text!r} runs backwards: "
                          + ("a digit missing from its last frame? or " if cut else "")
                          + f"write the first frame first ({last}-{start})")
    if start < 0 or last >= n_frames:
        raise RtposeError(
            f"frame range {text!r} is outside the video: valid frames are 0-{n_frames - 1}"
        )
    return range(start, last + 1)


def _range_bounds(text: str) -> tuple[int, int]:
    try:
        if "-" in text:
            start_s, end_s = text.split("-", 1)
            return int(start_s), int(end_s)
        return int(text), int(text)
    except ValueError:
        raise RtposeError(f"frame range {text!r} is not START-END or an index (e.g. 1200-1499)") from None


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """``(first, last)`` of each run of consecutive values in sorted, distinct ``indices``."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def describe_indices(indices: Sequence[int], limit: int = 12) -> str:
    """Frame indices in a line, runs of three or more as spans: ``"5, 12"``, ``"0-99"``,
    ``"0-34, 36-69"``, or past ``limit`` items ``"3, 9, 17-20, ... (40 frames in 3-97)"``."""
    indices = sorted(set(int(i) for i in indices))
    if not indices:
        return "none"
    items: list[str] = []
    for a, b in _runs(indices):
        items += [f"{a}-{b}"] if b - a >= 2 else [str(i) for i in range(a, b + 1)]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(indices)} frames in {indices[0]}-{indices[-1]})"


def describe_span(indices: Sequence[int], empty: Collection[int] = (), absent: str = "not in the file",
                  limit: int = 4) -> str:
    """Frame indices as their span and count, saying what the span lacks.

    ``"1200-1299 (100 frames)"``; ``"0-69 (69 of 70 frames; 35 has no instances)"``;
    ``"0-99 (97 of 100 frames; 12 has no instances, 40-41 not in the file)"``; where the
    gaps are more than ``limit`` runs, only their count:
    ``"0-1190 (120 of 1191 frames; 1071 between not in the file)"``.

    Args:
        indices: the frames held (e.g. labeled frames with instances).
        empty: frames in the span that exist but have no instances (said so).
        absent: what the other missing frames are, in words.
        limit: at most this many runs of missing frames are listed.
    """
    kept = sorted(set(int(i) for i in indices))
    if not kept:
        return "none"
    first, last = kept[0], kept[-1]
    total = last - first + 1
    if len(kept) == 1:
        return f"{first} (1 frame)"
    if len(kept) == total:
        return f"{first}-{last} ({total} frames)"
    runs = _runs(kept)
    gaps = [(a[1] + 1, b[0] - 1) for a, b in zip(runs, runs[1:])]
    n_gap = total - len(kept)
    if len(gaps) > limit:
        return f"{first}-{last} ({len(kept)} of {total} frames; {n_gap} between {absent})"
    empty = set(empty)
    missing = [i for a, b in gaps for i in range(a, b + 1)]
    parts = []
    for frames, words in (([i for i in missing if i in empty], ("has no instances", "have no instances")),
                          ([i for i in missing if i not in empty], (absent, absent))):
        if frames:
            parts.append(f"{describe_indices(frames)} {words[len(frames) > 1]}")
    return f"{first}-{last} ({len(kept)} of {total} frames; {', '.join(parts)})"


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any 2D grey, (H, W, 1) or BGR/BGRA frame -> (H, W) uint8."""
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        else:
            raise RtposeError(f"frame has {image.shape[2]} channels; expected 1, 3 or 4")
    elif image.ndim != 2:
        raise RtposeError(f"frame has shape {image.shape}; expected (H, W) or (H, W, C)")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.max(initial=0) <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


class _EmbeddedFrames:
    """Frames stored inside a SLEAP package (.pkg.slp), read through sleap-io's ``HDF5Video``,
    which maps source frame indices to the embedded images."""

    def __init__(self, path: Path):
        import sleap_io as sio

        try:
            labels = sio.load_slp(str(path))
        except Exception as exc:
            raise RtposeError(f"{path}: not a readable .slp file ({type(exc).__name__})") from None
        embedded = [v for v in labels.videos if type(v.backend).__name__ == "HDF5Video"]
        if not embedded:
            raise RtposeError(f"{path}: has no embedded images; read its video file instead")
        if len(embedded) > 1:
            raise RtposeError(f"{path}: embeds frames of {len(embedded)} videos; rtpose reads one video at a time")
        self.video = embedded[0]
        frame_map = getattr(self.video.backend, "frame_map", None) or {}
        self.frame_indices = sorted(int(i) for i in frame_map) if frame_map else list(range(self.video.shape[0]))
        self.height, self.width = int(self.video.shape[1]), int(self.video.shape[2])
        source = getattr(self.video, "source_video", None)
        self.source = str(source.filename) if source is not None else None
        self.fps = float(getattr(getattr(source, "backend", None), "fps", 0.0) or 0.0) if source is not None else 0.0

    def read(self, index: int) -> np.ndarray:
        return to_gray(np.asarray(self.video[index]))

    def close(self) -> None:
        self.video.close()


class VideoReader:
    """Grayscale frames of one video file by index (any OpenCV-readable video, or the
    images embedded in a SLEAP .pkg.slp).

    Attributes:
        n_frames: frames the file declares (for a package: one past its last held frame).
            For a container without a frame index this is an estimate: see the module
            docstring.
        frame_indices: the frames the file holds by its own account: ``range(n_frames)``
            for a video, the embedded frames of a package.
        ended_at: once a read found the real end of the stream, the number of frames it
            holds; ``None`` before.
        fps: the frame rate the file declares (0.0 when it declares none).
        is_package: whether the frames come from a .pkg.slp.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise RtposeError(no_such_file(self.path, "video file"))
        self._embedded: _EmbeddedFrames | None = None
        self.ended_at: int | None = None
        if self.path.suffix.lower() in (".slp", ".h5", ".hdf5"):
            self._embedded = _EmbeddedFrames(self.path)
            self.frame_indices: Sequence[int] = self._embedded.frame_indices
            self.n_frames = max(self.frame_indices) + 1
            self.height, self.width = self._embedded.height, self._embedded.width
            self.fps = self._embedded.fps
            return
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise RtposeError(f"{self.path}: not a readable video")
        self.n_frames = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 0.0
        ok, first = self._cap.read()
        if not ok:
            raise RtposeError(f"{self.path}: not a readable video (no frame could be decoded)")
        self.n_frames = max(self.n_frames, 1)
        self.frame_indices = range(self.n_frames)
        self.height, self.width = first.shape[:2]
        self._next = 1  # index of the frame the next sequential read decodes
        self._known = 0  # the highest frame index known to be in the stream
        self._first = to_gray(first)
        self._grabbed: int | None = None  # a frame grabbed (not yet retrieved) while probing
        self._grab_s: float | None = None  # running mean seconds per grab (skipping forward)
        self._seek_s: float | None = None  # running mean seconds per seek and read

    @property
    def is_package(self) -> bool:
        return self._embedded is not None

    @property
    def source(self) -> str | None:
        """The video a package's frames were taken from, as stored in it (None for a video file)."""
        return self._embedded.source if self._embedded is not None else None

    @property
    def position(self) -> int:
        """The frame a sequential read gives next (for a package: 0, it has no position)."""
        return self._next if self._embedded is None else 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def __len__(self) -> int:
        return self.n_frames

    def select(self, text: str | None) -> list[int]:
        """The frames to read for a ``--frames`` value (None: every frame the file holds).

        For a package, a range selects the held frames inside it and a single index must
        be held.

        Raises:
            RtposeError: the range is malformed, outside the video, or (package) holds no frame.
        """
        if self._embedded is None:
            try:
                return list(parse_frame_range(text, self.n_frames))
            except RtposeError as exc:  # which video, as the protocol's camera.frames names its file
                raise RtposeError(str(exc).replace("is outside the video:", f"is outside {self.path.name}:")) from None
        held = list(self.frame_indices)
        if text is None or text == "":
            return held
        start, last = _range_bounds(text)
        chosen = [i for i in held if start <= i <= last]
        if not chosen or last < start:
            what = f"frame {start}" if start == last else f"any of the frames {text}"
            raise FrameNotHeld(f"{self.path}: the package does not hold {what}; it holds frames "
                               f"{describe_indices(held)}", start)
        return chosen

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W) uint8.

        Raises:
            FrameNotHeld: a package without that frame (the message lists those it holds).
            StreamEnded: ``index`` is past the real end of the stream.
            FrameNotDecoded: the frame did not decode, though a later one did.
            RtposeError: ``index`` is negative or past the declared frame count.
        """
        if self._embedded is not None:
            if index not in self._embedded.frame_indices:
                raise FrameNotHeld(f"{self.path}: the package does not hold frame {index}; it holds frames "
                                   f"{describe_indices(self._embedded.frame_indices)}", index)
            return self._embedded.read(index)
        if not 0 <= index < self.n_frames:
            raise RtposeError(f"{self.path}: frame {index} out of range: valid frames are 0-{self.n_frames - 1}")
        if self.ended_at is not None and index >= self.ended_at:
            raise self._ended(index)
        if index == 0:
            return self._first.copy()
        if self._grabbed == index:
            self._grabbed = None
            ok, frame = self._cap.retrieve()
        else:
            self._grabbed = None
            if not self._grab_forward(index):
                started = time.perf_counter()
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = self._cap.read()
                self._seek_s = _mean(self._seek_s, time.perf_counter() - started)
            else:
                ok, frame = self._cap.read()
        self._next = index + 1
        if ok:
            self._known = max(self._known, index)
            return to_gray(frame)
        # Is this one bad frame, or the end of the stream? Grab on until a frame decodes.
        probe = index + 1
        while probe < min(self.n_frames, index + 1 + _PROBE_FRAMES):
            if self._cap.grab():
                self._grabbed, self._next = probe, probe + 1
                self._known = max(self._known, probe)
                raise FrameNotDecoded(f"{self.path}: frame {index} could not be decoded", index)
            probe += 1
        self.ended_at = self._find_end(index)
        raise self._ended(index)

    def _find_end(self, failed: int) -> int:
        """How many frames the stream holds, knowing that frame ``self._known`` is in it
        and that nothing from ``failed`` on decodes.

        A read reached by seeking (a replay skipping ahead, a chunk of a fleet run)
        can fail far past the real end: the frames between are looked for by bisection,
        seeking to each (a seek costs at most a keyframe interval of decoding), so the
        end found is where the stream ends, not where the failed read landed.
        """
        good, bad = self._known, failed
        if bad - good > 1:  # the capture is moved: the next read seeks
            self._grabbed, self._next = None, self.n_frames
        while bad - good > 1:
            mid = (good + bad) // 2
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, mid)
            if self._cap.grab():
                good = mid
            else:
                bad = mid
        return good + 1

    def _grab_forward(self, index: int) -> bool:
        """Move to ``index`` by grabbing (demuxing and decoding without the colour
        conversion and copy) when that is cheaper than seeking; False: seek instead.

        A seek in a long-GOP stream (H.264) decodes from the keyframe before the target,
        so it costs up to a keyframe interval of grabs; in an intra-only stream (MJPEG) it
        costs one frame. The running means of both decide.
        """
        gap = index - self._next
        if gap == 0:
            return True
        if gap < 0:
            return False
        # Until measured: a grab ~2 ms and a seek ~0.1 s (a 1-megapixel H.264 stream).
        cheaper = gap * (self._grab_s or 0.002) < (self._seek_s or 0.1)
        if not cheaper:
            return False
        started = time.perf_counter()
        for _ in range(gap):
            if not self._cap.grab():
                return False
        self._grab_s = _mean(self._grab_s, (time.perf_counter() - started) / gap)
        self._next = index
        self._known = max(self._known, index - 1)
        return True

    def _ended(self, index: int) -> StreamEnded:
        return StreamEnded(
            f"{self.path}: frame {index} is past the end of the stream: it holds {self.ended_at} frames "
            f"(0-{self.ended_at - 1}), not the {self.n_frames} its container declares", index, self.ended_at)

    def frames(self, indices) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, frame) over ``indices`` in order."""
        for i in indices:
            yield i, self.read(i)

    def close(self) -> None:
        if self._embedded is None:
            self._cap.release()
        else:
            self._embedded.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
