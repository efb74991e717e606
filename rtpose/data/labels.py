"""Labels I/O through sleap-io: user instances as arrays, tracks as identity classes.

Training, evaluation and prediction all see a labeled frame the same way: a video, a
frame index, ``points (n, nodes, 2)`` with NaN for invisible nodes, and the identity
class of each instance (its track's index among the class names, -1 without a track).
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import attrs
import numpy as np
import sleap_io as sio

from rtpose.errors import RtposeError
from rtpose.paths import no_such_file


@attrs.define
class FrameLabels:
    """The user-labeled instances of one frame."""

    video_path: Path
    frame_idx: int
    points: np.ndarray  # (n, nodes, 2) float32, NaN where invisible
    classes: np.ndarray  # (n,) int32, -1 where the instance has no track
    # (n, 2) float32 anchor of each instance for node ``anchor_index``, estimated where the
    # node is not visible (rtpose.data.anchors.attach_anchors); None until attached
    anchors: np.ndarray | None = None
    anchor_index: int | None = None


def load_labels(path: str | Path, open_videos: bool = True) -> sio.Labels:
    """Open a .slp file, or raise a one-line error naming it.

    ``open_videos=False`` reads only the stored video metadata: scoring and format
    conversions need no pixels, and then work where the videos are absent.
    """
    path = Path(path)
    if not path.exists():
        raise RtposeError(no_such_file(path))
    if path.suffix.lower() != ".slp":
        raise RtposeError(f"{path}: not a .slp labels file")
    try:
        return sio.load_slp(str(path), open_videos=open_videos)
    except Exception as exc:  # h5py/sleap-io raise many types on corrupt files
        raise RtposeError(f"{path}: not a readable .slp file ({type(exc).__name__})") from None


def class_names(labels: sio.Labels) -> list[str]:
    """Identity classes are the track names, in the file's track order."""
    return [t.name for t in labels.tracks]


def node_names(labels: sio.Labels) -> list[str]:
    if not labels.skeletons:
        raise RtposeError("labels have no skeleton")
    return [n.name for n in labels.skeletons[0].nodes]


def resolve_video_path(video: sio.Video, labels_path: str | Path | None = None) -> Path:
    """The video's file, looked for as written, then beside the labels file.

    .slp files store the path they were saved with, often relative to another working
    directory; the file beside the labels is the usual right answer.
    """
    stored = Path(str(video.filename))
    candidates = [stored]
    if labels_path is not None:
        base = Path(labels_path).resolve().parent
        # a path saved on Windows ("C:\\data\\clip.mp4") is one odd file name on POSIX
        name = PureWindowsPath(str(video.filename)).name if "\\" in str(video.filename) else stored.name
        candidates += [base / stored, base / name]
    for c in candidates:
        if c.exists():
            return c
    raise RtposeError(f"video {stored} of {labels_path or 'the labels'} not found (looked beside the .slp too)")


def user_frames(labels: sio.Labels, labels_path: str | Path | None = None,
                classes: list[str] | None = None) -> list[FrameLabels]:
    """Every labeled frame with at least one user instance, as arrays."""
    classes = class_names(labels) if classes is None else classes
    index = {name: i for i, name in enumerate(classes)}
    video_paths: dict[int, Path] = {}
    out = []
    for lf in labels.labeled_frames:
        insts = lf.user_instances
        if not insts:
            continue
        vid = id(lf.video)
        if vid not in video_paths:
            video_paths[vid] = resolve_video_path(lf.video, labels_path)
        pts = np.stack([inst.numpy() for inst in insts]).astype(np.float32)
        cls = np.array([index.get(inst.track.name, -1) if inst.track is not None else -1 for inst in insts],
                       dtype=np.int32)
        out.append(FrameLabels(video_paths[vid], int(lf.frame_idx), pts, cls))
    return out


def pooled_user_frames(paths: list[str | Path], classes: list[str] | None = None
                       ) -> tuple[sio.Labels, list[FrameLabels]]:
    """User-labeled frames of several .slp files, pooled; returns the first file's labels
    (skeleton and tracks) and the frames in file order.

    Raises:
        RtposeError: a file's skeleton differs from the first file's, or a video frame is
            labeled in two files (which labels would count is ambiguous).
    """
    first = load_labels(paths[0])
    nodes = node_names(first)
    classes = class_names(first) if classes is None else classes
    frames: list[FrameLabels] = []
    seen: dict[tuple[Path, int], str] = {}
    for path in paths:
        labels = first if path is paths[0] else load_labels(path)
        if node_names(labels) != nodes:
            raise RtposeError(f"{path}: skeleton ({', '.join(node_names(labels))}) differs from {paths[0]}'s")
        for f in user_frames(labels, path, classes):
            key = (f.video_path.resolve(), f.frame_idx)
            if key in seen:
                raise RtposeError(f"{path}: frame {f.frame_idx} of {f.video_path.name} is labeled in {seen[key]} too")
            seen[key] = str(path)
            frames.append(f)
    return first, frames
