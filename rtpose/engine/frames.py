"""Where offline commands get their frames: a video, the video of a .slp file, or the
images embedded in a SLEAP package (.pkg.slp).

Decoding runs in a thread ahead of inference (OpenCV releases the GIL), so a batch-1
engine never waits on the decoder. Frames that cannot be read (see
:mod:`rtpose.data.video`: undecodable frames, a stream shorter than its container says)
are either raised or, given a :class:`DecodeReport`, skipped and recorded in it, so the
caller keeps the frames that did decode.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

import attrs
import numpy as np

from rtpose.data.labels import load_labels, resolve_video_path
from rtpose.data.video import FrameNotDecoded, StreamEnded, VideoReader, describe_indices
from rtpose.engine.base import check_frame_size
from rtpose.errors import RtposeError
from rtpose.export.spec import ExportSpec
from rtpose.paths import no_such_file


def resolve_input(path: str | Path, frames: str | None, only_labeled: bool = False,
                  spec: ExportSpec | None = None) -> tuple[Path, list[int]]:
    """The video to read and the frame indices to predict on.

    A .slp with embedded images (a package) is read itself, and its frames are the ones
    it holds (``frames`` picks among them); a .slp without is read through its video.

    Args:
        path: a video file or a .slp.
        frames: a ``--frames`` value (None: every frame the input holds).
        only_labeled: keep only the labelled frames of a .slp.
        spec: the export the frames are for: when given, the input must fit it (its
            frame size, ``rtpose.engine.base.check_frame_size``, and a .slp's skeleton,
            ``check_skeleton``) before any frame is run.

    Raises:
        RtposeError: a missing or unreadable input, a bad range, or an input that does
            not fit ``spec`` (one line naming the input).
    """
    path = Path(path)
    if not path.exists():
        raise RtposeError(no_such_file(path))
    if path.suffix.lower() == ".slp":
        labels = load_labels(path)
        if spec is not None and labels.skeletons:
            check_skeleton([n.name for n in labels.skeletons[0].nodes], spec, str(path))
        if not labels.videos:
            raise RtposeError(f"{path}: the labels have no video")
        if len(labels.videos) > 1:
            raise RtposeError(f"{path}: has {len(labels.videos)} videos; predict on one video file at a time")
        embedded = type(labels.videos[0].backend).__name__ == "HDF5Video"
        video = path if embedded else resolve_video_path(labels.videos[0], path)
        with VideoReader(video) as reader:
            if spec is not None:
                check_frame_size(*reader.shape, spec, str(path) if video == path else f"{path} (video {video})")
            indices = reader.select(frames)
        if only_labeled:
            labeled = {lf.frame_idx for lf in labels.labeled_frames}
            selected = indices
            indices = [i for i in indices if i in labeled]
            if selected and not indices:
                raise RtposeError(f"{path}: no labeled frame in {'frames ' + frames if frames else 'the video'} "
                                  f"(it holds labeled frames {describe_indices(sorted(labeled))})")
        return video, indices
    if only_labeled:
        raise RtposeError("--only-labeled needs a .slp input")
    with VideoReader(path) as reader:
        if spec is not None:
            check_frame_size(*reader.shape, spec, str(path))
        return path, reader.select(frames)


def check_skeleton(node_names: list[str], spec: ExportSpec, where: str) -> None:
    """Refuse labels whose skeleton is not the model's (node names, in any order).

    Args:
        node_names: the labels' skeleton nodes.
        spec: the export's spec.
        where: the labels file, to start the message.

    Raises:
        RtposeError: one line naming the first node of the labels the model lacks (or
            else the first node of the model the labels lack) and both node counts.
    """
    model = list(spec.node_names)
    extra = [n for n in node_names if n not in model]
    missing = [n for n in model if n not in node_names]
    if not extra and not missing:
        return
    first = (f"its node {extra[0]!r} is not a node of the model" if extra
             else f"it lacks the model's node {missing[0]!r}")
    raise RtposeError(f"{where}: the labels' skeleton ({len(node_names)} nodes) is not the model's "
                      f"({len(model)} nodes: {', '.join(model[:4])}{', ...' if len(model) > 4 else ''}): {first}; "
                      "use a model trained on this skeleton")


@attrs.define
class DecodeReport:
    """What :func:`read_ahead` could not read, filled in as it goes.

    Attributes:
        not_decoded: frames that did not decode (later frames did).
        stream_frames: when the stream ended before the last frame asked for, the
            frames it really holds; None otherwise.
        past_end: frames asked for that lie past that end.
        declared: frames the container declared (0 until the reader opened).
    """

    not_decoded: list[int] = attrs.field(factory=list)
    stream_frames: int | None = None
    past_end: list[int] = attrs.field(factory=list)
    declared: int = 0

    @property
    def missing(self) -> list[int]:
        """Every frame asked for that was not read, in order."""
        return sorted(self.not_decoded + self.past_end)

    def notes(self, range_given: bool = True) -> list[str]:
        """One line per kind of loss, for the user (empty when nothing was lost).

        Args:
            range_given: whether the user named the frames; without a range, a stream
                shorter than its container declares loses nothing that was asked for.
        """
        out = []
        if self.not_decoded:
            out.append(f"{len(self.not_decoded)} frame(s) could not be decoded, the first {self.not_decoded[0]} "
                       f"({describe_indices(self.not_decoded)})")
        if self.stream_frames is not None:
            tail = (f"{len(self.past_end)} frame(s) asked for lie past its end" if range_given
                    else f"predicted the {self.stream_frames} it holds")
            out.append(f"the stream ends after {self.stream_frames} frames (0-{self.stream_frames - 1}), not the "
                       f"{self.declared} its container declares: {tail}")
        return out


def read_ahead(video: Path, indices: list[int], depth: int = 64,
               report: DecodeReport | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) in order, decoded by a background thread up to ``depth`` ahead.

    Without ``report`` a frame that cannot be read raises (:class:`FrameNotDecoded`,
    :class:`StreamEnded`); with it, such frames are left out and recorded there, and the
    stream's end ends the iteration.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def decode() -> None:
        try:
            with VideoReader(video) as reader:
                if report is not None:
                    report.declared = reader.n_frames
                for pos, i in enumerate(indices):
                    if stop.is_set():
                        return
                    try:
                        q.put((i, reader.read(i)))
                    except FrameNotDecoded:
                        if report is None:
                            raise
                        report.not_decoded.append(i)
                    except StreamEnded as exc:
                        if report is None:
                            raise
                        report.stream_frames = exc.frames_read
                        report.past_end = list(indices[pos:])
                        break
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
