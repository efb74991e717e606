"""Where offline commands get their frames: a video, or the video of a .slp file.

Decoding runs in a thread ahead of inference (OpenCV releases the GIL), so a batch-1
engine never waits on the decoder.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from rtpose.data.labels import load_labels, resolve_video_path
from rtpose.data.video import VideoReader, parse_frame_range
from rtpose.errors import RtposeError


def resolve_input(path: str | Path, frames: str | None, only_labeled: bool = False) -> tuple[Path, list[int]]:
    """The video to read and the frame indices to predict on."""
    path = Path(path)
    if not path.exists():
        raise RtposeError(f"{path}: no such file")
    if path.suffix.lower() == ".slp":
        labels = load_labels(path)
        if not labels.videos:
            raise RtposeError(f"{path}: the labels have no video")
        if len(labels.videos) > 1:
            raise RtposeError(f"{path}: has {len(labels.videos)} videos; predict on one video file at a time")
        video = resolve_video_path(labels.videos[0], path)
        with VideoReader(video) as reader:
            indices = list(parse_frame_range(frames, reader.n_frames))
        if only_labeled:
            labeled = {lf.frame_idx for lf in labels.labeled_frames}
            indices = [i for i in indices if i in labeled]
        return video, indices
    if only_labeled:
        raise RtposeError("--only-labeled needs a .slp input")
    with VideoReader(path) as reader:
        return path, list(parse_frame_range(frames, reader.n_frames))


def read_ahead(video: Path, indices: list[int], depth: int = 64,
               skip_undecodable: bool = False) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, frame) in order, decoded by a background thread up to ``depth`` ahead.

    A frame that does not decode raises ``RtposeError``, or with ``skip_undecodable``
    comes as ``(index, None)`` and decoding goes on with the next index. A video that
    cannot be opened always raises.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def decode() -> None:
        try:
            with VideoReader(video) as reader:
                for i in indices:
                    if stop.is_set():
                        return
                    try:
                        q.put((i, reader.read(i)))
                    except RtposeError:
                        if not skip_undecodable:
                            raise
                        q.put((i, None))
        except BaseException as exc:  # hand decoder errors to the consumer
            q.put(exc)
        q.put(done)

    thread = threading.Thread(target=decode, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not q.empty():
            q.get_nowait()
        thread.join(timeout=5)
