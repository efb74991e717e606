"""Frames from video files, grayscale uint8, read through OpenCV.

Sequential reads are the common case (predict, replay, training caches), so the reader
remembers its position and only seeks when asked for a frame out of order.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rtpose.errors import RtposeError


def parse_frame_range(text: str | None, n_frames: int) -> range:
    """``"1200-1499"`` (inclusive, as people write it) or ``"7"`` -> a range checked against the video.

    None means every frame.
    """
    if text is None or text == "":
        return range(n_frames)
    try:
        if "-" in text:
            start_s, end_s = text.split("-", 1)
            start, last = int(start_s), int(end_s)
        else:
            start = last = int(text)
    except ValueError:
        raise RtposeError(f"frame range {text!r} is not START-END or an index (e.g. 1200-1499)") from None
    if start < 0 or last >= n_frames or last < start:
        raise RtposeError(
            f"frame range {text!r} is outside the video: valid frames are 0-{n_frames - 1}"
        )
    return range(start, last + 1)


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
    """Frames stored inside a SLEAP package (.pkg.slp), read through sleap-io."""

    def __init__(self, path: Path):
        import sleap_io as sio

        try:
            labels = sio.load_slp(str(path))
        except Exception as exc:
            raise RtposeError(f"{path}: not a readable .slp file ({type(exc).__name__})") from None
        embedded = [v for v in labels.videos if type(v.backend).__name__ == "HDF5Video"]
        if not embedded:
            raise RtposeError(f"{path}: has no embedded images; read its video file instead")
        self.video = embedded[0]
        self.n_frames, self.height, self.width = self.video.shape[0], self.video.shape[1], self.video.shape[2]
        self.frame_indices = sorted(int(i) for i in getattr(self.video.backend, "frame_map", {}) or range(self.n_frames))

    def read(self, index: int) -> np.ndarray:
        return to_gray(np.asarray(self.video[index]))


class VideoReader:
    """Grayscale frames of one video file by index (any OpenCV-readable video, or the
    images embedded in a SLEAP .pkg.slp)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise RtposeError(f"{self.path}: no such video file")
        self._embedded = None
        if self.path.suffix.lower() in (".slp", ".h5", ".hdf5"):
            self._embedded = _EmbeddedFrames(self.path)
            self.n_frames = max(self._embedded.frame_indices) + 1
            self.height, self.width = self._embedded.height, self._embedded.width
            self.fps = 0.0
            return
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise RtposeError(f"{self.path}: not a readable video")
        self.n_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 0.0
        ok, first = self._cap.read()
        if not ok:
            raise RtposeError(f"{self.path}: not a readable video (no frame could be decoded)")
        self.height, self.width = first.shape[:2]
        self._next = 1
        self._first = to_gray(first)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def __len__(self) -> int:
        return self.n_frames

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W) uint8."""
        if not 0 <= index < self.n_frames:
            raise RtposeError(f"{self.path}: frame {index} out of range: valid frames are 0-{self.n_frames - 1}")
        if self._embedded is not None:
            return self._embedded.read(index)
        if index == 0:
            return self._first.copy()
        if index != self._next:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = self._cap.read()
        if not ok:
            raise RtposeError(f"{self.path}: frame {index} could not be decoded")
        self._next = index + 1
        return to_gray(frame)

    def frames(self, indices) -> "np.ndarray":
        """Yield (index, frame) over ``indices`` in order."""
        for i in indices:
            yield i, self.read(i)

    def close(self) -> None:
        if self._embedded is None:
            self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
